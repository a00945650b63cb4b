//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts, ListMultipartUploads.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::copy_source;
use super::objects::{
    check_declared_length, conditions, copy_span, headers, user_metadata, verify_body, write_body,
};
use super::{Origin, list, now_ms, s3_err, timestamp};
use crate::events::Kind;
use crate::store::Bucket;
use crate::store::format::ObjectMeta;
use crate::store::multipart::{MAX_PART_NUMBER, UploadInfo};
use crate::store::staging::Staged;

const MAX_PARTS_LISTED: i32 = 1000;

/// Seals a staged part as part `number` of the upload and moves it in place; its metadata.
async fn commit_part(
    bucket: &Bucket,
    upload_id: &str,
    key: String,
    number: u32,
    staged: Staged,
) -> S3Result<ObjectMeta> {
    let meta = ObjectMeta {
        key,
        size: staged.size(),
        etag: hex::encode(staged.md5()),
        modified_ms: now_ms(),
        parts: Some(number),
        ..Default::default()
    };
    let sealed = staged.seal(&meta).await.map_err(s3_err)?;
    bucket.commit_part(upload_id, number, sealed).await.map_err(s3_err)?;
    Ok(meta)
}

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n).ok().filter(|n| (1..=MAX_PART_NUMBER).contains(n)).ok_or_else(|| {
        s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive")
    })
}

impl Origin {
    pub(super) async fn do_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = req.input;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        let info = UploadInfo {
            key: i.key.clone(),
            headers: headers(
                i.content_type,
                i.cache_control,
                i.content_disposition,
                i.content_encoding,
                i.content_language,
            ),
            user: user_metadata(i.metadata),
            initiated_ms: now_ms(),
        };
        let id = bucket.create_upload(&info).await.map_err(s3_err)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    pub(super) async fn do_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let S3Request { input: i, headers: req_headers, trailing_headers, .. } = req;
        let number = part_number(i.part_number)?;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        bucket.upload(&i.upload_id, &i.key).await.map_err(s3_err)?;
        check_declared_length(i.content_length)?;
        let mut staged = bucket.stage_part(&i.upload_id).await.map_err(s3_err)?;
        write_body(&mut staged, i.body, &req_headers, trailing_headers.as_ref()).await?;
        verify_body(&staged, i.content_length, i.content_md5.as_deref())?;
        let meta = commit_part(&bucket, &i.upload_id, i.key, number, staged).await?;
        Ok(S3Response::new(UploadPartOutput { e_tag: Some(ETag::Strong(meta.etag)), ..Default::default() }))
    }

    /// UploadPartCopy: a part copied from (a range of) an existing object, as aws-cli, boto3's
    /// `copy()` and minio's `compose_object` do for large copies. The source's conditions are
    /// checked, then its bytes are read from the version opened, whatever happens to the key
    /// meanwhile.
    pub(super) async fn do_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = req.input;
        let number = part_number(i.part_number)?;
        let (src_bucket, src_key) = copy_source::bucket_and_key(&i.copy_source)?;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        bucket.upload(&i.upload_id, &i.key).await.map_err(s3_err)?;
        let cond = conditions(
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
            None,
        );
        let (file, src) = self.open_copy_source(src_bucket, src_key, &cond).await?;
        let span = copy_source::resolve(i.copy_source_range.as_deref(), src.size)?;
        let mut staged = bucket.stage_part(&i.upload_id).await.map_err(s3_err)?;
        copy_span(file, span, &mut staged).await?;
        let meta = commit_part(&bucket, &i.upload_id, i.key, number, staged).await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(meta.etag)),
                last_modified: Some(timestamp(meta.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn do_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        let info = bucket.upload(&i.upload_id, &i.key).await.map_err(s3_err)?;
        let mut chosen = Vec::new();
        for part in i.multipart_upload.and_then(|m| m.parts).unwrap_or_default() {
            let number = part_number(part.part_number.unwrap_or(0))?;
            let etag = part.e_tag.map(ETag::into_value).unwrap_or_default();
            chosen.push((number, etag));
        }
        let meta = ObjectMeta {
            key: info.key,
            modified_ms: now_ms(),
            headers: info.headers,
            user: info.user,
            ..Default::default()
        };
        let (sealed, meta) = bucket.assemble_upload(&i.upload_id, &chosen, meta).await.map_err(s3_err)?;
        let event = self
            .announce(Kind::CompleteMultipart, &bucket.name, &meta.key, Some(&meta.etag), Some(meta.size))
            .await?;
        bucket.finish_upload(&i.upload_id, sealed, &meta).await.map_err(s3_err)?;
        event.ready();
        tracing::debug!(bucket = %bucket.name, key = %meta.key, size = meta.size, parts = chosen.len(), "multipart upload completed");
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(meta.key.clone()),
            e_tag: Some(ETag::Strong(meta.etag)),
            location: Some(format!("/{}/{}", i.bucket, meta.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn do_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        bucket.upload(&i.upload_id, &i.key).await.map_err(s3_err)?;
        bucket.abort_upload(&i.upload_id).await.map_err(s3_err)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn do_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        let max = i.max_uploads.unwrap_or(MAX_PARTS_LISTED).clamp(0, MAX_PARTS_LISTED) as usize;
        let prefix = i.prefix.clone().unwrap_or_default();
        let key_marker = i.key_marker.clone().unwrap_or_default();
        let id_marker = i.upload_id_marker.clone();
        // After the key marker; with an upload-id marker, also the later uploads of that key.
        let after = |key: &str, id: &str| match &id_marker {
            Some(m) if !key_marker.is_empty() => {
                key > key_marker.as_str() || (key == key_marker && id > m.as_str())
            }
            _ => key > key_marker.as_str(),
        };
        let all: Vec<_> = bucket
            .uploads()
            .await
            .map_err(s3_err)?
            .into_iter()
            .filter(|(id, u)| u.key.starts_with(&prefix) && after(&u.key, id))
            .collect();
        let truncated = all.len() > max;
        let page: Vec<_> = all.into_iter().take(max).collect();
        let (next_key, next_id) = match page.last().filter(|_| truncated) {
            Some((id, u)) => (Some(u.key.clone()), Some(id.clone())),
            None => (None, None),
        };
        // Names are encoded as in ListObjects (`list.rs`): on request, or when XML cannot carry one.
        let names = [&prefix].into_iter().chain(&i.key_marker).chain(page.iter().map(|(_, u)| &u.key));
        let encoding_type = list::encoding(i.encoding_type.as_ref(), names.map(String::as_str))?;
        let url = encoding_type.is_some();
        let uploads = page
            .into_iter()
            .map(|(id, u)| MultipartUpload {
                key: Some(list::enc(url, u.key)),
                upload_id: Some(id),
                initiated: Some(timestamp(u.initiated_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: Some(list::enc(url, prefix)),
            key_marker: i.key_marker.map(|k| list::enc(url, k)),
            upload_id_marker: i.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key.map(|k| list::enc(url, k)),
            next_upload_id_marker: next_id,
            encoding_type,
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    pub(super) async fn do_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        bucket.upload(&i.upload_id, &i.key).await.map_err(s3_err)?;
        let max = i.max_parts.unwrap_or(MAX_PARTS_LISTED).clamp(0, MAX_PARTS_LISTED) as usize;
        let marker = i.part_number_marker.unwrap_or(0);
        let after: Vec<_> = bucket
            .parts(&i.upload_id)
            .await
            .map_err(s3_err)?
            .into_iter()
            .filter(|p| i64::from(p.number) > i64::from(marker))
            .collect();
        let truncated = after.len() > max;
        let page: Vec<_> = after.into_iter().take(max).collect();
        let next = page.last().map(|p| p.number as i32);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: Some(marker),
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(
                page.into_iter()
                    .map(|p| Part {
                        part_number: Some(p.number as i32),
                        size: i64::try_from(p.size).ok(),
                        e_tag: Some(ETag::Strong(p.etag)),
                        last_modified: Some(timestamp(p.modified_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}
