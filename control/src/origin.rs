//! Listing a bucket on the S3 origin for prewarm: anonymous `ListObjectsV2`, path-style
//! (`GET {origin}/{bucket}?list-type=2&prefix=P`), following continuation tokens.
//!
//! Anonymous listing works on public buckets (`stratus origin --public BUCKET`, or an S3 bucket
//! policy allowing `s3:ListBucket`); a private bucket answers 403, reported as a 400 naming
//! `bucket`. Only `http://` origins are supported here.

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use quick_xml::events::Event;

use crate::body::{MAX_OBJECTS, ObjectRef};
use crate::error::{ApiError, Invalid};

/// How long one listing page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest listing page body read.
const MAX_PAGE_BYTES: usize = 16 << 20;

/// The origin the control plane lists buckets on.
#[derive(Debug)]
pub(crate) struct Origin {
    base: Option<stratus_config::HttpUrl>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// One parsed `ListBucketResult` page.
#[derive(Debug, Default, PartialEq, Eq)]
struct Page {
    keys: Vec<String>,
    next: Option<String>,
}

impl Origin {
    pub(crate) fn new(base: Option<stratus_config::HttpUrl>) -> Self {
        Self { base, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// Every key in `bucket` under `prefix` (at most [`MAX_OBJECTS`]).
    pub(crate) async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectRef>, ApiError> {
        let Some(base) = &self.base else {
            return Err(
                Invalid::new("bucket", "no origin configured for listing (set control.origin)").into()
            );
        };
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = base.url().clone();
            url.path_segments_mut()
                .map_err(|()| Invalid::new("bucket", "origin URL cannot take a path"))?
                .pop_if_empty()
                .push(bucket);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("list-type", "2").append_pair("prefix", prefix);
                if let Some(t) = &token {
                    q.append_pair("continuation-token", t);
                }
            }
            let page = self.page(url.as_str()).await?;
            objects.extend(page.keys.into_iter().map(|key| ObjectRef { bucket: bucket.to_owned(), key }));
            if objects.len() > MAX_OBJECTS {
                return Err(Invalid::new(
                    "prefix",
                    format!("more than {MAX_OBJECTS} objects; prewarm a narrower prefix"),
                )
                .into());
            }
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    async fn page(&self, url: &str) -> Result<Page, ApiError> {
        let bad_gateway = |why: String| {
            tracing::warn!(url, why, "bucket listing failed");
            ApiError::new(StatusCode::BAD_GATEWAY, format!("origin listing failed: {why}"))
        };
        let uri: http::Uri = url.parse().map_err(|e| bad_gateway(format!("{e}")))?;
        let fetch = async {
            let response = self.client.get(uri).await.map_err(|e| bad_gateway(format!("{e}")))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_PAGE_BYTES);
            let bytes = body.collect().await.map_err(|e| bad_gateway(format!("{e}")))?.to_bytes();
            Ok::<_, ApiError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(PAGE_TIMEOUT, fetch)
            .await
            .map_err(|_| bad_gateway("timed out".into()))??;
        match status.as_u16() {
            200 => parse_page(&bytes).map_err(bad_gateway),
            403 | 401 => {
                Err(Invalid::new("bucket", "the origin refuses anonymous listing of this bucket").into())
            }
            404 => Err(Invalid::new("bucket", "no such bucket on the origin").into()),
            other => Err(bad_gateway(format!("status {other}"))),
        }
    }
}

/// Parses a `ListBucketResult`: every `Contents/Key`, and the continuation token when the
/// listing is truncated.
fn parse_page(xml: &[u8]) -> Result<Page, String> {
    let text = std::str::from_utf8(xml).map_err(|e| e.to_string())?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut value = String::new();
    let mut page = Page::default();
    let mut truncated = false;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                value.clear();
            }
            Event::Text(t) => value.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::CData(t) => value.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                    value.push(c);
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    let resolved = quick_xml::escape::resolve_xml_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?;
                    value.push_str(resolved);
                }
            }
            Event::End(_) => {
                match path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                    [.., "Contents", "Key"] => page.keys.push(std::mem::take(&mut value)),
                    [_, "IsTruncated"] => truncated = value.trim() == "true",
                    [_, "NextContinuationToken"] => page.next = Some(std::mem::take(&mut value)),
                    _ => {}
                }
                path.pop();
                value.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !truncated {
        page.next = None;
    } else if page.next.is_none() {
        return Err("truncated listing without a continuation token".into());
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_bucket_results() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>demo</Name><Prefix>img/</Prefix>
<KeyCount>2</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;1</NextContinuationToken>
<Contents><Key>img/a&amp;b.png</Key><Size>3</Size></Contents><Contents><Key>img/c.png</Key></Contents>
</ListBucketResult>"#;
        assert_eq!(
            parse_page(xml.as_bytes()),
            Ok(Page { keys: vec!["img/a&b.png".into(), "img/c.png".into()], next: Some("tok&1".into()) })
        );
        let last = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></ListBucketResult>";
        assert_eq!(parse_page(last.as_bytes()), Ok(Page { keys: vec!["k".into()], next: None }));
        assert!(parse_page(b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>").is_err());
    }
}
