//! HTTP/2 to clients, served with the `h2` crate (issue #22): the origin's `102` and `103 Early
//! Hints` reach h2c clients on the request's stream before the final response, for fills and
//! pass-through requests alike, and are never stored (a hit sends none); request bodies larger
//! than the receive windows flow through; a reset stream, SIGTERM and a peer that stops
//! answering PINGs end what they should and nothing more. The client is the `h2` crate's (hyper's and
//! reqwest's HTTP/2 clients do not show 1xx). The h2 over TLS case is in `tls.rs`, next to the
//! other ALPN tests.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::future::poll_fn;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::conformance::{early_hints_origin, processing_origin};
use crate::support::edge::{edge, edge_with_config};
use crate::support::origin::{Origin, Reply};
use crate::support::{self, stratus};

/// One exchange as an HTTP/2 client sees it.
pub(crate) struct Exchange {
    /// The 1xx heads, in order.
    pub interim: Vec<Response<()>>,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Exchange {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
    }

    pub fn interim_statuses(&self) -> Vec<u16> {
        self.interim.iter().map(|r| r.status().as_u16()).collect()
    }
}

/// An HTTP/2 connection over `io` (h2c with prior knowledge, or TLS after ALPN).
pub(crate) async fn connect<I>(io: I) -> SendRequest<Bytes>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connect_watched(io).await.0
}

/// [`connect`], and the task driving the connection, which ends when the connection does.
async fn connect_watched<I>(io: I) -> (SendRequest<Bytes>, tokio::task::JoinHandle<()>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::handshake(io).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

/// Sends `req` with `body` (none when empty) and reads everything the server answers.
pub(crate) async fn exchange(send: &SendRequest<Bytes>, req: Request<()>, body: Bytes) -> Exchange {
    let mut send = send.clone().ready().await.unwrap();
    let empty = body.is_empty();
    let (mut response, mut stream) = send.send_request(req, empty).unwrap();
    if !empty {
        stream.send_data(body, true).unwrap();
    }
    let mut interim = Vec::new();
    while let Some(info) = poll_fn(|cx| response.poll_informational(cx)).await {
        interim.push(info.unwrap());
    }
    let (parts, mut recv) = response.await.unwrap().into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        recv.flow_control().release_capacity(chunk.len()).unwrap();
        body.extend_from_slice(&chunk);
    }
    Exchange { interim, status: parts.status.as_u16(), headers: parts.headers, body: body.into() }
}

/// A GET of `uri` (scheme and authority included).
pub(crate) fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// The early-hints checks shared by h2c and h2 over TLS: a first GET gets `102`, then `103`
/// with both `Link`s, then the final response; a second one, a hit, gets no 1xx.
pub(crate) async fn assert_early_hints_then_a_hit_without_them(send: &SendRequest<Bytes>, uri: &str) {
    let first = exchange(send, get(uri), Bytes::new()).await;
    assert_eq!(first.interim_statuses(), [102, 103]);
    let links: Vec<&str> =
        first.interim[1].headers().get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(links, ["</style.css>; rel=preload; as=style", "</app.js>; rel=preload; as=script"]);
    assert_eq!((first.status, &first.body[..]), (200, &b"final 1"[..]));
    // The 1xx were the origin's answer to this request only: the stored response has none.
    let hit = exchange(send, get(uri), Bytes::new()).await;
    assert!(hit.interim.is_empty(), "{:?}", hit.interim_statuses());
    assert_eq!((hit.status, &hit.body[..]), (200, &b"final 1"[..]));
    assert!(hit.header("cache-status").contains("; hit"), "{}", hit.header("cache-status"));
}

/// An edge in front of a raw origin (`--origin` flag), HTTP listener only.
fn edge_for(url: &str) -> support::Proc {
    let mut cmd = stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", url]);
    support::Proc::start(cmd, &["edge http"])
}

/// RFC 9110 §15.2 over h2c: 102 and 103 (with its `Link`s) on the stream before the final
/// response; not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_hints_reach_h2c_clients_before_the_final_response_and_are_not_stored() {
    let origin = early_hints_origin().await;
    let edge = edge_for(&origin.url);
    let send = connect(TcpStream::connect(edge.addr("edge http")).await.unwrap()).await;
    let uri = format!("{}/hints-h2c", edge.url("edge http"));
    assert_early_hints_then_a_hit_without_them(&send, &uri).await;
    assert_eq!(origin.heads().len(), 1);
}

/// A pass-through request (POST) over HTTP/2 gets the origin's `102 Processing` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pass_through_requests_over_h2c_get_102_before_their_answer() {
    let origin = processing_origin().await;
    let edge = edge_for(&origin.url);
    let send = connect(TcpStream::connect(edge.addr("edge http")).await.unwrap()).await;
    let req = Request::post(format!("{}/jobs", edge.url("edge http"))).body(()).unwrap();
    let created = exchange(&send, req, Bytes::new()).await;
    assert_eq!(created.interim_statuses(), [102]);
    assert_eq!((created.status, &created.body[..]), (201, &b"created"[..]));
}

/// A request body larger than the stream's and the connection's receive windows (1 and
/// 2 MiB) reaches the origin whole: the edge gives the client its window back as it forwards.
/// The response has a `Date`, as hyper gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_bodies_larger_than_the_windows_reach_the_origin_whole() {
    let origin = Origin::start().await;
    origin.fixed("/h2/upload", Reply::ok("stored", &[]));
    let edge = edge(&origin, &[]);
    let send = connect(TcpStream::connect(edge.addr("edge http")).await.unwrap()).await;
    let body: Bytes = (0..5u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let req = Request::put(format!("{}/h2/upload", edge.url("edge http")))
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let res = exchange(&send, req, body.clone()).await;
    assert_eq!((res.status, &res.body[..]), (200, &b"stored"[..]), "{:?}", res.headers);
    assert!(res.header("date").ends_with(" GMT"), "{:?}", res.headers);
    let seen = origin.seen("/h2/upload");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].body == body, "the origin got {} bytes", seen[0].body.len());
}

/// Whether a new stream on `send` is refused (the connection got a GOAWAY or closed); when it
/// is not, `probe` is fetched on it.
async fn refused(send: &SendRequest<Bytes>, probe: &str) -> bool {
    match send.clone().ready().await {
        Err(_) => true,
        Ok(mut s) => match s.send_request(get(probe), true) {
            Err(_) => true,
            Ok((res, _)) => res.await.is_err(),
        },
    }
}

/// A client that resets its stream (RST_STREAM CANCEL) while the response body waits for the
/// origin ends that response only: the same connection goes on serving, and the reset stream
/// does not keep the connection busy (it is closed once idle for `idle_timeout`, which a
/// stream still waiting on the origin would prevent).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_reset_mid_response_ends_it_and_leaves_the_connection_serving() {
    let origin = Origin::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    origin.fixed(
        "/h2/stuck",
        Reply::ok("", &[]).parts(vec![
            support::origin::Part::Data(Bytes::from_static(b"first part")),
            support::origin::Part::Gate(gate.clone()),
            support::origin::Part::Data(Bytes::from_static(b"the rest")),
        ]),
    );
    origin.fixed("/h2/probe", Reply::ok("probe", &[]));
    let (edge, _dir) = edge_with_config(
        &origin,
        "[edge.limits]\nidle_timeout = \"1s\"\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n",
    );
    let (send, conn) = connect_watched(TcpStream::connect(edge.addr("edge http")).await.unwrap()).await;
    let probe = format!("{}/h2/probe", edge.url("edge http"));

    let mut ready = send.clone().ready().await.unwrap();
    let (response, mut stream) =
        ready.send_request(get(&format!("{}/h2/stuck", edge.url("edge http"))), true).unwrap();
    let mut recv = response.await.unwrap().into_body();
    assert_eq!(&recv.data().await.unwrap().unwrap()[..], b"first part");
    stream.send_reset(h2::Reason::CANCEL);
    drop(recv);

    let other = exchange(&send, get(&probe), Bytes::new()).await;
    assert_eq!((other.status, &other.body[..]), (200, &b"probe"[..]));
    // `send` stays: a client whose handles are all gone would close the connection itself.
    support::until("the idle connection is closed", std::time::Duration::from_secs(20), || async {
        conn.is_finished().then_some(())
    })
    .await;
    gate.add_permits(1);
    drop(send);
}

/// SIGTERM over HTTP/2: the response in flight finishes, the connection gets a GOAWAY (no new
/// stream is served on it), and the edge exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_h2_responses_in_flight_finish_and_refuses_new_streams() {
    let origin = Origin::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    origin.fixed(
        "/h2/slow",
        Reply::ok("", &[("cache-control", "max-age=60")]).parts(vec![
            support::origin::Part::Gate(gate.clone()),
            support::origin::Part::Data(Bytes::from_static(b"finished")),
        ]),
    );
    origin.fixed("/h2/probe", Reply::ok("probe", &[]));
    let mut edge = edge(&origin, &[]);
    let send = connect(TcpStream::connect(edge.addr("edge http")).await.unwrap()).await;
    let uri = format!("{}/h2/slow", edge.url("edge http"));
    let probe = format!("{}/h2/probe", edge.url("edge http"));
    let in_flight = {
        let (send, uri) = (send.clone(), uri.clone());
        tokio::spawn(async move { exchange(&send, get(&uri), Bytes::new()).await })
    };
    support::until("the request reached the origin", std::time::Duration::from_secs(10), || async {
        (origin.hits("/h2/slow") == 1).then_some(())
    })
    .await;
    edge.signal("TERM");
    // The GOAWAY arrives: a new stream on this connection is refused.
    support::until("new streams are refused", std::time::Duration::from_secs(10), || async {
        refused(&send, &probe).await.then_some(())
    })
    .await;
    gate.add_permits(1);
    let done = in_flight.await.unwrap();
    assert_eq!((done.status, &done.body[..]), (200, &b"finished"[..]));
    assert_eq!(edge.wait_exit(std::time::Duration::from_secs(20)), Some(0));
}

/// A transport whose reads can be frozen: the peer then never sees what the edge sends (its
/// PINGs included) while the socket stays open, as with a client that vanished without a FIN.
struct Freezable {
    inner: TcpStream,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AsyncRead for Freezable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Freezable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A client that stops answering the edge's keep-alive PINGs while its stream waits on the
/// origin is dropped (a PING every `idle_timeout`, 20 s for the answer), so it cannot hold a
/// connection slot forever: with `max_connections = 1`, the next client is served then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_stops_answering_pings_is_dropped_and_frees_its_slot() {
    let origin = Origin::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    origin.fixed(
        "/h2/held",
        Reply::ok("", &[]).parts(vec![
            support::origin::Part::Data(Bytes::from_static(b"first part")),
            support::origin::Part::Gate(gate.clone()),
        ]),
    );
    origin.fixed("/h2/next", Reply::ok("next", &[]));
    let (edge, _dir) = edge_with_config(
        &origin,
        "[edge.limits]\nidle_timeout = \"1s\"\nmax_connections = 1\n\
         [[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n",
    );
    let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = Freezable {
        inner: TcpStream::connect(edge.addr("edge http")).await.unwrap(),
        frozen: frozen.clone(),
    };
    let (send, _conn) = connect_watched(io).await;
    let mut ready = send.clone().ready().await.unwrap();
    let (response, _stream) =
        ready.send_request(get(&format!("{}/h2/held", edge.url("edge http"))), true).unwrap();
    let mut recv = response.await.unwrap().into_body();
    assert_eq!(&recv.data().await.unwrap().unwrap()[..], b"first part");
    frozen.store(true, std::sync::atomic::Ordering::SeqCst);

    let next = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        crate::support::http::get(&format!("{}/h2/next", edge.url("edge http")), &[]),
    )
    .await
    .expect("the silent peer still holds the only connection slot");
    assert_eq!(next.text(), "next");
    gate.add_permits(1);
    drop((send, recv));
}
