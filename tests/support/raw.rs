//! A raw-TCP origin for what a well-behaved HTTP server never sends (an unsolicited `101`, a
//! status of 999, both `Content-Length` and `Transfer-Encoding`, bodies cut short, bodies of
//! hundreds of MiB generated on the fly), and a raw-TCP client that reads whatever comes back.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What the raw origin writes, in order.
#[derive(Clone)]
pub enum Piece {
    /// These bytes, as they are.
    Bytes(Vec<u8>),
    /// `len` bytes of [`pattern`] (byte `i` is `i % 251`), as `chunked` transfer coding in
    /// chunks of 64 KiB, or plain.
    Pattern { len: u64, chunked: bool },
    /// Wait until the test adds a permit.
    Gate(Arc<Semaphore>),
    /// Close the connection now (the default after the last piece is to wait for the next
    /// request on the same connection).
    Close,
}

/// Byte `i` of the generated bodies.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Answers the n-th request (from 1) given its head.
type Answer = Arc<dyn Fn(&str, usize) -> Vec<Piece> + Send + Sync>;

/// An origin speaking raw bytes.
pub struct RawOrigin {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    /// Starts an origin whose answer to the n-th request (from 1) is `answer(head, n)`.
    pub async fn start(answer: impl Fn(&str, usize) -> Vec<Piece> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind raw origin");
        let url = format!("http://{}", listener.local_addr().expect("raw origin address"));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let answer: Answer = Arc::new(answer);
        let h = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, h.clone(), answer.clone()));
            }
        });
        Self { url, heads, task }
    }

    /// The request heads received, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, heads: Arc<Mutex<Vec<String>>>, answer: Answer) {
    let _ = stream.set_nodelay(true);
    loop {
        let Some(head) = read_head(&mut stream).await else { return };
        let n = {
            let mut heads = heads.lock().expect("lock");
            heads.push(head.clone());
            heads.len()
        };
        for piece in answer(&head, n) {
            let ok = match piece {
                Piece::Bytes(b) => stream.write_all(&b).await.is_ok(),
                Piece::Pattern { len, chunked } => write_pattern(&mut stream, len, chunked).await.is_ok(),
                Piece::Gate(g) => g.acquire().await.map(|p| p.forget()).is_ok(),
                Piece::Close => false,
            };
            if !ok {
                return;
            }
        }
    }
}

async fn write_pattern(stream: &mut TcpStream, len: u64, chunked: bool) -> std::io::Result<()> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf = Vec::with_capacity(CHUNK as usize + 16);
    let mut at = 0;
    while at < len {
        let n = CHUNK.min(len - at);
        buf.clear();
        if chunked {
            buf.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        }
        buf.extend((at..at + n).map(pattern));
        if chunked {
            buf.extend_from_slice(b"\r\n");
        }
        stream.write_all(&buf).await?;
        at += n;
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// Reads a message head (through the empty line); `None` at end of stream.
pub async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Sends `request` on a fresh connection to `addr` and reads one response: its raw bytes, head
/// and body, as framed by `Content-Length`, `chunked` or the end of the connection.
pub async fn exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send request");
    let Some(head) = read_head(&mut stream).await else { return Vec::new() };
    let lower = head.to_ascii_lowercase();
    let mut out = head.into_bytes();
    let length =
        lower.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()));
    let chunked = lower.contains("\r\ntransfer-encoding: chunked");
    let mut buf = [0u8; 16 * 1024];
    loop {
        let body = out.len() - lower.len();
        match length {
            Some(Ok(n)) if !chunked && body >= n => return out,
            _ if chunked && out.ends_with(b"\r\n0\r\n\r\n") => return out,
            _ => {}
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One response read off a raw connection: status code, head, body (`Content-Length` or
/// chunked framing).
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Reads a response head (through the blank line) off a blocking connection.
pub fn read_head_blocking(tcp: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            std::io::Read::read(tcp, &mut byte).expect("well-formed response"),
            1,
            "connection closed before the head ended: {buf:?}"
        );
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn read_line(tcp: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        assert_eq!(
            std::io::Read::read(tcp, &mut byte).expect("well-formed response"),
            1,
            "connection closed inside a chunk header"
        );
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf[..buf.len() - 2]).into_owned()
}

/// Reads one whole response off a blocking connection (no body for a HEAD).
pub fn read_response(tcp: &mut std::net::TcpStream, head_request: bool) -> Raw {
    let head = read_head_blocking(tcp);
    let status =
        head.split_whitespace().nth(1).expect("well-formed response").parse().expect("well-formed response");
    let field = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if head_request {
    } else if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = usize::from_str_radix(
                read_line(tcp).split(';').next().expect("well-formed response").trim(),
                16,
            )
            .expect("well-formed response");
            let mut chunk = vec![0u8; size + 2];
            std::io::Read::read_exact(tcp, &mut chunk).expect("well-formed response");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let len: usize = field("content-length").map_or(0, |v| v.parse().expect("well-formed response"));
        body = vec![0u8; len];
        std::io::Read::read_exact(tcp, &mut body).expect("well-formed response");
    }
    Raw { status, head, body }
}

/// Sends `bytes` on a new blocking connection to `addr` and reads `n` framed responses.
pub fn exchange_framed(addr: &str, bytes: &[u8], n: usize, head_request: bool) -> Vec<Raw> {
    use std::io::Write;
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("timeout");
    tcp.write_all(bytes).expect("send");
    (0..n).map(|_| read_response(&mut tcp, head_request)).collect()
}
