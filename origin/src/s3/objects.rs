//! Object operations: PutObject, GetObject, HeadObject, DeleteObject(s), CopyObject.

use std::collections::BTreeMap;

use base64::Engine as _;
use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::checksum;
use super::conditional::{Conditions, EtagLists, Outcome, Tags, evaluate, seconds};
use super::copy_source;
use super::span;
use super::{Origin, now_ms, s3_err, timestamp};
use crate::events::Kind;
use crate::store::Bucket;
use crate::store::format::{Headers, ObjectMeta};
use crate::store::staging::Staged;

/// Read buffer for streaming bodies out: large enough for throughput, small enough that many
/// concurrent downloads stay cheap.
const READ_CHUNK: usize = 256 * 1024;
/// S3's limit for one PutObject or UploadPart body.
const MAX_BODY: u64 = 5 * 1024 * 1024 * 1024;
/// What S3 reports for objects stored without a `Content-Type`.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The standard headers of a write.
pub(super) fn headers(
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
) -> Headers {
    Headers { content_type, cache_control, content_disposition, content_encoding, content_language }
}

/// User metadata in a stable order.
pub(super) fn user_metadata(m: Option<Metadata>) -> BTreeMap<String, String> {
    m.map(|m| m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()).unwrap_or_default()
}

/// Streams a request body into `staged` and checks the checksums the client declared; a
/// client that stops early gets `IncompleteBody`, a corrupted body `BadDigest`.
pub(super) async fn write_body(
    staged: &mut Staged,
    body: Option<StreamingBlob>,
    headers: &http::HeaderMap,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<()> {
    let mut sums = checksum::hasher_for(headers);
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| S3Error::with_source(S3ErrorCode::IncompleteBody, e))?;
            if staged.size() + chunk.len() as u64 > MAX_BODY {
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size (5 GiB)."
                ));
            }
            sums.update(&chunk);
            staged.write(&chunk).await.map_err(s3_err)?;
        }
    }
    checksum::verify(&sums.finalize(), headers, trailers)
}

/// Refuses a declared `Content-Length` over S3's limit before reading any of the body.
pub(super) fn check_declared_length(length: Option<i64>) -> S3Result<()> {
    match length {
        Some(len) if u64::try_from(len).unwrap_or(0) > MAX_BODY => {
            Err(s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed size (5 GiB)."))
        }
        _ => Ok(()),
    }
}

/// Checks the body against `Content-Length` and `Content-MD5` when the client sent them.
pub(super) fn verify_body(staged: &Staged, length: Option<i64>, md5: Option<&str>) -> S3Result<()> {
    if let Some(len) = length
        && u64::try_from(len).ok() != Some(staged.size())
    {
        return Err(s3_error!(IncompleteBody, "body length does not match Content-Length"));
    }
    if let Some(md5) = md5 {
        let want = base64::engine::general_purpose::STANDARD
            .decode(md5.trim())
            .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not base64"))?;
        if want != staged.md5() {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
    }
    Ok(())
}

/// Copies bytes `span` of an open object file into `staged`.
pub(super) async fn copy_span(
    mut file: tokio::fs::File,
    span: std::ops::Range<u64>,
    staged: &mut Staged,
) -> S3Result<()> {
    if span.start > 0 {
        file.seek(std::io::SeekFrom::Start(span.start)).await.map_err(|e| s3_err(e.into()))?;
    }
    let mut body = file.take(span.end - span.start);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = body.read(&mut buf).await.map_err(|e| s3_err(e.into()))?;
        if n == 0 {
            return Ok(());
        }
        staged.write(&buf[..n]).await.map_err(s3_err)?;
    }
}

/// The request's conditions; lists taken out by `take_etag_lists` win over s3s's values.
pub(super) fn conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
    lists: Option<&EtagLists>,
) -> Conditions {
    Conditions {
        if_match: lists.and_then(|l| l.if_match.clone()).or_else(|| if_match.map(Tags::from_condition)),
        if_none_match: lists
            .and_then(|l| l.if_none_match.clone())
            .or_else(|| if_none_match.map(Tags::from_condition)),
        if_modified_since: if_modified_since.and_then(seconds),
        if_unmodified_since: if_unmodified_since.and_then(seconds),
    }
}

pub(super) fn precondition_failed() -> S3Error {
    s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
}

fn not_found() -> S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist.")
}

/// A GetObject or HeadObject answer: the stored headers every read returns, plus `extra` fields.
/// The two outputs are distinct s3s types with the same field names, hence a macro.
macro_rules! object_output {
    ($ty:ident, $origin:expr, $bucket:expr, $meta:expr, { $($extra:tt)* }) => {
        $ty {
            $($extra)*
            accept_ranges: Some("bytes".into()),
            cache_control: $origin.cache_control_of($bucket, &$meta),
            content_type: Some(
                $meta.headers.content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
            ),
            content_disposition: $meta.headers.content_disposition.clone(),
            content_encoding: $meta.headers.content_encoding.clone(),
            content_language: $meta.headers.content_language.clone(),
            e_tag: Some(ETag::Strong($meta.etag.clone())),
            last_modified: Some(timestamp($meta.modified_ms)),
            metadata: (!$meta.user.is_empty()).then(|| $meta.user.into_iter().collect()),
            ..Default::default()
        }
    };
}

impl Origin {
    /// Opens an object for GET/HEAD and applies the request's conditions.
    pub(super) async fn open_checked(
        &self,
        bucket: &str,
        key: &str,
        cond: &Conditions,
    ) -> S3Result<(tokio::fs::File, ObjectMeta)> {
        let b = self.store.bucket(bucket).map_err(s3_err)?;
        let (file, meta) = b.open(key).await.map_err(s3_err)?.ok_or_else(not_found)?;
        let modified = i64::try_from(meta.modified_ms / 1000).unwrap_or(i64::MAX);
        match evaluate(cond, &meta.etag, modified) {
            Outcome::Proceed => Ok((file, meta)),
            Outcome::PreconditionFailed => Err(precondition_failed()),
            Outcome::NotModified => {
                // A 304 carries the validators (and caching headers) of the current object.
                let mut err = S3Error::new(S3ErrorCode::NotModified);
                let mut h = http::HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
                    h.insert(http::header::ETAG, v);
                }
                let lm = httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(meta.modified_ms),
                );
                if let Ok(v) = http::HeaderValue::from_str(&lm) {
                    h.insert(http::header::LAST_MODIFIED, v);
                }
                if let Some(cc) =
                    meta.headers.cache_control.clone().or_else(|| self.default_cache_control(bucket))
                    && let Ok(v) = http::HeaderValue::from_str(&cc)
                {
                    h.insert(http::header::CACHE_CONTROL, v);
                }
                err.set_headers(h);
                Err(err)
            }
        }
    }

    /// Opens the source of a copy under its `x-amz-copy-source-if-*` conditions: for a copy,
    /// every failed condition is a 412, `If-None-Match` and `If-Modified-Since` included.
    pub(super) async fn open_copy_source(
        &self,
        bucket: &str,
        key: &str,
        cond: &Conditions,
    ) -> S3Result<(tokio::fs::File, ObjectMeta)> {
        match self.open_checked(bucket, key, cond).await {
            Err(e) if *e.code() == S3ErrorCode::NotModified => Err(precondition_failed()),
            other => other,
        }
    }

    /// Deletes `key` and announces it. A key the index does not hold is left alone and not
    /// announced: the delete is ordered before any write creating it concurrently.
    async fn delete_key(&self, bucket: &Bucket, key: &str) -> S3Result<()> {
        if bucket.current_etag(key).is_none() {
            return Ok(());
        }
        let event = self.announce(Kind::Delete, &bucket.name, key, None, None).await?;
        if bucket.delete(key).await.map_err(s3_err)? {
            event.ready();
        }
        Ok(())
    }

    fn cache_control_of(&self, bucket: &str, meta: &ObjectMeta) -> Option<String> {
        meta.headers.cache_control.clone().or_else(|| self.default_cache_control(bucket))
    }

    pub(super) async fn do_put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let S3Request { input, headers: req_headers, trailing_headers, .. } = req;
        let bucket = self.store.bucket(&input.bucket).map_err(s3_err)?;
        // Conditional writes: `If-None-Match: *` creates only; `If-Match` replaces only that
        // version. Checked before reading the body (to fail fast) and again at the rename (to
        // be atomic against concurrent writers).
        let (if_none_match, if_match) = (input.if_none_match.clone(), input.if_match.clone());
        let allowed = move |current: Option<&str>| match (&if_none_match, &if_match, current) {
            (Some(_), _, Some(_)) | (_, Some(ETagCondition::Any), None) => false,
            (_, Some(ETagCondition::ETag(t)), cur) => cur == Some(t.value()),
            _ => true,
        };
        let conditional = input.if_none_match.is_some() || input.if_match.is_some();
        if conditional && !allowed(bucket.current_etag(&input.key).as_deref()) {
            return Err(precondition_failed());
        }
        check_declared_length(input.content_length)?;
        let mut staged = bucket.stage(&input.key).await.map_err(s3_err)?;
        write_body(&mut staged, input.body, &req_headers, trailing_headers.as_ref()).await?;
        verify_body(&staged, input.content_length, input.content_md5.as_deref())?;
        let meta = ObjectMeta {
            key: input.key,
            size: staged.size(),
            etag: hex::encode(staged.md5()),
            modified_ms: now_ms(),
            headers: headers(
                input.content_type,
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
            ),
            user: user_metadata(input.metadata),
            parts: None,
            part_sizes: Vec::new(),
        };
        // The object's fsync and its event's run side by side: a write waits for the slower one
        // rather than both. Whichever fails, the other is dropped and removes its file.
        let (sealed, event) = tokio::join!(
            staged.seal(&meta),
            self.announce(Kind::Put, &bucket.name, &meta.key, Some(&meta.etag), Some(meta.size))
        );
        let (sealed, event) = (sealed.map_err(s3_err)?, event?);
        if !bucket.commit_if(sealed, &meta, |e| allowed(e.map(|e| e.etag.as_str()))).await.map_err(s3_err)? {
            return Err(precondition_failed());
        }
        event.ready();
        tracing::debug!(bucket = %bucket.name, key = %meta.key, size = meta.size, "object stored");
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(meta.etag)),
            size: i64::try_from(meta.size).ok(),
            ..Default::default()
        }))
    }

    pub(super) async fn do_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = &req.input;
        let cond = conditions(
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
            req.extensions.get::<EtagLists>(),
        );
        let (mut file, meta) = self.open_checked(&i.bucket, &i.key, &cond).await?;
        let span =
            span::requested(&meta, i.range.as_ref(), i.part_number, req.headers.get(http::header::IF_RANGE))?;
        if span.bytes.start > 0 {
            file.seek(std::io::SeekFrom::Start(span.bytes.start)).await.map_err(|e| s3_err(e.into()))?;
        }
        let len = span.bytes.end - span.bytes.start;
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK);
        let output = object_output!(GetObjectOutput, self, &i.bucket, meta, {
            body: Some(StreamingBlob::wrap(body)),
            content_length: i64::try_from(len).ok(),
            content_range: span.content_range,
            parts_count: span.parts_count,
        });
        Ok(S3Response::new(output))
    }

    pub(super) async fn do_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = &req.input;
        let cond = conditions(
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
            req.extensions.get::<EtagLists>(),
        );
        let (_file, meta) = self.open_checked(&i.bucket, &i.key, &cond).await?;
        let span =
            span::requested(&meta, i.range.as_ref(), i.part_number, req.headers.get(http::header::IF_RANGE))?;
        // A ranged HEAD is a 206: s3s answers HeadObject with 200 whatever the output says, so
        // `server.rs` sets the status from `Content-Range`.
        let output = object_output!(HeadObjectOutput, self, &i.bucket, meta, {
            content_length: i64::try_from(span.bytes.end - span.bytes.start).ok(),
            content_range: span.content_range,
            parts_count: span.parts_count,
        });
        Ok(S3Response::new(output))
    }

    pub(super) async fn do_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let bucket = self.store.bucket(&req.input.bucket).map_err(s3_err)?;
        self.delete_key(&bucket, &req.input.key).await?;
        // S3 answers 204 whether or not the key existed.
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(super) async fn do_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = self.store.bucket(&req.input.bucket).map_err(s3_err)?;
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for obj in req.input.delete.objects {
            match self.delete_key(&bucket, &obj.key).await {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject { key: Some(obj.key), ..Default::default() });
                    }
                }
                Err(err) => {
                    errors.push(Error {
                        code: Some(err.code().as_str().to_owned()),
                        key: Some(obj.key),
                        message: err.message().map(str::to_owned),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn do_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        let (src_bucket, src_key) = copy_source::bucket_and_key(&i.copy_source)?;
        let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if *src_bucket == *i.bucket && *src_key == *i.key && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."
            ));
        }
        let cond = conditions(
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
            None,
        );
        let (file, src) = self.open_copy_source(src_bucket, src_key, &cond).await?;
        if src.size > copy_source::MAX_COPY {
            return Err(copy_source::too_large());
        }
        let dest = self.store.bucket(&i.bucket).map_err(s3_err)?;
        let mut staged = dest.stage(&i.key).await.map_err(s3_err)?;
        copy_span(file, 0..src.size, &mut staged).await?;
        let (hdrs, user) = if replace {
            (
                headers(
                    i.content_type,
                    i.cache_control,
                    i.content_disposition,
                    i.content_encoding,
                    i.content_language,
                ),
                user_metadata(i.metadata),
            )
        } else {
            (src.headers.clone(), src.user.clone())
        };
        let meta = ObjectMeta {
            key: i.key,
            size: staged.size(),
            etag: hex::encode(staged.md5()),
            modified_ms: now_ms(),
            headers: hdrs,
            user,
            parts: None,
            part_sizes: Vec::new(),
        };
        let (sealed, event) = tokio::join!(
            staged.seal(&meta),
            self.announce(Kind::Copy, &dest.name, &meta.key, Some(&meta.etag), Some(meta.size))
        );
        let (sealed, event) = (sealed.map_err(s3_err)?, event?);
        dest.commit(sealed, &meta).await.map_err(s3_err)?;
        event.ready();
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(meta.etag)),
                last_modified: Some(timestamp(meta.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
