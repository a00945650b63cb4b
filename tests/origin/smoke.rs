//! Runs `tests/smoke/s3_smoke.sh` (aws-cli and boto3, installed from PyPI) against a real
//! origin: buckets (create, list, head, delete-when-empty), objects with odd keys and user
//! metadata, copies, batch deletes, multipart, presigned URLs. Keys like `../../escape.txt`
//! are stored, and nothing is written outside the data directory.

use std::process::Command;

use crate::support::s3::{ACCESS_KEY, SECRET_KEY, files_under, start};

#[test]
fn aws_cli_and_boto3_smoke_test_passes() {
    let origin = start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke/s3_smoke.sh");
    let out = Command::new(script)
        .env("S3_URL", &origin.url)
        .env("STRATUS_ACCESS_KEY", ACCESS_KEY)
        .env("STRATUS_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run the smoke script (needs python3 with boto3 and aws-cli: pip install awscli boto3)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "smoke test failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("s3 smoke: all checks passed"), "{stdout}");

    // Every file the origin wrote is inside its data directory.
    let root = origin.dir.path();
    for f in files_under(root) {
        assert!(
            f.starts_with(&origin.data) || f == root.join("origin.toml"),
            "file outside the data dir: {f:?}"
        );
    }
}
