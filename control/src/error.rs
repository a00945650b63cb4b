//! The errors of the control plane, and the one place that turns them into HTTP answers.
//!
//! [`Error`] is what the crate's functions return; [`Invalid`] is a request that breaks a rule
//! (the field named); [`ApiError`] is an answer: JSON `{"error": "...", "field": "..."}` with
//! 400 for bad input, 401 for a wrong or missing token, 404 for unknown ids and 500 for failures
//! of our own (details only in the log).

use std::path::PathBuf;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Errors of the control plane and its CLI client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    Data {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The log database cannot be opened.
    #[error("cannot open the log {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: redb::DatabaseError,
    },
    /// The log has a hole, so it cannot be streamed without gaps.
    #[error("the log is damaged: entry {seq} is missing")]
    Corrupt {
        /// The first missing sequence number.
        seq: u64,
    },
    /// Reading or writing the log failed.
    #[error("log storage failed: {0}")]
    Storage(#[from] redb::Error),
    /// A commit could not be made durable.
    #[error("log commit failed: {0}")]
    Durability(String),
    /// The NATS cluster holding the log could not be reached or refused a request.
    #[error("nats: cannot {what}: {error}")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        error: String,
    },
    /// An entry could not be encoded as JSON.
    #[error("cannot encode a log entry: {0}")]
    Encode(#[from] serde_json::Error),
    /// The API listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("control api server failed: {0}")]
    Serve(std::io::Error),
    /// The CLI could not talk to the control plane, or it refused the request.
    #[error("{0}")]
    Client(String),
}

/// A validation failure: which field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The field, e.g. `files[2]`, or `body` for the whole request.
    pub field: String,
    /// What is wrong, lowercase.
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

/// The body of an error answer.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, field: None, message: message.into() }
    }

    /// An answer about one field of the request, with its own status (e.g. 413 for `body`).
    pub(crate) fn field(status: StatusCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, field: Some(field.into()), message: message.into() }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        Self::field(StatusCode::BAD_REQUEST, e.field, e.message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        tracing::error!(error = %e, "request failed");
        match e {
            // The log recovers on a later append once the disk does (`log`), so say so.
            Error::Storage(_)
            | Error::Durability(_)
            | Error::Open { .. }
            | Error::Corrupt { .. }
            | Error::Nats { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the log cannot be written right now; nothing was appended, retry later",
            ),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: &self.message, field: self.field.as_deref() };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
