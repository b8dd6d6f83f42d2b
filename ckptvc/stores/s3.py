"""A store in an S3 bucket (AWS S3, or any S3-compatible server through endpoint_url).

URL: ``s3://BUCKET/PREFIX``. A store key ``objects/ab/cdef...`` lives at the S3 key
``PREFIX/objects/ab/cdef...`` (no prefix: at the bucket root). Docs: docs/s3.md.

Guarantees, as for the local store:

- A value is whole or absent. A single PUT is atomic in S3; values over
  MULTIPART_THRESHOLD go through a multipart upload that becomes visible only when
  completed, and is aborted on any failure.
- Every upload carries an ``x-amz-checksum-sha256`` of the bytes (per part for
  multipart uploads): a server that checks it refuses corrupted bytes, and the
  upload is sent again a few times before failing.
- ``write`` is a conditional create (``If-None-Match: *``): two writers racing for
  one key see exactly one True. Servers that reject the header (501
  NotImplemented) get HEAD-then-PUT, which has a race window (docs/s3.md).
- Reads of large values are ranged GETs in parallel, pinned to the ETag of the
  first response (``If-Match``), so a concurrent ``replace`` never mixes two
  encodings: the read starts over instead.

Credentials come only from the standard AWS chain (environment, shared config and
credentials files with an optional profile, container or instance role): nothing
secret is ever read from or written to ckptvc's own files.

Thread safety: one S3Store is used from many threads at once. The boto3 client is
thread-safe and created once (sessions are not thread-safe, so the session only
lives inside client creation, under a lock).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any
from urllib.parse import urlparse

from ckptvc.errors import ConfigError, RemoteError, UserInputError
from ckptvc.stores.base import Store
from ckptvc.stores.s3_direct import DirectGet

log = logging.getLogger(__name__)

MiB = 1 << 20
READ_PART = 8 * MiB  # values larger than this are read as parallel ranged GETs of this size
MULTIPART_THRESHOLD = 16 * MiB  # values larger than this are uploaded in parts
PART_SIZE = 8 * MiB  # multipart part size (grown for huge values: S3 allows 10,000 parts)
MAX_PARTS = 10_000
MAX_ATTEMPTS = 8  # botocore attempts per request (standard retry mode)
STREAM_ATTEMPTS = 5  # GETs whose body breaks off mid-stream are issued again this often
DIGEST_ATTEMPTS = 3  # uploads refused for a bad checksum (bytes damaged in transit) are resent
READ_RESTARTS = 4  # a read whose object was replaced between its ranges starts over
LIST_MIN_PAGE = 100  # the smallest LIST page asked for when deciding which keys exist
HEAD_MANY_MAX = 8  # exists_many/sizes of at most this many keys: a HEAD each, in parallel
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_DIGEST_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"}


class _Changed(Exception):
    """The object changed between two ranged reads of one `read`."""


class _NoConditional(Exception):
    """The server does not support conditional writes (If-None-Match)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """("bucket", "prefix") of ``s3://bucket/prefix``; the prefix has no leading or
    trailing slash and may be empty."""
    parsed = urlparse(url)
    if parsed.scheme != "s3":
        raise UserInputError(f"remote URL {url!r}: not an s3:// URL")
    if parsed.query or parsed.fragment or parsed.params or "@" in parsed.netloc or ":" in parsed.netloc:
        raise UserInputError(f"remote URL {url!r}: use s3://BUCKET/PREFIX (no credentials, port, query or "
                             "fragment; set endpoint_url for another server)")
    bucket = parsed.netloc
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise UserInputError(f"remote URL {url!r}: invalid bucket name {bucket!r}")
    prefix = parsed.path.strip("/")
    if prefix:
        parts = prefix.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\\" in prefix or any(ord(c) < 32 for c in prefix):
            raise UserInputError(f"remote URL {url!r}: invalid prefix {prefix!r}")
    return bucket, prefix


def _stretches(keys: list[str], n: int) -> list[list[str]]:
    """Sorted keys cut into at most n contiguous, non-empty stretches of near-equal size."""
    n = max(1, min(n, len(keys)))
    step, extra = divmod(len(keys), n)
    out, start = [], 0
    for i in range(n):
        end = start + step + (i < extra)
        out.append(keys[start:end])
        start = end
    return out


def _check_key(key: str) -> None:
    if (not isinstance(key, str) or not key or key.startswith("/") or "\\" in key
            or any(p in ("", ".", "..") for p in key.split("/")) or any(ord(c) < 32 for c in key)):
        raise UserInputError(f"invalid store key {key!r}")


def _as_bytes(data: Any) -> bytes:
    """A value to write as one bytes object: bytes (not copied), a bytes-like object,
    or a list of buffers meant to be written one after the other."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, list | tuple):
        return b"".join(data)
    return bytes(data)


def _sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _status(exc: Exception) -> int | None:
    resp = getattr(exc, "response", None) or {}
    return resp.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _code(exc: Exception) -> str:
    resp = getattr(exc, "response", None) or {}
    return str(resp.get("Error", {}).get("Code") or "")


def _retried(exc: Exception) -> bool:
    """Whether botocore sent this request more than once (an earlier attempt may have
    reached the server even though its response was lost)."""
    resp = getattr(exc, "response", None) or {}
    return int(resp.get("ResponseMetadata", {}).get("RetryAttempts") or 0) > 0


class S3Store(Store):
    # Instance-overridable sizes (tests shrink them to exercise paging and parts).
    list_page = 1000
    read_part = READ_PART
    multipart_threshold = MULTIPART_THRESHOLD
    part_size = PART_SIZE

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None, jobs: int | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.profile = profile or None
        # The remote's `jobs` option: how many transfers to run at once against it
        # (None: the caller decides). Sizes the connection pool either way.
        self.jobs = jobs if jobs and jobs > 0 else None
        self._callers = self.jobs or max(4 * (os.cpu_count() or 1), 16)
        self._part_workers = min(max(self._callers, 4), 16)
        self._lock = threading.Lock()
        self._client_obj: Any = None
        self._direct_obj: DirectGet | None = None
        self._ca_bundle: str | None = None
        self._pool_obj: ThreadPoolExecutor | None = None
        self._bucket_checked = False
        self._conditional = True  # the server honours If-None-Match; cleared on 501

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None, region: str | None = None,
                 profile: str | None = None, jobs: int | None = None) -> S3Store:
        bucket, prefix = parse_s3_url(url)
        for name, value in (("endpoint_url", endpoint_url), ("region", region), ("profile", profile)):
            if value is not None and not isinstance(value, str):
                raise UserInputError(f"remote {url!r}: {name} must be a string")
        if endpoint_url:
            ep = urlparse(endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise UserInputError(f"remote {url!r}: endpoint_url {endpoint_url!r} must be an http:// or "
                                     "https:// URL")
        if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 0):
            raise UserInputError(f"remote {url!r}: jobs must be an integer >= 0")
        return cls(bucket, prefix, endpoint_url=endpoint_url, region=region, profile=profile, jobs=jobs)

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Store({self.url}{where})"

    # ------------------------------------------------------------ plumbing

    @property
    def client(self) -> Any:
        """The boto3 S3 client (created on first use, then shared by every thread)."""
        c = self._client_obj
        if c is None:
            with self._lock:
                if self._client_obj is None:
                    self._client_obj = self._make_client()
                c = self._client_obj
        return c

    def _make_client(self) -> Any:
        import boto3
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ProfileNotFound

        core = botocore.session.get_session()
        # botocore turns every timestamp of a response into a datetime with dateutil: a
        # LIST page of 1,000 keys cost ~0.4 s of CPU that way. Nothing here reads them.
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        self._ca_bundle = core.get_config_variable("ca_bundle")
        try:
            session = boto3.session.Session(profile_name=self.profile, botocore_session=core)
        except ProfileNotFound:
            raise ConfigError(f"{self.url}: AWS profile {self.profile!r} not found in the AWS config files "
                              "(~/.aws/config, ~/.aws/credentials or $AWS_CONFIG_FILE)") from None
        except BotoCoreError as exc:
            raise RemoteError(_one_line(f"{self.url}: cannot set up the AWS session: {exc}")) from exc
        config = Config(
            region_name=self.region,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            tcp_keepalive=True,
            max_pool_connections=self._callers + self._part_workers + 2,
            # Custom endpoints (MinIO, Ceph, SeaweedFS, ...) rarely have wildcard DNS.
            # Every upload carries its SHA-256 in a signed x-amz-checksum-sha256 header,
            # which the server checks: signing the body's SHA-256 as well (what botocore
            # does on plain http) would hash every byte twice for no more safety.
            s3={"payload_signing_enabled": False,
                **({"addressing_style": "path"} if self.endpoint_url else {})},
            request_checksum_calculation="when_supported",
            # Validate responses when we ask (ChecksumMode on whole-object GETs): a server
            # that sent the whole object's checksum with a range must not fail the range.
            response_checksum_validation="when_required",
            user_agent_extra="ckptvc",
        )
        try:
            return session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config)
        except ValueError as exc:
            raise UserInputError(_one_line(f"{self.url}: bad endpoint_url {self.endpoint_url!r}: {exc}")) from None
        except BotoCoreError as exc:
            raise RemoteError(_one_line(f"{self.url}: cannot create the S3 client: {exc}")) from exc

    @property
    def direct(self) -> DirectGet:
        """Whole-object GETs of objects outside botocore (s3_direct.py), boto3 answering
        whatever that path does not."""
        d = self._direct_obj
        if d is None:
            client = self.client
            with self._lock:
                if self._direct_obj is None:
                    self._direct_obj = DirectGet(client, self.bucket, connect_timeout=CONNECT_TIMEOUT,
                                                 read_timeout=READ_TIMEOUT, ca_bundle=self._ca_bundle)
                d = self._direct_obj
        return d

    @property
    def _pool(self) -> ThreadPoolExecutor:
        p = self._pool_obj
        if p is None:
            with self._lock:
                if self._pool_obj is None:
                    self._pool_obj = ThreadPoolExecutor(self._part_workers, thread_name_prefix="ckptvc-s3")
                p = self._pool_obj
        return p

    def close(self) -> None:
        with self._lock:
            pool, self._pool_obj = self._pool_obj, None
            client, self._client_obj = self._client_obj, None
            direct, self._direct_obj = self._direct_obj, None
        if direct is not None:
            direct.close()
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()

    def _k(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unk(self, s3key: str) -> str:
        return s3key[len(self.prefix) + 1:] if self.prefix else s3key

    def _no_bucket(self) -> RemoteError:
        at = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return RemoteError(f"{self.url}: bucket {self.bucket!r} does not exist{at} (create it first)")

    def _error(self, op: str, key: str | None, exc: BaseException) -> RemoteError:
        """One line naming the remote, the operation and what the server said."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        if isinstance(exc, RemoteError):
            return exc
        where = f"{self.url}: {op}" + (f" {key}" if key else "")
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            msg = str(exc.response.get("Error", {}).get("Message") or "")
            if code == "NoSuchBucket":
                return self._no_bucket()
            if status == 403 or code in ("AccessDenied", "403"):
                text = f"AccessDenied: {msg or 'access denied'} (check the AWS credentials, profile and bucket policy)"
            elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
                text = f"{code}: {msg} (check the AWS credentials)"
            elif not code or code.isdigit():
                text = f"HTTP {status}" + (f": {msg}" if msg else "")
            else:
                text = f"{code}: {msg}" if msg else code
            return RemoteError(_one_line(f"{where}: {text}"))
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return RemoteError(_one_line(
                f"{where}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or the remote's profile, or run where an instance/container role is available"))
        if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectTimeoutError
                      | ReadTimeoutError):
            return RemoteError(_one_line(f"{where}: network error after {MAX_ATTEMPTS} attempts: {exc}"))
        return RemoteError(_one_line(f"{where}: {type(exc).__name__}: {exc}"))

    def _check_bucket(self) -> None:
        """HEAD answers a missing bucket like a missing key (a bare 404); tell them apart
        once per store, so a typo in the bucket name is an error, not 'absent'."""
        if self._bucket_checked:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) in ("NoSuchBucket", "404"):
                raise self._no_bucket() from None
            raise self._error("check bucket", None, exc) from exc
        except BotoCoreError as exc:
            raise self._error("check bucket", None, exc) from exc
        self._bucket_checked = True

    def _run(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        """fn over items on the store's pool; waits for all, re-raises the first error."""
        futures = [self._pool.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
            wait_futures(futures)

    # ------------------------------------------------------------ presence and sizes

    def _head(self, op: str, key: str) -> dict | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as exc:
            if _status(exc) == 404 and _code(exc) != "NoSuchBucket":
                self._check_bucket()
                return None
            raise self._error(op, key, exc) from exc
        except BotoCoreError as exc:
            raise self._error(op, key, exc) from exc

    def exists(self, key: str) -> bool:
        return self._head("exists", key) is not None

    def size(self, key: str) -> int | None:
        head = self._head("size", key)
        return None if head is None else int(head["ContentLength"])

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        return set(self._stat_many("exists", keys))

    def sizes(self, keys: Iterable[str]) -> dict[str, int]:
        return self._stat_many("sizes", keys)

    def _stat_many(self, op: str, keys: Iterable[str]) -> dict[str, int]:
        """Sizes of the keys present, in few round trips. A handful of keys get HEADs in
        parallel. More are sorted and cut into contiguous stretches, one per worker;
        each stretch is decided by a LIST that starts just before its first undecided
        key: one page decides every key it passes, so a remote that is sparse around
        the keys (a fresh one, or one asked for most of what it holds) answers in one
        LIST per stretch. Where a round of LISTs decides hardly more than one key each
        (a remote far larger than the question), the rest get HEADs: never much more
        than one round trip per key, whatever the remote holds."""
        wanted = {self._k(k): k for k in keys}
        pending = sorted(wanted)
        found: dict[str, int] = {}
        while len(pending) > HEAD_MANY_MAX:
            before = len(pending)
            stretches = _stretches(pending, self._callers)
            rounds = self._run(lambda s: self._list_stretch(op, s), stretches)
            pending = [k for _, undecided in rounds for k in undecided]
            for part, _ in rounds:
                found.update(part)
            if before - len(pending) < 2 * len(stretches):
                break  # about one key per LIST: HEADs cost less from here

        def head(s3key: str) -> tuple[str, int | None]:
            got = self._head(op, wanted[s3key])
            return s3key, None if got is None else int(got["ContentLength"])

        found.update((k, n) for k, n in self._run(head, pending) if n is not None)
        return {wanted[k]: n for k, n in found.items()}

    def _list_stretch(self, op: str, members: list[str]) -> tuple[dict[str, int], list[str]]:
        """One LIST for the sorted `members`: ({s3 key: size} of those found, the members
        it could not decide). It starts just before the first member, under the longest
        prefix the members share, and decides every member up to the last key it
        returned (all of them when the listing ended)."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = os.path.commonprefix([members[0], members[-1]])
        try:
            # a page a few times the stretch: enough to pass a sparse stretch in one go,
            # small enough that a dense remote shows itself cheaply (then HEADs)
            page = min(self.list_page, max(LIST_MIN_PAGE, 8 * len(members)))
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix,
                                               StartAfter=members[0][:-1], MaxKeys=page)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(op, self._unk(members[0]), exc) from exc
        self._bucket_checked = True
        member_set = set(members)
        contents = resp.get("Contents") or []
        found = {o["Key"]: int(o["Size"]) for o in contents if o["Key"] in member_set}
        if not resp.get("IsTruncated") or not contents:
            return found, []
        last = contents[-1]["Key"]
        return found, [m for m in members if m > last]

    def list(self, prefix: str = "") -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = (f"{self.prefix}/{prefix}" if self.prefix else prefix) if prefix else (
            f"{self.prefix}/" if self.prefix else "")
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full, "MaxKeys": self.list_page}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                resp = self.client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._error("list", prefix or None, exc) from exc
            for obj in resp.get("Contents") or []:
                key = obj["Key"]
                if not self.prefix or key.startswith(self.prefix + "/"):
                    yield self._unk(key)
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                return

    # ------------------------------------------------------------ reading

    def _fetch(self, op: str, key: str, *, byte_range: tuple[int, int] | None = None,
               if_match: str | None = None, limit: int | None = None) -> tuple[bytes, dict]:
        """GET (a range of) a value and read its body, issuing the GET again when the
        body breaks off or fails its checksum. KeyError when absent; _Changed when
        `if_match` no longer matches; (b"", resp) for a range of an empty value.
        With `limit`, reads at most that many bytes of the body."""
        from botocore.exceptions import BotoCoreError, ClientError, IncompleteReadError
        from urllib3.exceptions import HTTPError as Urllib3Error

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._k(key)}
        if byte_range:
            kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        elif not key.startswith("objects/"):
            # botocore checks the bytes against the stored SHA-256. Not for objects: their
            # envelopes carry a blake3 of the payload that every reader checks (and reads
            # again on a mismatch, see objectdb.read_checked); hashing each GB a second
            # time, with SHA-256, cost more CPU than the rest of a pull's download.
            kwargs["ChecksumMode"] = "ENABLED"
        if if_match:
            kwargs["IfMatch"] = if_match
        if byte_range is None and if_match is None and key.startswith("objects/"):
            got = self.direct.get(kwargs["Key"], limit)
            if got is not None:
                data, total, etag = got
                return data, {"ContentLength": total, "ETag": etag}
        last: BaseException | None = None
        for attempt in range(STREAM_ATTEMPTS):
            try:
                resp = self.client.get_object(**kwargs)
            except ClientError as exc:
                code, status = _code(exc), _status(exc)
                if code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket"):
                    if code != "NoSuchKey":
                        self._check_bucket()
                    raise KeyError(key) from None
                if if_match and (status == 412 or code == "PreconditionFailed"):
                    raise _Changed() from None
                if byte_range and (status == 416 or code == "InvalidRange"):
                    return b"", {"ContentLength": 0}
                raise self._error(op, key, exc) from exc
            except BotoCoreError as exc:  # botocore already retried the request itself
                raise self._error(op, key, exc) from exc
            else:
                body = resp["Body"]
                try:
                    n = int(resp["ContentLength"])
                    if limit is not None and n > limit:
                        chunks, got = [], 0
                        while got < limit:
                            piece = body.read(limit - got)
                            if not piece:
                                raise IncompleteReadError(actual_bytes=got, expected_bytes=limit)
                            chunks.append(piece)
                            got += len(piece)
                        return b"".join(chunks), resp
                    data = body.read()
                    if len(data) != n:
                        raise IncompleteReadError(actual_bytes=len(data), expected_bytes=n)
                    return data, resp
                except (BotoCoreError, Urllib3Error, OSError) as exc:
                    # cut off mid-body, timed out, or FlexibleChecksumError (damaged bytes)
                    last = exc
                finally:
                    body.close()
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
        raise RemoteError(_one_line(f"{self.url}: {op} {key}: download failed {STREAM_ATTEMPTS} times: {last}"))

    def read(self, key: str) -> bytes:
        for _ in range(READ_RESTARTS):
            try:
                return self._read(key)
            except _Changed:
                continue
        raise RemoteError(f"{self.url}: read {key}: the value kept changing while it was being read")

    def _read(self, key: str) -> bytes:
        part = self.read_part
        head, resp = self._fetch("read", key, limit=part)
        total = int(resp["ContentLength"])
        if total <= part:
            return head
        etag = resp.get("ETag")
        if not etag:
            raise RemoteError(f"{self.url}: read {key}: the server sent no ETag; cannot read in ranges")
        ranges = [(off, min(off + part, total) - 1) for off in range(part, total, part)]

        def one(r: tuple[int, int]) -> bytes:
            data, rresp = self._fetch("read", key, byte_range=r, if_match=etag)
            want = r[1] - r[0] + 1
            if len(data) != want:
                if "ContentRange" not in rresp and len(data) == total:  # server ignored Range
                    return data[r[0]:r[1] + 1]
                raise RemoteError(f"{self.url}: read {key}: range {r[0]}-{r[1]} returned {len(data)} bytes")
            return data

        return b"".join([head, *self._run(one, ranges)])

    def read_prefix(self, key: str, length: int) -> bytes:
        if length <= 0:
            if not self.exists(key):
                raise KeyError(key)
            return b""
        data, _ = self._fetch("read", key, byte_range=(0, length - 1))
        return data[:length]

    # ------------------------------------------------------------ writing

    def write(self, key: str, data: Any, *, exclusive: bool = False) -> bool:
        """Conditional create: one request (If-None-Match: *) whether or not
        `exclusive`; S3 makes the check-and-create atomic."""
        data = _as_bytes(data)
        if self._conditional:
            try:
                return self._put("write", key, data, conditional=True)
            except _NoConditional:
                if self._conditional:
                    self._conditional = False
                    log.warning("%s: the server does not support conditional writes (If-None-Match); "
                                "falling back to HEAD then PUT, which is not atomic", self.url)
        if self._head("write", key) is not None:
            return False
        self._put("write", key, data, conditional=False)
        return True

    def replace(self, key: str, data: Any) -> None:
        self._put("replace", key, _as_bytes(data), conditional=False)

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as exc:
            if _code(exc) == "NoSuchKey":
                return
            raise self._error("delete", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("delete", key, exc) from exc

    def _unsupported_conditional(self, exc: Exception) -> bool:
        code, status = _code(exc), _status(exc)
        if status == 501 or code == "NotImplemented":
            return True
        msg = str(getattr(exc, "response", {}).get("Error", {}).get("Message") or "").lower()
        return status == 400 and code in ("InvalidArgument", "InvalidRequest") and "none-match" in msg

    def _holds(self, key: str, checksum: str, etag: Callable[[], str]) -> bool:
        """Whether the stored value is the one we sent, after a conditional write that
        botocore had to retry got 412: an earlier attempt of ours may have landed and
        lost its response. Compared by the stored SHA-256 checksum, or, for servers
        that keep none, by the ETag (the MD5 of the bytes, or of the parts' MD5s)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._k(key), ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError):
            return False
        if head.get("ChecksumSHA256"):
            return head["ChecksumSHA256"] == checksum
        return str(head.get("ETag") or "").strip('"') == etag()

    def _put(self, op: str, key: str, data: bytes, *, conditional: bool) -> bool:
        if len(data) > self.multipart_threshold:
            return self._put_multipart(op, key, data, conditional=conditional)
        from botocore.exceptions import BotoCoreError, ClientError

        checksum = _b64(_sha256(data))
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._k(key), "Body": data,
                                  "ChecksumSHA256": checksum}
        if conditional:
            kwargs["IfNoneMatch"] = "*"
        last: BaseException | None = None
        for attempt in range(DIGEST_ATTEMPTS):
            try:
                self.client.put_object(**kwargs)
                return True
            except ClientError as exc:
                code, status = _code(exc), _status(exc)
                if conditional and (status == 412 or code == "PreconditionFailed"):
                    return _retried(exc) and self._holds(
                        key, checksum, lambda: hashlib.md5(data, usedforsecurity=False).hexdigest())
                if conditional and self._unsupported_conditional(exc):
                    raise _NoConditional() from None
                if code not in _DIGEST_CODES and code != "ConditionalRequestConflict":
                    raise self._error(op, key, exc) from exc
                last = exc  # damaged in transit (refused), or a concurrent conditional write: again
            except BotoCoreError as exc:
                raise self._error(op, key, exc) from exc
            time.sleep(0.05 * 2 ** attempt)
        assert last is not None
        raise self._error(op, key, last) from last

    def _upload_part(self, op: str, key: str, upload_id: str, number: int, data: bytes) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        digest = _sha256(data)
        checksum = _b64(digest)
        last: BaseException | None = None
        for attempt in range(DIGEST_ATTEMPTS):
            try:
                resp = self.client.upload_part(Bucket=self.bucket, Key=self._k(key), UploadId=upload_id,
                                               PartNumber=number, Body=data, ChecksumSHA256=checksum)
                return {"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": checksum, "_digest": digest}
            except ClientError as exc:
                if _code(exc) not in _DIGEST_CODES:
                    raise self._error(op, key, exc) from exc
                last = exc
            except BotoCoreError as exc:
                raise self._error(op, key, exc) from exc
            time.sleep(0.05 * 2 ** attempt)
        assert last is not None
        raise self._error(f"{op} (part {number})", key, last) from last

    def _put_multipart(self, op: str, key: str, data: bytes, *, conditional: bool) -> bool:
        """Parts in parallel, each with its own SHA-256; the value appears only when
        the upload completes, and any failure aborts the upload."""
        from botocore.exceptions import BotoCoreError, ClientError

        s3key = self._k(key)
        part = max(self.part_size, -(-len(data) // MAX_PARTS))
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=s3key,
                                                            ChecksumAlgorithm="SHA256")["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(op, key, exc) from exc
        finished = False
        try:
            offsets = list(range(0, len(data), part))
            futures: list[Future] = [
                self._pool.submit(lambda n, off: self._upload_part(op, key, upload_id, n, data[off:off + part]),
                                  i + 1, off) for i, off in enumerate(offsets)]
            try:
                parts = [f.result() for f in futures]
            finally:
                for f in futures:
                    f.cancel()
                wait_futures(futures)  # nothing in flight when we abort
            composite = _b64(_sha256(b"".join(p.pop("_digest") for p in parts))) + f"-{len(parts)}"

            def etag() -> str:
                md5s = b"".join(hashlib.md5(data[off:off + part], usedforsecurity=False).digest() for off in offsets)
                return f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(offsets)}"

            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": s3key, "UploadId": upload_id,
                                      "MultipartUpload": {"Parts": parts}}
            if conditional:
                kwargs["IfNoneMatch"] = "*"
            try:
                self.client.complete_multipart_upload(**kwargs)
            except ClientError as exc:
                code, status = _code(exc), _status(exc)
                if conditional and (status == 412 or code == "PreconditionFailed"):
                    return _retried(exc) and self._holds(key, composite, etag)
                if conditional and self._unsupported_conditional(exc):
                    raise _NoConditional() from None
                if code == "NoSuchUpload" and _retried(exc) and self._holds(key, composite, etag):
                    finished = True  # an earlier attempt completed it; its response was lost
                    return True
                raise self._error(op, key, exc) from exc
            except BotoCoreError as exc:
                raise self._error(op, key, exc) from exc
            finished = True
            return True
        finally:
            if not finished:
                self._abort(s3key, upload_id)

    def _abort(self, s3key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=s3key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":  # NoSuchUpload: already completed or aborted
                log.warning("%s: could not abort multipart upload of %s: %s", self.url, s3key, exc)
        except BotoCoreError as exc:  # the upload stays invisible; a lifecycle rule reaps it
            log.warning("%s: could not abort multipart upload of %s: %s", self.url, s3key, exc)
