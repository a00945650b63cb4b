//! A client's view of a response: status, headers, body and `Cache-Status`, fetched with
//! reqwest ([`get`], [`send`]) or over one fresh HTTP/1.1 connection with a chosen `Host`
//! ([`get_on`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

/// An HTTP client that talks to the edge directly.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

/// A response's status, headers and whole body.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Got {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }

    /// The `Cache-Status` value.
    pub fn cache(&self) -> String {
        self.header("cache-status")
    }

    /// The last `Cache-Status` member: the one the edge that answered added (the members of
    /// upper tiers come before it).
    pub fn own_cache(&self) -> String {
        let cache = self.cache();
        cache.rsplit(',').next().unwrap_or("").trim().to_owned()
    }

    /// The `ttl` parameter of the answering edge's `Cache-Status` member (panics when there
    /// is none).
    pub fn ttl(&self) -> i64 {
        let cache = self.own_cache();
        let ttl = cache.split("ttl=").nth(1).and_then(|s| s.split(';').next());
        ttl.and_then(|t| t.trim().parse().ok()).unwrap_or_else(|| panic!("no ttl in {cache:?}"))
    }

    /// Whether the answering edge served the response from its cache (`Cache-Status: …; hit`).
    pub fn hit(&self) -> bool {
        self.own_cache().split(';').any(|p| p.trim() == "hit")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(req: reqwest::RequestBuilder) -> Got {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.expect("body");
    Got { status, headers, body }
}

/// GET `url` with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req).await
}

/// `GET path` with `Host: host` from the server at `addr` (HTTP/1.1, a fresh connection).
pub async fn get_on(addr: &str, host: &str, path: &str) -> Got {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to edge");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let request =
        hyper::Request::get(path).header("host", host).body(Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("edge answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Got { status, headers, body }
}

/// The value of the first sample in Prometheus text `metrics` whose line starts with `prefix`
/// (a family name, with labels if they matter); panics, showing the text, when there is none.
pub fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
}

/// Checks an exposition with Prometheus's own linter, `promtool check metrics` (Debian's
/// `prometheus` package; `.ci/run` installs it): it fails, rather than skips, without it.
pub fn promtool_check(metrics: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool is required (apt-get install prometheus): {e}"));
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin.write_all(metrics.as_bytes()).expect("writing to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{metrics}");
}
