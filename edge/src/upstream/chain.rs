//! Reading an error's chain of sources: which step failed, and a whole chain for logs.

use crate::error::ProxyError;
use crate::upstream::connect::ConnectTimeout;
use crate::upstream::dns::DnsError;

/// The first error of type `T` among `e` and its sources, looking inside `io::Error`s too
/// (whose `source` skips the error they wrap, which is where TLS errors sit).
pub(crate) fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(t) = find::<T>(inner)
        {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// An error and its sources, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Which step of an origin exchange failed, from hyper-util's error and its sources.
pub(crate) fn classify(e: &hyper_util::client::legacy::Error) -> ProxyError {
    if let Some(dns) = find::<DnsError>(e) {
        return ProxyError::Dns(dns.to_string());
    }
    if let Some(tls) = find::<rustls::Error>(e) {
        return ProxyError::Tls(tls.to_string());
    }
    if let Some(t) = find::<ConnectTimeout>(e) {
        return ProxyError::Connect(t.to_string());
    }
    if e.is_connect() {
        return ProxyError::Connect(error_chain(e));
    }
    if find::<http_body_util::LengthLimitError>(e).is_some() {
        // The request body hit its size limit while being sent: the client's fault.
        return ProxyError::BodyTooLarge;
    }
    ProxyError::Upstream(error_chain(e))
}
