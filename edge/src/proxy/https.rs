//! Per-site HTTPS policy: the redirect of plain-HTTP requests (`https_redirect`) and
//! `Strict-Transport-Security` (`hsts`).
//!
//! The redirect is what nginx's `return 301 https://$host$request_uri;` and Cloudflare's
//! "Always Use HTTPS" send, with one refinement: `301 Moved Permanently` for GET and HEAD, but
//! `308 Permanent Redirect` for other methods, because clients may turn a POST that follows a
//! 301 into a GET and lose its body (RFC 9110 §15.4.2), while a 308 keeps method and body. The
//! location is `https://HOST[:PORT]/PATH?QUERY`: the request's host without its port, and the
//! port of the first TLS listener unless that is 443 (or 0, chosen at start). The redirect is
//! made before the cache is consulted and never reaches the origin.
//!
//! HSTS is set on every response the site serves over TLS, hits, origin responses and the
//! edge's own error responses alike (replacing one the origin sent, as nginx's `add_header …
//! always` does), and never over plain HTTP, where browsers ignore it
//! (RFC 6797 §8.1). Only `max-age` is sent: `includeSubDomains` and `preload` commit other
//! hosts too, which should be a deliberate choice made at the origin.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, Uri};

use crate::body::{Body, full};

/// The redirect of a plain-HTTP request for `host` (lowercase, without port) to HTTPS.
pub fn redirect(method: &Method, host: &str, port: Option<u16>, uri: &Uri) -> Response<Body> {
    let location = location(host, port, uri);
    let status = if method == Method::GET || method == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let body = if method == Method::HEAD { String::new() } else { format!("{location}\n") };
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    // The host came from a parsed request and the path from a parsed URI, so the location is
    // a valid header value; fall back to the site root rather than fail.
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/")),
    );
    res
}

fn location(host: &str, port: Option<u16>, uri: &Uri) -> String {
    let host =
        if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    match port {
        Some(p) => format!("https://{host}:{p}{path}"),
        None => format!("https://{host}{path}"),
    }
}

/// The `Strict-Transport-Security` value for a max-age.
pub fn hsts(max_age: stratus_config::Duration) -> HeaderValue {
    // Digits only, so always a valid value.
    HeaderValue::try_from(format!("max-age={}", max_age.get().as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_table() {
        let cases = [
            (Method::GET, "a.test", None, "/x/y?q=1", 301, "https://a.test/x/y?q=1"),
            (Method::HEAD, "a.test", Some(8443), "/", 301, "https://a.test:8443/"),
            (Method::POST, "a.test", None, "/form", 308, "https://a.test/form"),
            (Method::DELETE, "::1", Some(8443), "/k", 308, "https://[::1]:8443/k"),
            (Method::GET, "[::1]", None, "*", 301, "https://[::1]/"),
        ];
        for (method, host, port, uri, status, location) in cases {
            let res = redirect(&method, host, port, &uri.parse().unwrap());
            assert_eq!(res.status().as_u16(), status, "{method} {uri}");
            assert_eq!(res.headers()[header::LOCATION], location, "{method} {uri}");
        }
    }

    #[test]
    fn hsts_is_max_age_in_seconds() {
        assert_eq!(hsts(stratus_config::Duration::secs(31_536_000)), "max-age=31536000");
    }
}
