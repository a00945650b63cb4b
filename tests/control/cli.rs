//! `stratus purge` without `--wait`: it prints each edge's state right after the purge was
//! accepted and exits non-zero only when an edge is `failed` (down since before the purge).
//! The `--wait` form is covered in `tests/control_api.rs`.

use std::time::Duration;

use crate::support::control::{Api, TOKEN, follower, start_control, stratus_purge};
use crate::support::{self, until};

/// Runs `stratus purge --control BASE --tag t` and returns (exit code, stdout, stderr).
async fn purge(base: &str) -> (Option<i32>, String, String) {
    stratus_purge(base, &["--tag", "t"], TOKEN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_without_wait_prints_each_edge_and_fails_only_for_a_failed_edge() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let _a = follower(&api, "a").await;
    let (code, out, err) = purge(&api.base).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("purge p-1 accepted"), "{out}");
    assert!(out.contains("edge a  pending") || out.contains("edge a  applied"), "{out}");

    // An edge that went silent before the purge is `failed`: the command says so and fails.
    let dir = support::tempdir();
    let control = start_control(dir.path(), "edge_timeout = \"200ms\"");
    let api = Api::new(&control);
    api.register("gone").await;
    until("the silent edge counts as down", Duration::from_secs(20), || async {
        let (_, list) = api.get("/v1/edges").await;
        (list["edges"][0]["live"] == false).then_some(())
    })
    .await;
    let (code, out, err) = purge(&api.base).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("edge gone  failed"), "{out}");
    assert!(out.contains("1 edge(s) failed"), "{out}");
}
