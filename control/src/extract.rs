//! Reading JSON request bodies: one axum extractor, so no handler reads a body by hand.
//!
//! [`JsonBody`] refuses a body whose `Content-Type` is not JSON with 415 (a browser on another
//! site can send `text/plain`, a form or a typeless body without a preflight; it cannot send
//! `application/json`; see `stratus_config::protocol::is_json`), a body over
//! [`body::MAX_BODY_BYTES`] with 413, and JSON that does not fit the type with 400 naming the field
//! (`files[2]`). Every refusal is a JSON [`ApiError`], never axum's plain text.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use stratus_config::protocol::is_json;

use crate::body;
use crate::error::ApiError;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !is_json(content_type) {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json"));
        }
        // `Bytes` honours the router's `DefaultBodyLimit` of `MAX_BODY_BYTES`.
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|r| ApiError::field(r.status(), "body", r.body_text().to_lowercase()))?;
        Ok(Self(body::parse(&bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for (ct, json) in [
            ("application/json", true),
            ("application/problem+json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/jsonx", false),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            assert_eq!(is_json(Some(ct)), json, "{ct}");
        }
        // A typeless body is what `fetch` sends for a Blob without a type: not JSON.
        assert!(!is_json(None));
    }
}
