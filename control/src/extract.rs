//! Reading JSON request bodies: one axum extractor, so no handler reads a body by hand.
//!
//! [`JsonBody`] refuses a `Content-Type` other than JSON with 415 (a browser on another site can
//! send `text/plain` without a preflight; it cannot send `application/json`), a body over
//! [`body::MAX_BODY_BYTES`] with 413, and JSON that does not fit the type with 400 naming the field
//! (`files[2]`). A missing `Content-Type` is accepted, as `curl -d` with `-H` forgotten is a
//! common and harmless mistake. Every refusal is a JSON [`ApiError`], never axum's plain text.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::body;
use crate::error::ApiError;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if content_type.is_some_and(|ct| !is_json(ct)) {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json"));
        }
        // `Bytes` honours the router's `DefaultBodyLimit` of `MAX_BODY_BYTES`.
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|r| ApiError::field(r.status(), "body", r.body_text().to_lowercase()))?;
        Ok(Self(body::parse(&bytes)?))
    }
}

/// Whether a `Content-Type` value is JSON: `application/json`, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for (ct, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/jsonx", false),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            assert_eq!(is_json(ct), json, "{ct}");
        }
    }
}
