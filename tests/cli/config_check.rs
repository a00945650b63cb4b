//! `stratus config check`: every shipped example is accepted, and broken files are refused with
//! the file, the line and the key in the message.

use crate::support::{self, run_stratus, tempdir, write_file};

#[test]
fn every_example_config_is_accepted_and_printed_with_defaults() {
    let examples: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples"))
        .expect("config/examples exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(examples.len() >= 4, "expected an example per component, found {examples:?}");
    for path in examples {
        let (code, out, err) = run_stratus(&["config", "check", path.to_str().expect("utf-8 path")]);
        assert_eq!(code, 0, "{} was refused: {err}", path.display());
        assert!(out.starts_with('['), "{} printed no configuration: {out}", path.display());
    }
}

#[test]
fn effective_config_fills_defaults_and_masks_the_token_from_the_environment() {
    let dir = tempdir();
    let file = write_file(
        dir.path(),
        "edge.toml",
        "[edge]\nlisteners = [{ listen = \"127.0.0.1:0\" }]\nsites = [{ hosts = [\"*\"], origins = [\"http://127.0.0.1:9\"] }]\n",
    );
    let out = support::stratus()
        .args(["config", "check", file.to_str().expect("utf-8")])
        .env("STRATUS_TOKEN", "hunter2-secret")
        .output()
        .expect("run stratus");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("size = \"256MiB\""), "default cache size missing:\n{text}");
    assert!(text.contains("max_object_size = \"64MiB\""), "default max object size missing:\n{text}");
    assert!(text.contains("token = \"***\""), "token not shown masked:\n{text}");
    assert!(!text.contains("hunter2"), "secret leaked:\n{text}");
}

/// Checks that `stratus config check` refuses `body` with a message starting `FILE:LINE: KEY`.
fn refused(body: &str, line: usize, key: &str, detail: &str) {
    let dir = tempdir();
    let file = write_file(dir.path(), "broken.toml", body);
    let path = file.to_str().expect("utf-8");
    let (code, _, err) = run_stratus(&["config", "check", path]);
    assert_ne!(code, 0, "a broken file was accepted:\n{body}");
    let expected = format!("{path}:{line}: {key}");
    assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
    assert!(err.contains(detail), "expected {detail:?} in:\n{err}");
}

const EDGE: &str = "[edge]\n\
    listeners = [{ listen = \"127.0.0.1:8080\" }]\n\
    \n\
    [[edge.sites]]\n\
    hosts = [\"*\"]\n\
    origins = [\"http://127.0.0.1:9000\"]\n";

#[test]
fn a_bad_url_is_named_with_its_line_and_key() {
    refused(
        &EDGE.replace("http://127.0.0.1:9000", "htp:/x"),
        6,
        "edge.sites[0].origins[0]",
        "invalid URL \"htp:/x\"",
    );
}

#[test]
fn a_bad_size_is_named_with_its_line_and_key() {
    let body = format!("{EDGE}\n[edge.cache]\nsize = \"lots\"\n");
    refused(&body, 9, "edge.cache.size", "invalid size \"lots\"");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let body = format!("{EDGE}origin_timeout = \"5s\"\n");
    refused(&body, 7, "edge.sites[0].origin_timeout", "unknown field `origin_timeout`");
}

#[test]
fn an_https_redirect_without_a_tls_listener_is_refused() {
    let body = format!("{EDGE}https_redirect = true\n");
    refused(&body, 7, "edge.sites[0].https_redirect", "needs a listener with tls = true");
}

#[test]
fn a_toml_syntax_error_gives_the_line() {
    let dir = tempdir();
    let file = write_file(dir.path(), "syntax.toml", "[edge]\nid = \"a\"\nlisteners = [\n");
    let path = file.to_str().expect("utf-8");
    let (code, _, err) = run_stratus(&["config", "check", path]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{path}:3: TOML syntax")), "{err}");
}

#[test]
fn a_rule_across_fields_is_located_too() {
    let body = format!("{EDGE}\n[edge.cache]\nsize = \"1MiB\"\nmax_object_size = \"8MiB\"\n");
    refused(&body, 10, "edge.cache.max_object_size", "must not exceed cache.size");
}

#[test]
fn a_missing_file_says_so() {
    let (code, _, err) = run_stratus(&["config", "check", "/nonexistent/stratus.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/stratus.toml: cannot read"), "{err}");
}

#[test]
fn help_lists_every_subcommand() {
    let (code, out, _) = run_stratus(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["edge", "origin", "control", "loadtest", "purge", "up", "config"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(sub)), "`{sub}` missing from --help:\n{out}");
    }
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let (code, _, err) = run_stratus(&["edge", "--listen", "127.0.0.1:0", "--origin", "ftp://x"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid URL \"ftp://x\""), "{err}");
    let (code, _, err) = run_stratus(&["edge", "--listen", "127.0.0.1:0"]);
    assert_ne!(code, 0);
    assert!(err.contains("needs --listen and --origin"), "{err}");
}
