//! `stratus up`: a whole local CDN in one command — an origin with a public demo bucket, the
//! control plane, and two edges following it, all in this process on 127.0.0.1.
//!
//! Nothing runs open or with well-known keys, even on loopback (any local process or a web page
//! the user visits can reach 127.0.0.1): the bearer token of the control API and the edge admin
//! APIs and the origin's S3 credentials come from `STRATUS_TOKEN`, `STRATUS_ACCESS_KEY` and
//! `STRATUS_SECRET_KEY` when set, and are otherwise generated for this run and printed once
//! everything listens.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use stratus_config::edge::Admin;
use stratus_config::{ControlConfig, EdgeConfig, Env, HttpUrl, ListenAddr, OriginConfig, Secret};
use stratus_origin::store::{ObjectMeta, Store, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The demo bucket every edge serves.
const BUCKET: &str = "demo";

/// A secret of this run and where it came from.
struct RunSecret {
    value: Secret,
    /// Generated here rather than taken from the environment, so it is printed.
    generated: bool,
}

impl RunSecret {
    /// The environment's value, or `bytes` random bytes as hex from the thread-local CSPRNG
    /// (ChaCha seeded by the operating system).
    fn from_env_or_random(env: Option<&Secret>, bytes: usize) -> Self {
        match env {
            Some(value) => Self { value: value.clone(), generated: false },
            None => {
                let mut random = vec![0u8; bytes];
                rand::fill(&mut random[..]);
                Self { value: Secret::new(hex(&random)), generated: true }
            }
        }
    }
}

/// The token and S3 credentials of this run.
struct Secrets {
    token: RunSecret,
    access_key: RunSecret,
    secret_key: RunSecret,
}

impl Secrets {
    fn new(env: &Env) -> Self {
        Self {
            token: RunSecret::from_env_or_random(env.token.as_ref(), 16),
            access_key: RunSecret::from_env_or_random(env.access_key.as_ref(), 10),
            secret_key: RunSecret::from_env_or_random(env.secret_key.as_ref(), 16),
        }
    }
}

/// Arguments of `stratus up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// First port: origin on BASE, control on BASE+1, edges on BASE+2 and BASE+3 (their admin
    /// APIs on BASE+4 and BASE+5). Without it: origin 9000, control 7070, edges 8080 and 8090,
    /// admins 8081 and 8091.
    #[arg(long)]
    pub port_base: Option<u16>,
    /// Keep state (buckets, event log) here between runs; default: a temporary directory
    /// removed on exit.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run the two edges as one cluster (one PoP, one cache): each object has one owner edge
    /// by rendezvous hashing, and the other edge fetches it from that owner, not the origin.
    #[arg(long)]
    pub cluster: bool,
}

/// Where each part listens.
struct Ports {
    origin: u16,
    control: u16,
    edges: [(u16, u16); 2],
}

impl Ports {
    fn new(base: Option<u16>) -> Result<Self> {
        let Some(b) = base else {
            return Ok(Self { origin: 9000, control: 7070, edges: [(8080, 8081), (8090, 8091)] });
        };
        if b == 0 || b > u16::MAX - 5 {
            bail!("--port-base must be between 1 and {}", u16::MAX - 5);
        }
        Ok(Self { origin: b, control: b + 1, edges: [(b + 2, b + 4), (b + 3, b + 5)] })
    }

    fn all(&self) -> Vec<(u16, &'static str)> {
        vec![
            (self.origin, "origin"),
            (self.control, "control plane"),
            (self.edges[0].0, "edge a"),
            (self.edges[0].1, "edge a admin"),
            (self.edges[1].0, "edge b"),
            (self.edges[1].1, "edge b admin"),
        ]
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn url(port: u16, path: &str) -> Result<HttpUrl> {
    format!("http://127.0.0.1:{port}{path}").parse().map_err(anyhow::Error::msg)
}

/// Starts everything and runs until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs, env: &Env) -> Result<ExitCode> {
    let ports = Ports::new(args.port_base)?;
    // Say which port is taken before anything starts, rather than half a CDN.
    for (port, what) in ports.all() {
        if let Err(e) = TcpListener::bind(local(port)) {
            bail!("port {port} ({what}) is not free: {e}; stop what uses it or pick --port-base");
        }
    }
    let (data, _temporary) = match args.data {
        Some(dir) => (dir, None),
        None => {
            let dir =
                tempfile::Builder::new().prefix("stratus-up-").tempdir().context("temporary directory")?;
            (dir.path().to_owned(), Some(dir))
        }
    };
    let origin_dir = data.join("origin");
    let seeded = seed_demo_bucket(&origin_dir).await?;

    let secrets = Secrets::new(env);
    let token = Some(secrets.token.value.clone());
    let mut origin = OriginConfig::new(ListenAddr(local(ports.origin)), origin_dir);
    origin.make_public(BUCKET);
    if let Some(bucket) = origin.buckets.iter_mut().find(|b| b.name == BUCKET) {
        bucket.cache_control = Some("public, max-age=60".to_owned());
    }
    origin.access_key = Some(secrets.access_key.value.clone());
    origin.secret_key = Some(secrets.secret_key.value.clone());
    origin.notify = Some(url(ports.control, "/v1/events/origin")?);
    origin.token.clone_from(&token);

    let mut control = ControlConfig::new(ListenAddr(local(ports.control)), data.join("control"));
    control.origin = Some(url(ports.origin, "")?);
    control.token.clone_from(&token);

    let stop = CancellationToken::new();
    tokio::spawn(crate::signal::cancel_on_signal(stop.clone()));
    let mut parts = JoinSet::new();
    parts.spawn(named("origin", stratus_origin::run(origin, stop.clone())));
    parts.spawn(named("control", stratus_control::run(control, stop.clone())));
    let peers = ports.edges.iter().map(|(http, _)| url(*http, "")).collect::<Result<Vec<_>>>()?;
    for (name, (http, admin)) in ["edge-a", "edge-b"].into_iter().zip(ports.edges) {
        let mut edge = EdgeConfig::simple(ListenAddr(local(http)), url(ports.origin, &format!("/{BUCKET}"))?);
        edge.id = Some(name.to_owned());
        edge.admin = Some(Admin { listen: ListenAddr(local(admin)), metrics_token: None });
        edge.control = Some(url(ports.control, "")?.into());
        edge.token.clone_from(&token);
        if args.cluster {
            edge.cluster = Some(stratus_config::edge::Cluster::new(peers.clone(), Some(url(http, "")?)));
        }
        // `stratus up` builds its edges' configuration itself; there is no file to reload.
        let (_no_reloads, reloads) = tokio::sync::mpsc::channel(1);
        parts.spawn(named(name, stratus_edge::run(edge, stop.clone(), reloads)));
    }

    let ready = wait_until_listening(&ports, &stop);
    tokio::select! {
        ready = ready => {
            if ready {
                print_welcome(&ports, &data, seeded, args.cluster, &secrets);
            }
        }
        Some(done) = parts.join_next() => {
            stop.cancel();
            let failure = done.context("a part of stratus up panicked")?;
            failure?;
        }
    }
    stop.cancelled().await;
    // Give every part its graceful shutdown, then report the first failure, if any.
    let mut result = Ok(());
    while let Some(done) = parts.join_next().await {
        if let Err(e) = done.context("a part of stratus up panicked").and_then(|r| r)
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// Labels a part's error with its name.
async fn named<E: std::error::Error + Send + Sync + 'static>(
    name: &'static str,
    part: impl Future<Output = Result<(), E>>,
) -> Result<()> {
    part.await.with_context(|| format!("{name} stopped"))
}

/// Waits until every port accepts connections; false if `stop` fired first.
async fn wait_until_listening(ports: &Ports, stop: &CancellationToken) -> bool {
    for (port, _) in ports.all() {
        loop {
            if stop.is_cancelled() {
                return false;
            }
            if tokio::net::TcpStream::connect(local(port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    true
}

fn print_welcome(ports: &Ports, data: &Path, seeded: bool, clustered: bool, secrets: &Secrets) {
    let [(a, a_admin), (b, b_admin)] = ports.edges;
    println!(
        "\nStratus is up{seeded}.\n\
         \n  origin (S3)     http://127.0.0.1:{origin}   bucket `{BUCKET}` is public\
         \n  control plane   http://127.0.0.1:{control}   dashboard at /\
         \n  edge a          http://127.0.0.1:{a}   admin http://127.0.0.1:{a_admin}\
         \n  edge b          http://127.0.0.1:{b}   admin http://127.0.0.1:{b_admin}{cluster}\
         \n  data            {data}\
         \n\n{secrets}\
         \n\nTry:\
         \n  curl -si http://127.0.0.1:{a}/index.html | grep -iE '^(cache-status|age)'   # miss, then hit\
         \n  curl -si http://127.0.0.1:{b}/index.html | grep -iE '^(cache-status|age)'\
         \n  stratus purge --control http://127.0.0.1:{control} --tag blog --wait\
         \n  curl -s -H \"Authorization: Bearer $STRATUS_TOKEN\" http://127.0.0.1:{control}/v1/edges\
         \n  curl -s -H \"Authorization: Bearer $STRATUS_TOKEN\" http://127.0.0.1:{a_admin}/metrics | grep stratus_\
         \n  aws --endpoint-url http://127.0.0.1:{origin} s3 cp ./some-file s3://{BUCKET}/some-file\
         \n\nCtrl-C stops everything.",
        seeded = if seeded { ", with the demo bucket seeded" } else { "" },
        cluster = if clustered {
            "\n  (edges a and b are one cluster: each object has one owner edge)"
        } else {
            ""
        },
        origin = ports.origin,
        control = ports.control,
        data = data.display(),
        secrets = secret_lines(secrets),
    );
}

/// Shell lines that put this run's secrets where the `Try:` commands look for them. Generated
/// values are printed (there is no other way to learn them); values the user set in the
/// environment are not echoed.
fn secret_lines(s: &Secrets) -> String {
    let line = |var: &str, secret: &RunSecret, from: &str, what: &str| {
        let value = if secret.generated { secret.value.expose().to_owned() } else { format!("\"${from}\"") };
        format!("  export {var}={value}   # {what}")
    };
    let token = if s.token.generated {
        line(
            "STRATUS_TOKEN",
            &s.token,
            "STRATUS_TOKEN",
            "bearer token of the control API and the edge admin APIs",
        )
    } else {
        "  # STRATUS_TOKEN (from your environment) guards the control API and the edge admin APIs".to_owned()
    };
    let chosen = if s.token.generated || s.access_key.generated || s.secret_key.generated {
        "Secrets, generated for this run (set STRATUS_TOKEN, STRATUS_ACCESS_KEY and STRATUS_SECRET_KEY to \
         choose your own)"
    } else {
        "Secrets from your environment"
    };
    format!(
        "{chosen}. Paste these lines into the shell you try things from:\n{token}\n{access}\n{secret}",
        access = line("AWS_ACCESS_KEY_ID", &s.access_key, "STRATUS_ACCESS_KEY", "the origin's S3 access key"),
        secret =
            line("AWS_SECRET_ACCESS_KEY", &s.secret_key, "STRATUS_SECRET_KEY", "the origin's S3 secret key"),
    )
}

/// The demo content: (key, content type, surrogate keys, body).
fn demo_objects() -> Vec<(&'static str, &'static str, &'static str, Vec<u8>)> {
    let big: Vec<u8> = (0..10u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    vec![
        ("index.html", "text/html; charset=utf-8", "site html", include_bytes!("demo/index.html").to_vec()),
        ("style.css", "text/css; charset=utf-8", "site css", include_bytes!("demo/style.css").to_vec()),
        ("logo.svg", "image/svg+xml", "site images", include_bytes!("demo/logo.svg").to_vec()),
        (
            "blog/first-post.html",
            "text/html; charset=utf-8",
            "blog post-1",
            include_bytes!("demo/first-post.html").to_vec(),
        ),
        (
            "blog/second-post.html",
            "text/html; charset=utf-8",
            "blog post-2",
            include_bytes!("demo/second-post.html").to_vec(),
        ),
        ("files/10MiB.bin", "application/octet-stream", "downloads", big),
    ]
}

/// Creates the demo bucket with its objects unless it already exists (a kept `--data`
/// directory keeps whatever the user changed). Writes go through the origin's crash-safe store.
async fn seed_demo_bucket(dir: &Path) -> Result<bool> {
    let store = Store::open(dir).await.with_context(|| format!("cannot open {}", dir.display()))?;
    match store.create_bucket(BUCKET).await {
        Ok(()) => {}
        Err(StoreError::BucketExists) => return Ok(false),
        Err(e) => return Err(e).context("cannot create the demo bucket"),
    }
    let bucket = store.bucket(BUCKET).context("the demo bucket")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    for (key, content_type, tags, body) in demo_objects() {
        let mut staged = bucket.stage(key).await?;
        staged.write(&body).await?;
        let mut meta = ObjectMeta {
            key: key.to_owned(),
            size: staged.size(),
            etag: hex(&staged.md5()),
            modified_ms: now,
            ..ObjectMeta::default()
        };
        meta.headers.content_type = Some(content_type.to_owned());
        meta.user.insert("surrogate-key".to_owned(), tags.to_owned());
        let sealed = staged.seal(&meta).await?;
        bucket.commit(sealed, &meta).await?;
    }
    Ok(true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
