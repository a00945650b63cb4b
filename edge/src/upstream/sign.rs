//! Origin request signing (`origin_auth`): AWS Signature Version 4 in headers, as CloudFront's
//! origin access control signs requests to a private bucket, so the bucket need not be public
//! for the edge to read it.
//!
//! Only GET and HEAD are signed: the edge reads on everyone's behalf, but a client's write
//! (PUT, POST, DELETE passed through) must carry its own credentials, or anyone could write to
//! the bucket through the edge. What is signed is the method, the path and query as sent, the
//! `Host` and the empty payload's hash; the client's own `Authorization` and `x-amz-*` fields
//! are dropped from a signed request (S3 refuses unsigned `x-amz-*` fields, and a client must
//! not steer a request signed with our keys).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use http::{Method, Request, header};
use stratus_config::policy::OriginAuth;

use crate::body::Body;
use crate::error::ProxyError;

/// Signs one site's origin requests.
pub(crate) struct Signer {
    credentials: Credentials,
    region: String,
    service: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `auth` with the edge's origin credentials (access key id, secret key).
    pub(crate) fn new(auth: &OriginAuth, access_key: &str, secret_key: &str) -> Self {
        Self {
            credentials: Credentials::new(access_key, secret_key, None, None, "stratus-edge"),
            region: auth.region.clone(),
            service: auth.service.clone(),
        }
    }

    /// Signs `req` in place (GET and HEAD only; see the module docs).
    pub(crate) fn sign(&self, req: &mut Request<Body>, now: SystemTime) -> Result<(), ProxyError> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(());
        }
        let internal =
            |e: &dyn std::fmt::Display| ProxyError::Internal(format!("signing the origin request: {e}"));
        let headers = req.headers_mut();
        headers.remove(header::AUTHORIZATION);
        let amz: Vec<header::HeaderName> =
            headers.keys().filter(|n| n.as_str().starts_with("x-amz-")).cloned().collect();
        for name in amz {
            headers.remove(name);
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| internal(&"no host"))?
            .to_owned();
        let mut settings = SigningSettings::default();
        // S3 signs the path as sent, encoded once and not normalised.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| internal(&e))?
            .into();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            uri,
            std::iter::once(("host", host.as_str())),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| internal(&e))?;
        let (instructions, _signature) = sign(signable, &params).map_err(|e| internal(&e))?.into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}
