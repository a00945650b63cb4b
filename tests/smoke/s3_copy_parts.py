#!/usr/bin/env python3
"""Server-side copies and part reads against a Stratus origin, with real S3 clients (issue 22).

    S3_URL=http://127.0.0.1:9000 STRATUS_ACCESS_KEY=… STRATUS_SECRET_KEY=… s3_copy_parts.py copy|compose|parts

copy:  `aws s3 cp s3://… s3://…` of a 10 MiB object (aws-cli copies with UploadPartCopy from
       8 MiB), boto3 `copy()` and `upload_part_copy` with CopySourceRange, all checked byte for
       byte, and the S3 errors for bad copy sources, ranges and part numbers.
compose: minio's `compose_object` (UploadPartCopy with ranges and source ETags; pip install minio).
parts: GET and HEAD with PartNumber on a multipart object (Content-Range, PartsCount, the
       object's ETag) and HEAD with Range.
Exits non-zero on the first mismatch; uses fresh buckets.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["S3_URL"].rstrip("/")
AK = os.environ["STRATUS_ACCESS_KEY"]
SK = os.environ["STRATUS_SECRET_KEY"]
MIB = 1024 * 1024

s3 = boto3.client("s3", endpoint_url=URL, aws_access_key_id=AK, aws_secret_access_key=SK, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def aws(*args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_PROFILE", None)
    out = subprocess.run(["aws", "--endpoint-url", URL, *args], env=env, capture_output=True, check=False)
    if out.returncode != 0:
        print(out.stderr.decode(errors="replace"), file=sys.stderr)
        check(False, f"aws {' '.join(args)} exits 0")
    return out.stdout


def bucket(prefix):
    name = prefix + "-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=name)
    return name


def body(b, k):
    return s3.get_object(Bucket=b, Key=k)["Body"].read()


def multipart_etag(parts):
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(), len(parts))


def copy():
    src, dst = bucket("src"), bucket("dst")
    data = os.urandom(10 * MIB + 5)
    s3.put_object(Bucket=src, Key="files/10MiB.bin", Body=data, ContentType="application/x-demo",
                  Metadata={"owner": "copy"})

    # aws-cli: from 8 MiB on, a copy between buckets is CreateMultipartUpload + UploadPartCopy.
    aws("s3", "cp", f"s3://{src}/files/10MiB.bin", f"s3://{dst}/copied/10MiB.bin")
    got = s3.get_object(Bucket=dst, Key="copied/10MiB.bin")
    check(got["Body"].read() == data, "aws s3 cp between buckets copies 10 MiB byte for byte")
    check(got["ETag"] == multipart_etag([data[:8 * MIB], data[8 * MIB:]]), "and did it in 8 MiB parts")
    with tempfile.TemporaryDirectory() as tmp:
        back = os.path.join(tmp, "back.bin")
        aws("s3", "cp", f"s3://{dst}/copied/10MiB.bin", back)
        check(open(back, "rb").read() == data, "aws s3 cp downloads the copy whole")

    # boto3's managed copy() uses UploadPartCopy above its 8 MiB threshold too.
    s3.copy({"Bucket": src, "Key": "files/10MiB.bin"}, dst, "boto3/copy.bin")
    got = s3.get_object(Bucket=dst, Key="boto3/copy.bin")
    check(got["Body"].read() == data and got["ETag"].endswith('-2"'), "boto3 copy() copies by parts, byte for byte")

    # upload_part_copy with CopySourceRange: the second half first, then the first, from two keys.
    other = os.urandom(6 * MIB)
    s3.put_object(Bucket=src, Key="other.bin", Body=other)
    mpu = s3.create_multipart_upload(Bucket=dst, Key="composed.bin", ContentType="application/x-composed")
    uid = mpu["UploadId"]
    p2 = s3.upload_part_copy(Bucket=dst, Key="composed.bin", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": src, "Key": "other.bin"}, CopySourceRange="bytes=100-1099")
    p1 = s3.upload_part_copy(Bucket=dst, Key="composed.bin", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": src, "Key": "files/10MiB.bin"},
                             CopySourceRange=f"bytes={MIB}-{7 * MIB - 1}")
    want1, want2 = data[MIB:7 * MIB], other[100:1100]
    check(p1["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(want1).hexdigest(), "a copied part's ETag is its MD5")
    parts = s3.list_parts(Bucket=dst, Key="composed.bin", UploadId=uid)["Parts"]
    check([(p["PartNumber"], p["Size"]) for p in parts] == [(1, 6 * MIB), (2, 1000)], "ListParts shows the copied parts")
    # Copy sources and ranges clients get wrong.
    part = dict(Bucket=dst, Key="composed.bin", UploadId=uid, PartNumber=3)
    for rng, what in [("bytes=-5", "a suffix range"), ("bytes=5-", "an open range"), ("bytes=9-5", "a reversed range"),
                      ("bytes=0-1,4-5", "two ranges"), ("0-5", "a range without a unit")]:
        check(error(s3.upload_part_copy, CopySource={"Bucket": src, "Key": "other.bin"}, CopySourceRange=rng, **part)
              == ("InvalidArgument", 400), f"{what} is InvalidArgument")
    check(error(s3.upload_part_copy, CopySource={"Bucket": src, "Key": "other.bin"},
                CopySourceRange=f"bytes=0-{6 * MIB}", **part) == ("InvalidArgument", 400),
          "a range past the source's end is InvalidArgument")
    check(error(s3.upload_part_copy, CopySource={"Bucket": src, "Key": "missing.bin"}, **part) == ("NoSuchKey", 404),
          "a missing source key is NoSuchKey")
    check(error(s3.upload_part_copy, CopySource={"Bucket": "no-such-bucket-x", "Key": "k"}, **part)[0] == "NoSuchBucket",
          "a missing source bucket is NoSuchBucket")
    check(error(s3.upload_part_copy, CopySource=f"{src}/other.bin?versionId=abc", **part) == ("InvalidArgument", 400),
          "a source version the origin does not have is InvalidArgument")
    check(error(s3.upload_part_copy, CopySource={"Bucket": src, "Key": "other.bin"},
                CopySourceIfMatch='"not-the-etag"', **part) == ("PreconditionFailed", 412),
          "a failed x-amz-copy-source-if-match is PreconditionFailed")
    check(error(s3.upload_part_copy, CopySource={"Bucket": src, "Key": "other.bin"},
                **dict(part, UploadId="0" * 32)) == ("NoSuchUpload", 404), "an unknown upload is NoSuchUpload")
    check(error(s3.upload_part_copy, CopySource={"Bucket": src, "Key": "other.bin"},
                **dict(part, PartNumber=10001))[0] == "InvalidArgument", "part number 10001 is InvalidArgument")
    check(error(s3.complete_multipart_upload, Bucket=dst, Key="composed.bin", UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                                           {"PartNumber": 2, "ETag": '"0123456789abcdef0123456789abcdef"'}]})
          == ("InvalidPart", 400), "completing with another part's ETag is InvalidPart")
    done = s3.complete_multipart_upload(Bucket=dst, Key="composed.bin", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    got = s3.get_object(Bucket=dst, Key="composed.bin")
    check(got["Body"].read() == want1 + want2, "upload_part_copy with CopySourceRange composes the right bytes")
    check(done["ETag"] == multipart_etag([want1, want2]) and got["ContentType"] == "application/x-composed",
          "the composed object has a multipart ETag and the upload's headers")


def compose():
    # minio's compose_object: HEAD each source, then UploadPartCopy with x-amz-copy-source-range
    # and x-amz-copy-source-if-match for every range (imported here: only this check needs it).
    from urllib.parse import urlparse

    from minio import Minio
    from minio.commonconfig import ComposeSource

    src, dst = bucket("msrc"), bucket("mdst")
    a, b = os.urandom(10 * MIB + 3), os.urandom(6 * MIB)
    s3.put_object(Bucket=src, Key="a.bin", Body=a)
    s3.put_object(Bucket=src, Key="b.bin", Body=b)
    mc = Minio(urlparse(URL).netloc, access_key=AK, secret_key=SK, secure=False, region="us-east-1")
    mc.compose_object(dst, "joined.bin", [ComposeSource(src, "a.bin", offset=MIB, length=6 * MIB),
                                          ComposeSource(src, "b.bin")])
    check(body(dst, "joined.bin") == a[MIB:7 * MIB] + b, "minio compose_object joins ranges of two objects")
    mc.compose_object(dst, "whole.bin", [ComposeSource(src, "a.bin"), ComposeSource(src, "b.bin", offset=5, length=10)])
    check(body(dst, "whole.bin") == a + b[5:15], "minio compose_object with a short last range")


def parts():
    b = bucket("parts")
    chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB), b"the short last part"]
    mpu = s3.create_multipart_upload(Bucket=b, Key="mp.bin")
    done = s3.complete_multipart_upload(Bucket=b, Key="mp.bin", UploadId=mpu["UploadId"], MultipartUpload={"Parts": [
        {"PartNumber": n, "ETag": s3.upload_part(Bucket=b, Key="mp.bin", UploadId=mpu["UploadId"], PartNumber=n,
                                                  Body=c)["ETag"]} for n, c in enumerate(chunks, start=1)]})
    size = sum(len(c) for c in chunks)
    whole = s3.get_object(Bucket=b, Key="mp.bin")
    check("PartsCount" not in whole and whole["ResponseMetadata"]["HTTPStatusCode"] == 200,
          "a whole multipart object comes without PartsCount")
    start = 0
    for n, c in enumerate(chunks, start=1):
        got = s3.get_object(Bucket=b, Key="mp.bin", PartNumber=n)
        meta = got["ResponseMetadata"]
        check(meta["HTTPStatusCode"] == 206 and got["Body"].read() == c, f"GET part {n} is a 206 with that part's bytes")
        check(got["ContentRange"] == f"bytes {start}-{start + len(c) - 1}/{size}" and got["ContentLength"] == len(c),
              f"GET part {n} names its range")
        check(got["PartsCount"] == 3 and got["ETag"] == done["ETag"], f"GET part {n} has PartsCount and the object's ETag")
        head = s3.head_object(Bucket=b, Key="mp.bin", PartNumber=n)
        check(head["ResponseMetadata"]["HTTPStatusCode"] == 206 and head["ContentLength"] == len(c)
              and head["PartsCount"] == 3 and head["ETag"] == done["ETag"], f"HEAD part {n} answers as GET would")
        start += len(c)
    check(error(s3.get_object, Bucket=b, Key="mp.bin", PartNumber=4) == ("InvalidPartNumber", 416),
          "a part past the last is 416 InvalidPartNumber")
    check(error(s3.head_object, Bucket=b, Key="mp.bin", PartNumber=4)[1] == 416, "HEAD of a part past the last is 416")
    check(error(s3.get_object, Bucket=b, Key="mp.bin", PartNumber=0)[0] == "InvalidArgument", "part 0 is InvalidArgument")
    check(error(s3.get_object, Bucket=b, Key="mp.bin", PartNumber=1, Range="bytes=0-1")[0] == "InvalidRequest",
          "a part and a range together is InvalidRequest")
    check(error(s3.get_object, Bucket=b, Key="missing", PartNumber=1) == ("NoSuchKey", 404), "a missing key is NoSuchKey")

    s3.put_object(Bucket=b, Key="single.bin", Body=b"0123456789")
    got = s3.get_object(Bucket=b, Key="single.bin", PartNumber=1)
    check(got["ResponseMetadata"]["HTTPStatusCode"] == 206 and got["ContentRange"] == "bytes 0-9/10"
          and "PartsCount" not in got and got["Body"].read() == b"0123456789",
          "part 1 of a plain object is the whole object as a 206, without PartsCount")
    check(error(s3.get_object, Bucket=b, Key="single.bin", PartNumber=2)[0] == "InvalidPartNumber",
          "part 2 of a plain object is InvalidPartNumber")

    head = s3.head_object(Bucket=b, Key="single.bin", Range="bytes=2-5")
    check(head["ResponseMetadata"]["HTTPStatusCode"] == 206 and head["ContentLength"] == 4
          and head["ContentRange"] == "bytes 2-5/10", "HEAD with Range is a 206 naming the range")
    check(error(s3.head_object, Bucket=b, Key="single.bin", Range="bytes=10-")[1] == 416,
          "HEAD with an unsatisfiable Range is 416")


{"copy": copy, "compose": compose, "parts": parts}[sys.argv[1]]()
print(f"s3 {sys.argv[1]}: all checks passed")
