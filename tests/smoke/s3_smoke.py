#!/usr/bin/env python3
"""Smoke test of a Stratus origin with real S3 clients: boto3 and aws-cli.

Environment: S3_URL (e.g. http://127.0.0.1:9000), STRATUS_ACCESS_KEY, STRATUS_SECRET_KEY.
Exits non-zero on the first mismatch. Uses a fresh bucket and deletes it at the end.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from urllib.parse import unquote
from xml.etree import ElementTree

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.handlers import set_list_objects_encoding_type_url

URL = os.environ["S3_URL"].rstrip("/")
AK = os.environ["STRATUS_ACCESS_KEY"]
SK = os.environ["STRATUS_SECRET_KEY"]
BUCKET = "smoke-" + uuid.uuid4().hex[:12]

s3 = boto3.client(
    "s3",
    endpoint_url=URL,
    aws_access_key_id=AK,
    aws_secret_access_key=SK,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def error_code(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def aws(*args, input=None):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_PROFILE", None)
    out = subprocess.run(["aws", "--endpoint-url", URL, *args], env=env, input=input,
                         capture_output=True, check=False)
    if out.returncode != 0:
        print(out.stderr.decode(errors="replace"), file=sys.stderr)
        check(False, f"aws {' '.join(args)} exits 0")
    return out.stdout


# Buckets.
s3.create_bucket(Bucket=BUCKET)
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
check(BUCKET in names, "ListBuckets shows the new bucket")
check(error_code(s3.create_bucket, Bucket=BUCKET)[0] == "BucketAlreadyOwnedByYou", "CreateBucket twice is refused")
s3.head_bucket(Bucket=BUCKET)

# Put / get / head with metadata and odd keys.
keys = ["plain.txt", "dir/with space.txt", "plus+and%percent", "unicode/ünï©ødé ✓", "deep/" + "k" * 900,
        # Keys that look like paths out of the data directory are just keys.
        "../../escape.txt", "/abs.txt", "%2e%2e/%2e%2e/x", "a/./b", ".."]
for k in keys:
    body = ("body of " + k).encode()
    put = s3.put_object(Bucket=BUCKET, Key=k, Body=body, ContentType="text/plain",
                        CacheControl="max-age=60", Metadata={"owner": "smoke"})
    check(put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), f"PutObject ETag is the MD5 ({k[:30]!r})")
    got = s3.get_object(Bucket=BUCKET, Key=k)
    check(got["Body"].read() == body, f"GetObject returns the body ({k[:30]!r})")
    check(got["ContentType"] == "text/plain" and got["CacheControl"] == "max-age=60", "headers round-trip")
    check(got["Metadata"] == {"owner": "smoke"}, "user metadata round-trips")
listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
check(listed == sorted(keys), "ListObjectsV2 returns every key, sorted and decoded")

# Keys with control characters (issue 16.11). boto3 sends encoding-type=url and decodes; a raw
# listing without it is answered URL-encoded (<EncodingType>url</EncodingType>) because XML 1.0
# cannot carry these characters, and parses with expat, a strict XML parser.
ctl_keys = sorted(["ctl/bell\x07", "ctl/cr\r\nlf", "ctl/esc\x1b[31m", "ctl/tab\tnl\n", "ctl/unit\x1f",
                   "ctl/dir\x01/inner", "ctl/plain"])
for k in ctl_keys:
    s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
check([o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="ctl/")["Contents"]] == ctl_keys,
      "ListObjectsV2 round-trips keys with control characters")
check([o["Key"] for o in s3.list_objects(Bucket=BUCKET, Prefix="ctl/")["Contents"]] == ctl_keys,
      "ListObjects v1 round-trips keys with control characters")
pages = s3.get_paginator("list_objects").paginate(Bucket=BUCKET, Prefix="ctl/", PaginationConfig={"PageSize": 2})
check([o["Key"] for p in pages for o in p["Contents"]] == ctl_keys, "v1 markers with control characters resume")
tree = s3.list_objects_v2(Bucket=BUCKET, Prefix="ctl/dir", Delimiter="/")
check([p["Prefix"] for p in tree["CommonPrefixes"]] == ["ctl/dir\x01/"], "a common prefix with a control character")
for k in ctl_keys:
    check(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() == k.encode(), f"GetObject {k!r}")
raw = boto3.client("s3", endpoint_url=URL, aws_access_key_id=AK, aws_secret_access_key=SK, region_name="us-east-1",
                   config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, signature_version="s3v4"))
raw.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", set_list_objects_encoding_type_url)
listing = raw.generate_presigned_url("list_objects_v2", Params={"Bucket": BUCKET, "Prefix": "ctl/"}, ExpiresIn=60)
check("encoding-type" not in listing, "the raw listing does not ask for encoding-type")
with urllib.request.urlopen(listing) as r:
    doc = ElementTree.fromstring(r.read())
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
check(doc.findtext(ns + "EncodingType") == "url", "a listing XML cannot carry verbatim says EncodingType url")
check([unquote(k.text) for k in doc.iter(ns + "Key")] == ctl_keys, "and its keys decode to the stored ones")
out = json.loads(aws("s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", "ctl/", "--output", "json"))
check([o["Key"] for o in out["Contents"]] == ctl_keys, "aws s3api list-objects-v2 round-trips them")
# One by one: DeleteObjects' XML would carry them verbatim, in the request and in the answer.
for k in ctl_keys:
    s3.delete_object(Bucket=BUCKET, Key=k)

# Corrupted uploads are refused and store nothing.
check(error_code(s3.put_object, Bucket=BUCKET, Key="bad-crc", Body=b"data", ChecksumCRC32="AAAAAA==")[0]
      == "BadDigest", "a wrong CRC32 is BadDigest")
check(error_code(s3.put_object, Bucket=BUCKET, Key="bad-crc", Body=b"data",
                 ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")[0] == "BadDigest", "a wrong Content-MD5 is BadDigest")
check(error_code(s3.head_object, Bucket=BUCKET, Key="bad-crc")[1] == 404, "a refused upload stores nothing")
# CRC32C and CRC64NVME need botocore[crt], which CI does not install.
for algo in ["CRC32", "SHA1", "SHA256"]:
    s3.put_object(Bucket=BUCKET, Key="sum-" + algo, Body=b"checked", ChecksumAlgorithm=algo)
    check(s3.get_object(Bucket=BUCKET, Key="sum-" + algo)["Body"].read() == b"checked", f"{algo} upload verified")

# Range and conditional GET.
got = s3.get_object(Bucket=BUCKET, Key="plain.txt", Range="bytes=0-3")
check(got["Body"].read() == b"body" and got["ResponseMetadata"]["HTTPStatusCode"] == 206, "Range GET is a 206")
etag = s3.head_object(Bucket=BUCKET, Key="plain.txt")["ETag"]
check(error_code(s3.get_object, Bucket=BUCKET, Key="plain.txt", IfNoneMatch=etag)[1] == 304, "If-None-Match gives 304")
check(error_code(s3.get_object, Bucket=BUCKET, Key="plain.txt", IfMatch='"nope"')[1] == 412, "If-Match mismatch gives 412")
check(error_code(s3.get_object, Bucket=BUCKET, Key="missing")[0] == "NoSuchKey", "missing key is NoSuchKey")

# Copy, with metadata kept and replaced.
s3.copy_object(Bucket=BUCKET, Key="copy.txt", CopySource={"Bucket": BUCKET, "Key": "plain.txt"})
got = s3.get_object(Bucket=BUCKET, Key="copy.txt")
check(got["Body"].read() == b"body of plain.txt" and got["Metadata"] == {"owner": "smoke"}, "CopyObject keeps metadata")
s3.copy_object(Bucket=BUCKET, Key="copy.txt", CopySource={"Bucket": BUCKET, "Key": "plain.txt"},
               MetadataDirective="REPLACE", Metadata={"owner": "other"}, ContentType="text/x-other")
head = s3.head_object(Bucket=BUCKET, Key="copy.txt")
check(head["Metadata"] == {"owner": "other"} and head["ContentType"] == "text/x-other", "CopyObject REPLACE")

# Multipart with boto3: two 5 MiB parts and a short last part.
parts_data = [os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024), b"tail"]
mpu = s3.create_multipart_upload(Bucket=BUCKET, Key="big.bin", ContentType="application/x-big")
parts = []
for n, data in enumerate(parts_data, start=1):
    r = s3.upload_part(Bucket=BUCKET, Key="big.bin", UploadId=mpu["UploadId"], PartNumber=n, Body=data)
    parts.append({"PartNumber": n, "ETag": r["ETag"]})
listed_parts = s3.list_parts(Bucket=BUCKET, Key="big.bin", UploadId=mpu["UploadId"])["Parts"]
check([p["PartNumber"] for p in listed_parts] == [1, 2, 3], "ListParts lists the parts")
done = s3.complete_multipart_upload(Bucket=BUCKET, Key="big.bin", UploadId=mpu["UploadId"],
                                    MultipartUpload={"Parts": parts})
want = hashlib.md5(b"".join(hashlib.md5(d).digest() for d in parts_data)).hexdigest() + "-3"
check(done["ETag"] == '"%s"' % want, "multipart ETag is md5-of-part-md5s-N")
got = s3.get_object(Bucket=BUCKET, Key="big.bin")
check(got["Body"].read() == b"".join(parts_data) and got["ContentType"] == "application/x-big", "multipart body")
mpu = s3.create_multipart_upload(Bucket=BUCKET, Key="aborted.bin")
other = s3.create_multipart_upload(Bucket=BUCKET, Key="tmp/other.bin")
pending = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
check([(u["Key"], u["UploadId"]) for u in pending] == [("aborted.bin", mpu["UploadId"]), ("tmp/other.bin", other["UploadId"])],
      "ListMultipartUploads shows uploads in progress")
check([u["Key"] for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix="tmp/")["Uploads"]] == ["tmp/other.bin"],
      "ListMultipartUploads filters by prefix")
s3.abort_multipart_upload(Bucket=BUCKET, Key="tmp/other.bin", UploadId=other["UploadId"])
s3.abort_multipart_upload(Bucket=BUCKET, Key="aborted.bin", UploadId=mpu["UploadId"])
check(not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"), "aborted uploads are no longer listed")
check(error_code(s3.list_parts, Bucket=BUCKET, Key="aborted.bin", UploadId=mpu["UploadId"])[0] == "NoSuchUpload",
      "an aborted upload is gone")

# Presigned URL with a plain HTTP client.
url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "plain.txt"}, ExpiresIn=60)
with urllib.request.urlopen(url) as r:
    check(r.read() == b"body of plain.txt", "presigned GET works")
try:
    urllib.request.urlopen(url.replace("Signature=", "Signature=0"))
    check(False, "a tampered presigned URL is refused")
except urllib.error.HTTPError as e:
    check(e.code == 403, "a tampered presigned URL is refused with 403")

# A presigned URL may be valid for at most a week, as SigV4 URLs on S3 (issue 16.11); boto3
# presigns with SigV2 unless told otherwise, and the origin holds those to the same week.
s3v4 = boto3.client("s3", endpoint_url=URL, aws_access_key_id=AK, aws_secret_access_key=SK, region_name="us-east-1",
                    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, signature_version="s3v4"))
for client, version in [(s3, "SigV2"), (s3v4, "SigV4")]:
    week = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "plain.txt"}, ExpiresIn=604800)
    with urllib.request.urlopen(week) as r:
        check(r.read() == b"body of plain.txt", f"a {version} presigned URL valid for a week works")
    too_long = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "plain.txt"},
                                             ExpiresIn=604801)
    try:
        urllib.request.urlopen(too_long)
        check(False, f"a {version} presigned URL valid for more than a week is refused")
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        check(e.code == 400 and "AuthorizationQueryParametersError" in body and "604800 seconds" in body,
              f"a {version} presigned URL valid for more than a week is a 400 AuthorizationQueryParametersError")

# Unsigned writes are refused.
req = urllib.request.Request(f"{URL}/{BUCKET}/anon.txt", data=b"x", method="PUT")
try:
    urllib.request.urlopen(req)
    check(False, "anonymous PUT is refused")
except urllib.error.HTTPError as e:
    check(e.code == 403, "anonymous PUT is refused with 403")

# aws-cli: high-level cp (multipart above its 8 MiB threshold), ls, rm.
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "cli.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(9 * 1024 * 1024 + 7))
    aws("s3", "cp", src, f"s3://{BUCKET}/cli/with space.bin")
    back = os.path.join(tmp, "back.bin")
    aws("s3", "cp", f"s3://{BUCKET}/cli/with space.bin", back)
    check(open(src, "rb").read() == open(back, "rb").read(), "aws s3 cp round-trips a multipart upload")
    out = aws("s3", "ls", f"s3://{BUCKET}/cli/").decode()
    check("with space.bin" in out, "aws s3 ls shows the key")
    aws("s3", "rm", f"s3://{BUCKET}/cli/with space.bin")

# Batch delete, then an empty bucket can be deleted.
check(error_code(s3.delete_bucket, Bucket=BUCKET)[0] == "BucketNotEmpty", "DeleteBucket refuses a non-empty bucket")
everything = [{"Key": o["Key"]} for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
res = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": everything})
check(len(res.get("Deleted", [])) == len(everything) and not res.get("Errors"), "DeleteObjects deletes every key")
check(s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0, "the bucket is empty")
s3.delete_bucket(Bucket=BUCKET)
check(error_code(s3.head_bucket, Bucket=BUCKET)[1] == 404, "a deleted bucket is gone")
print("s3 smoke: all checks passed")
