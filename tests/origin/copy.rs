//! Server-side copies of large objects (issue 22): aws-cli and boto3 copy between buckets with
//! UploadPartCopy, and hostile copy sources and ranges get S3's errors
//! (`tests/smoke/s3_copy_parts.py copy`).

use crate::support::s3::{run_client_script, start};

#[test]
fn aws_cli_and_boto3_copy_large_objects_between_buckets_by_parts() {
    let origin = start(&[]);
    let out = run_client_script(&origin.url, "s3_copy_parts.py", &["copy"], "s3 copy: all checks passed");
    assert!(out.contains("ok: aws s3 cp between buckets copies 10 MiB byte for byte"), "{out}");
    assert!(!origin.proc.stderr().contains("storage failure"), "{}", origin.proc.stderr());
}
