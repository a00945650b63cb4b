//! Start `stratus edge`: in front of an [`Origin`] with flags, or from an `[edge]` snippet
//! (listener and admin on port 0 added here); purge through its admin API.

use crate::support::http::client;
use crate::support::origin::Origin;
use crate::support::process::{self, Proc};

/// A `stratus edge` in front of `origin` with an admin listener; `extra` args appended.
pub fn edge(origin: &Origin, extra: &[&str]) -> Proc {
    let mut cmd = process::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin.url, "--admin", "127.0.0.1:0"]);
    cmd.args(extra);
    Proc::start(cmd, &["edge http", "edge admin"])
}

/// A `stratus edge` from a config file whose `[edge]` section is `toml` (with `ORIGIN`
/// replaced by the origin's URL); listeners and admin on port 0 are added here.
pub fn edge_with_config(origin: &Origin, toml: &str) -> (Proc, tempfile::TempDir) {
    edge_with_toml(&toml.replace("ORIGIN", &origin.url))
}

/// A `stratus edge` from `[edge]` settings `toml` (sites, dns, ...); one listener on port 0
/// and an admin listener are added here.
pub fn edge_with_toml(toml: &str) -> (Proc, tempfile::TempDir) {
    edge_with_toml_env(toml, &[])
}

/// [`edge_with_toml`] with extra environment variables.
pub fn edge_with_toml_env(toml: &str, env: &[(&str, &str)]) -> (Proc, tempfile::TempDir) {
    let dir = process::tempdir();
    let path = rewrite(&dir, toml);
    let mut cmd = process::stratus();
    cmd.arg("edge").arg("--config").arg(&path);
    cmd.envs(env.iter().copied());
    (Proc::start(cmd, &["edge http", "edge admin"]), dir)
}

/// Writes the edge's config file in `dir` with `toml` as its `[edge]` settings (for a reload).
/// Keys before the first table header in `toml` are keys of `[edge]` itself.
pub fn rewrite(dir: &tempfile::TempDir, toml: &str) -> std::path::PathBuf {
    let first_table = if toml.starts_with('[') { Some(0) } else { toml.find("\n[").map(|i| i + 1) };
    let (top, tables) = toml.split_at(first_table.unwrap_or(toml.len()));
    let text = format!(
        "[edge]\n{top}\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n[edge.admin]\nlisten = \"127.0.0.1:0\"\n{tables}"
    );
    process::write_file(dir.path(), "edge.toml", &text)
}

/// POSTs a purge body to the admin API and returns `purged`.
pub async fn purge(edge: &Proc, body: serde_json::Value) -> u64 {
    let res =
        client().post(format!("{}/purge", edge.url("edge admin"))).json(&body).send().await.expect("purge");
    assert_eq!(res.status(), 200, "purge status");
    let v: serde_json::Value = res.json().await.expect("purge json");
    v["purged"].as_u64().expect("purged count")
}
