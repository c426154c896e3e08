"""S3-compatible object storage for a DuckLake store whose data path is `s3://bucket/prefix`.

Credentials and the endpoint come from the standard AWS variables, read here once for both users of
the bucket: DuckDB's S3 secret (Parquet files) and the boto3 client (model files). A failure of either
becomes one sentence naming the setting to correct, never a traceback.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import StoreError

KEY_ID, SECRET, SESSION_TOKEN = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"
REGION, ENDPOINT = "AWS_REGION", "AWS_ENDPOINT_URL"
DEFAULT_REGION = "us-east-1"


def is_s3(path) -> bool:
    return str(path).startswith("s3://")


def split(url: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes at either end) of `s3://bucket/prefix`."""
    bucket, _, prefix = str(url)[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str
    session_token: str
    region: str
    endpoint: str  # "" for AWS itself; http(s)://host:port for MinIO or another S3-compatible server


def credentials() -> Credentials:
    env = os.environ
    return Credentials(env.get(KEY_ID, ""), env.get(SECRET, ""), env.get(SESSION_TOKEN, ""),
                       env.get(REGION) or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
                       env.get(ENDPOINT, "").rstrip("/"))


def duckdb_secret_options() -> dict[str, str]:
    """The options of DuckDB's S3 secret (CREATE SECRET ... TYPE s3) for the same credentials boto3 uses."""
    c = credentials()
    options = {"KEY_ID": c.key_id, "SECRET": c.secret, "SESSION_TOKEN": c.session_token, "REGION": c.region}
    if c.endpoint:
        # an endpoint of our own (MinIO, a test server) names buckets in the path, not in the host name
        options.update(ENDPOINT=re.sub(r"^https?://", "", c.endpoint), URL_STYLE="path",
                       USE_SSL="false" if c.endpoint.startswith("http://") else "true")
    return {k: v for k, v in options.items() if v}


def client():
    """A boto3 S3 client for the same credentials and endpoint as DuckDB's secret."""
    import boto3  # only a store on s3:// needs it: the embedded default runs without
    from botocore.config import Config

    c = credentials()
    return boto3.client("s3", region_name=c.region, endpoint_url=c.endpoint or None,
                        aws_access_key_id=c.key_id or None, aws_secret_access_key=c.secret or None,
                        aws_session_token=c.session_token or None,
                        config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3},
                                      s3={"addressing_style": "path" if c.endpoint else "auto"}))


def failure(error: BaseException, data_path: str) -> StoreError:
    """One sentence for a failed S3 request (from DuckDB or boto3), naming the setting to correct."""
    text = f"{type(error).__name__}: {error}"
    bucket, _ = split(data_path)
    c = credentials()
    if "NoSuchBucket" in text:
        why = f"its bucket {bucket!r} does not exist: create it, or correct MMS_DATA_PATH"
    elif "InvalidAccessKeyId" in text:
        why = f"S3 does not know the access key in {KEY_ID} ({c.key_id or 'not set'})"
    elif "SignatureDoesNotMatch" in text:
        why = f"S3 refused {SECRET}: it is not the secret of the access key in {KEY_ID}"
    elif "NoCredentialsError" in text or "Unable to locate credentials" in text:
        why = f"no S3 credentials were found: set {KEY_ID} and {SECRET}"
    elif "AccessDenied" in text or "403" in text:
        why = f"S3 denied access with the credentials in {KEY_ID} and {SECRET}"
    elif re.search(r"EndpointConnectionError|Could not connect|Connection refused|Failed to resolve|"
                   r"ConnectTimeout|Could not resolve", text):
        where = c.endpoint or "AWS's S3 endpoint"
        why = f"the S3 endpoint {where} cannot be reached: check {ENDPOINT} and the network"
    else:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        why = f"S3 answered: {first}"
    return StoreError(f"the DuckLake data path {data_path} cannot be used: {why}; nothing was changed")


# --- objects: model files on the bucket ---------------------------------------------------------
_clients: dict[Credentials, object] = {}


def _client():
    c = credentials()
    if c not in _clients:  # boto3 clients are thread-safe and slow to make: one per set of credentials
        _clients[c] = client()
    return _clients[c]


def _key(data_path: str, rel: str) -> tuple[str, str]:
    bucket, prefix = split(data_path)
    return bucket, f"{prefix}/{rel}" if prefix else rel


def _call(data_path: str, request):
    """`request(client)`, with any failure of S3 turned into the sentence `failure` gives."""
    from botocore.exceptions import BotoCoreError, ClientError  # with boto3, only where S3 is used

    try:
        return request(_client())
    except (BotoCoreError, ClientError) as e:
        raise failure(e, data_path) from None


def put(data_path: str, rel: str, data: bytes) -> None:
    """Store `data` at `rel` under the data path; an object appears whole or not at all."""
    bucket, key = _key(data_path, rel)
    _call(data_path, lambda s3: s3.put_object(Bucket=bucket, Key=key, Body=data))


def get(data_path: str, rel: str) -> bytes | None:
    """The object at `rel` under the data path, or None when there is none."""
    from botocore.exceptions import ClientError

    bucket, key = _key(data_path, rel)

    def fetch(s3):
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
    return _call(data_path, fetch)


def listing(data_path: str, under: str) -> list[tuple[str, float]]:
    """(path relative to the data path, last modified as a Unix time) of every object below `under`."""
    bucket, key = _key(data_path, under.rstrip("/") + "/")
    cut = len(key) - len(under.rstrip("/") + "/")

    def pages(s3):
        found = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            found += [(o["Key"][cut:], o["LastModified"].timestamp()) for o in page.get("Contents", [])]
        return found
    return _call(data_path, pages)


def delete(data_path: str, rel: str) -> None:
    bucket, key = _key(data_path, rel)
    _call(data_path, lambda s3: s3.delete_object(Bucket=bucket, Key=key))
