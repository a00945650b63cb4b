//! One object event, as posted to the control plane and as kept in the outbox.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Put,
    Copy,
    CompleteMultipart,
    Delete,
}

/// One object event (docs/PROTOCOL.md, "Origin → control").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: Kind,
    pub bucket: String,
    pub key: String,
    /// Quoted, as in the `ETag` header; absent for deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// RFC 3339 UTC.
    pub at: String,
}

impl Event {
    /// An event happening now; `etag` is given without quotes.
    pub fn new(kind: Kind, bucket: &str, key: &str, etag: Option<&str>, size: Option<u64>) -> Self {
        Self {
            kind,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.map(|e| format!("\"{e}\"")),
            size,
            at: rfc3339(SystemTime::now()),
        }
    }
}

/// The body of one POST.
#[derive(Debug, Serialize)]
pub struct Batch<'a> {
    pub events: &'a [Event],
}

pub fn rfc3339(t: SystemTime) -> String {
    let ts = s3s::dto::Timestamp::from(t);
    let mut out = Vec::new();
    match ts.format(s3s::dto::TimestampFormat::DateTime, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_the_protocol_says() {
        let e = Event {
            kind: Kind::CompleteMultipart,
            bucket: "demo".into(),
            key: "a/b.css".into(),
            etag: Some("\"x-2\"".into()),
            size: Some(3),
            at: rfc3339(SystemTime::UNIX_EPOCH),
        };
        let json = serde_json::to_value(Batch { events: std::slice::from_ref(&e) }).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"events": [{"kind": "complete_multipart", "bucket": "demo", "key": "a/b.css",
                "etag": "\"x-2\"", "size": 3, "at": "1970-01-01T00:00:00.000Z"}]})
        );
        let back: Event = serde_json::from_value(json["events"][0].clone()).expect("reads back");
        assert_eq!(back, e);
    }
}
