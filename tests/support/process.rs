//! The process runner: spawn the real `stratus` binary, learn the addresses it bound from its
//! `listening COMPONENT ROLE URL` lines within a deadline, kill it when the test ends and print
//! its stderr if the test failed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process may take to print its listening lines.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running `stratus` process; killed (SIGKILL) on drop, its stderr printed if the test failed.
pub struct Proc {
    child: Option<Child>,
    /// Listening URLs by `"COMPONENT ROLE"`, e.g. `"edge http"` → `http://127.0.0.1:41234`.
    pub urls: HashMap<String, String>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    name: String,
}

/// A `Command` for the built `stratus` binary with quiet, plain logs.
pub fn stratus() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stratus"));
    cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    cmd.env_remove("STRATUS_TOKEN").env_remove("STRATUS_ACCESS_KEY").env_remove("STRATUS_SECRET_KEY");
    cmd.env_remove("STRATUS_ORIGIN_ACCESS_KEY").env_remove("STRATUS_ORIGIN_SECRET_KEY");
    cmd.env_remove("STRATUS_METRICS_TOKEN").env_remove("STRATUS_CONTROL");
    cmd
}

impl Proc {
    /// Spawns `cmd` and waits until it printed `listening` lines for every role in `roles`
    /// (e.g. `["edge http", "edge admin"]`).
    pub fn start(mut cmd: Command, roles: &[&str]) -> Proc {
        let name = format!("{cmd:?}");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("output buffer").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out_pipe = child.stdout.take().expect("piped stdout");
        let out_sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                out_sink.lock().expect("output buffer").push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut proc = Proc { child: Some(child), urls: HashMap::new(), stderr, stdout, name };
        let deadline = Instant::now() + START_DEADLINE;
        while !roles.iter().all(|r| proc.urls.contains_key(*r)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    if let ["listening", component, role, url] = parts[..] {
                        proc.urls.insert(format!("{component} {role}"), url.to_owned());
                    }
                }
                Err(_) => panic!(
                    "{} did not report {roles:?} within {START_DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                    proc.name,
                    proc.stdout(),
                    proc.stderr()
                ),
            }
        }
        proc
    }

    /// The URL bound for `role` (e.g. `"edge http"`), without a trailing slash.
    pub fn url(&self, role: &str) -> String {
        self.urls.get(role).unwrap_or_else(|| panic!("no {role} listener")).trim_end_matches('/').to_owned()
    }

    /// The `host:port` bound for `role`.
    pub fn addr(&self, role: &str) -> String {
        let url = self.url(role);
        url.split("://").nth(1).unwrap_or(&url).to_owned()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("output buffer").clone()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("output buffer").clone()
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, `"TERM"`, `"KILL"`, `"HUP"`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// Waits up to `limit` for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
    }
}

/// A fresh temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Runs `stratus ARGS` to completion and returns (exit code, stdout, stderr).
pub fn run_stratus(args: &[&str]) -> (i32, String, String) {
    let out = stratus().args(args).stdin(Stdio::null()).output().expect("run stratus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
