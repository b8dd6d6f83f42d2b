"""The S3 store against real S3 servers on 127.0.0.1 (moto server mode and SeaweedFS,
see s3servers.py): every Store method, conditional create under a race, multipart
uploads and parallel ranged reads, checksums refused by the server, faults injected
by a proxy (500s, dropped connections, truncated responses, damaged bodies), and
clear one-line errors."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from ckptvc.errors import ConfigError, RemoteError, UserInputError
from ckptvc.objects import codecs, envelope
from ckptvc.objects.objectdb import read_checked
from ckptvc.stores import s3 as s3mod
from ckptvc.stores.factory import open_store
from ckptvc.stores.s3 import S3Store, parse_s3_url

pytest.register_assert_rewrite("s3servers")
pytest_plugins = ["s3servers"]  # fixtures: aws_env, s3_server (each server in turn)
from s3servers import BUCKET, FaultProxy, free_ports  # noqa: E402

MiB = 1 << 20


def okey(name: str | int) -> str:
    """An object key as the object layer makes them: objects/ab/<62 hex>."""
    h = hashlib.sha256(str(name).encode()).hexdigest()
    return f"objects/{h[:2]}/{h[2:]}"


def key_in(fanout: str, name: str | int) -> str:
    h = hashlib.sha256(str(name).encode()).hexdigest()
    return f"objects/{fanout}/{h[2:]}"


def rand_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def new_store(server, prefix: str | None = None, endpoint: str | None = None, **kw) -> S3Store:
    prefix = prefix or f"t-{uuid.uuid4().hex[:12]}/x"
    return S3Store.from_url(f"s3://{BUCKET}/{prefix}", endpoint_url=endpoint or server.endpoint, **kw)


@pytest.fixture
def store(s3_server):
    s = new_store(s3_server, jobs=4)
    yield s
    s.close()


class Calls:
    """S3 operations a store's client sends (each HTTP attempt counted once)."""

    def __init__(self, store: S3Store):
        self.ops: Counter[str] = Counter()
        self._lock = threading.Lock()
        store.client.meta.events.register("before-call.s3", self._on_call)
        # GETs answered outside botocore (s3_direct.py) count as GetObject too
        direct, get = store.direct, store.direct.get

        def counted_get(*args, **kwargs):
            got = get(*args, **kwargs)
            if got is not None:
                with self._lock:
                    self.ops["GetObject"] += 1
            return got

        direct.get = counted_get

    def _on_call(self, model, **_):
        with self._lock:
            self.ops[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def reset(self) -> None:
        self.ops.clear()


def sha_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# ---------------------------------------------------------------- the Store contract


def test_store_methods_round_trip(s3_server, store):
    a, b, empty, tag = okey("a"), okey("b"), okey("empty"), "tags/v1"
    assert not store.exists(a)
    with pytest.raises(KeyError):
        store.read(a)
    with pytest.raises(KeyError):
        store.read_prefix(a, 10)
    assert store.size(a) is None

    assert store.write(a, b"hello object") is True
    assert store.write(a, b"another value") is False  # never overwrites
    assert store.read(a) == b"hello object"
    assert store.write(b, b"B" * 1000, exclusive=True) is True
    assert store.write(b, b"C" * 1000, exclusive=True) is False
    assert store.write(empty, b"") is True
    assert store.write(tag, b"tag body") is True
    assert store.write(okey("parts"), [b"header|", memoryview(b"payload")]) is True  # buffers, in order
    assert store.read(okey("parts")) == b"header|payload"
    store.delete(okey("parts"))

    assert store.exists(a) and store.exists(empty)
    assert store.read(empty) == b""
    assert store.read_prefix(a, 5) == b"hello"
    assert store.read_prefix(a, 1 << 20) == b"hello object"
    assert store.read_prefix(empty, 48) == b""
    assert store.read_prefix(a, 0) == b""
    assert store.size(a) == 12 and store.size(empty) == 0 and store.size(b) == 1000
    assert store.exists_many([a, b, empty, okey("nope"), tag]) == {a, b, empty, tag}
    assert store.sizes([a, b, okey("nope")]) == {a: 12, b: 1000}
    assert store.exists_many([]) == set() and store.sizes([]) == {}
    assert sorted(store.list()) == sorted([a, b, empty, tag])
    assert sorted(store.list("objects/")) == sorted([a, b, empty])
    assert list(store.list("tags/")) == [tag]
    assert list(store.list("nothing/")) == []

    store.replace(a, b"hello object, smaller encoding")
    assert store.read(a) == b"hello object, smaller encoding"
    assert store.size(a) == len(b"hello object, smaller encoding")

    store.delete(a)
    store.delete(a)  # absent: no error
    assert not store.exists(a)
    assert sorted(store.list()) == sorted([b, empty, tag])

    # Keys live under the prefix; a sibling prefix that shares its first characters
    # is another store.
    sibling = new_store(s3_server, prefix=store.prefix + "y")
    try:
        sibling.write(okey("s"), b"sibling")
        assert list(store.list()) and okey("s") not in set(store.list())
        assert list(sibling.list()) == [okey("s")]
        c = s3_server.client()
        assert c.head_object(Bucket=BUCKET, Key=f"{store.prefix}/{b}")["ContentLength"] == 1000
        c.close()
    finally:
        sibling.close()

    for bad in ("", "/abs", "objects/../x", "objects//x", "a\\b", "./x"):
        with pytest.raises(UserInputError):
            store.exists(bad)


def test_exists_many_and_sizes_batch_round_trips(store):
    store.list_page = 7  # several pages per directory
    present = {}
    for fan in ("aa", "ab", "ac"):
        for i in range(15):
            present[key_in(fan, f"{fan}{i}")] = 10 + i
    for i in range(5):
        present[okey(f"lone{i}")] = 3
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: store.write(kv[0], b"x" * kv[1]), present.items()))
    absent = [key_in(fan, f"missing{fan}{i}") for fan in ("aa", "ab", "ad") for i in range(10)]
    absent += [okey(f"gone{i}") for i in range(5)]
    asked = list(present) + absent

    calls = Calls(store)
    assert store.exists_many(asked) == set(present)
    assert calls.total < len(asked) / 2, calls.ops  # batched, not one round trip per key
    calls.reset()
    assert store.sizes(asked) == present
    assert calls.total < len(asked) / 2, calls.ops
    calls.reset()
    few = [okey("lone1"), okey("gone1"), okey("lone2")]
    assert store.exists_many(few) == {okey("lone1"), okey("lone2")}
    assert calls.ops == {"HeadObject": 3}  # few keys: HEADs, in parallel


def test_presence_of_many_keys_costs_a_list_per_worker_on_a_sparse_remote(store):
    # a fresh remote asked about everything a first push holds: one LIST per stretch
    held = [okey(f"held{i}") for i in range(6)]
    for k in held:
        store.write(k, b"v")
    asked = held + [okey(f"new{i}") for i in range(300)]
    calls = Calls(store)
    assert store.exists_many(asked) == set(held)
    assert calls.ops.get("HeadObject", 0) == 0 and calls.total <= store._callers, calls.ops


def test_presence_on_a_dense_remote_falls_back_to_heads(store):
    # a remote far larger than the question: a LIST page decides one key, so the rest
    # are HEADs, and the total stays near one round trip per key
    store.list_page = 2
    many = [key_in("cd", f"dense{i}") for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.write(k, b"vv"), many))
    asked = sorted(many)[::3][:20] + [key_in("cd", f"absent{i}") for i in range(20)]
    calls = Calls(store)
    assert store.sizes(asked) == {k: 2 for k in asked if k in set(many)}
    assert calls.total <= len(asked) + store._callers, calls.ops


def test_list_pages_through_everything(store):
    store.list_page = 5
    keys = [okey(i) for i in range(23)] + ["tags/a", "tags/b"]
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda k: store.write(k, k.encode()), keys))
    listed = list(store.list())
    assert sorted(listed) == sorted(keys)
    assert sorted(store.list("tags/")) == ["tags/a", "tags/b"]


def test_exclusive_write_race_has_exactly_one_winner(s3_server, store):
    if not s3_server.atomic_conditional_writes:
        pytest.skip(f"{s3_server.name} checks If-None-Match and stores in two steps: racing creates can both win")
    for trial in range(3):
        key = okey(f"race{trial}")
        n = 4
        barrier = threading.Barrier(n)
        results: dict[int, bool] = {}

        def writer(i: int, key: str = key, barrier: threading.Barrier = barrier,
                   results: dict[int, bool] = results) -> None:
            barrier.wait()
            results[i] = store.write(key, f"writer {i}".encode() * 100, exclusive=True)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, ok in results.items() if ok]
        assert len(winners) == 1, results
        assert store.read(key) == f"writer {winners[0]}".encode() * 100


# ---------------------------------------------------------------- large values


def test_large_value_multipart_upload_and_parallel_ranged_reads(store):
    key = okey("big")
    data = rand_bytes(40 * MiB, 1)
    calls = Calls(store)
    assert store.write(key, data) is True
    assert calls.ops["CreateMultipartUpload"] == 1
    assert calls.ops["UploadPart"] == 5  # 8 MiB parts
    assert calls.ops["CompleteMultipartUpload"] == 1
    assert "PutObject" not in calls.ops
    calls.reset()
    assert store.read(key) == data
    assert calls.ops["GetObject"] == 5  # the first 8 MiB, then 4 ranges in parallel
    assert store.size(key) == len(data)
    assert store.read_prefix(key, 100) == data[:100]

    # Conditional create holds for multipart uploads too, and leaves no upload behind.
    assert store.write(key, rand_bytes(17 * MiB, 2), exclusive=True) is False
    assert store.read(key) == data

    smaller = rand_bytes(20 * MiB, 3)
    store.replace(key, smaller)
    assert store.read(key) == smaller
    assert store.size(key) == len(smaller)
    uploads = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix + "/")
    assert not uploads.get("Uploads")


def test_read_never_mixes_two_versions_of_a_replaced_value(s3_server, store):
    """Ranged reads are pinned to the first response's ETag: a replace between two
    ranges makes the read start over instead of stitching two encodings together."""
    store.read_part = 1 * MiB
    key = okey("pinned")
    old, new = rand_bytes(4 * MiB, 4), rand_bytes(3 * MiB + 5, 5)
    store.write(key, old)
    other = s3_server.client()
    fired = threading.Event()

    def replace_once(params, **_):
        if params.get("Range") and not fired.is_set():
            fired.set()
            other.put_object(Bucket=BUCKET, Key=f"{store.prefix}/{key}", Body=new)

    store.client.meta.events.register("before-parameter-build.s3.GetObject", replace_once)
    try:
        assert store.read(key) == new
    finally:
        other.close()
    assert fired.is_set()


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def test_servers_without_conditional_writes_get_head_then_put(store, caplog):
    """A server that answers If-None-Match with 501 NotImplemented: the store notices,
    warns once, and falls back to HEAD then PUT (not atomic, see docs/s3.md)."""
    store.multipart_threshold, store.part_size = 6 * MiB, 5 * MiB
    refused = Counter()

    def no_conditional(request, **_):
        if "If-None-Match" in request.headers:
            refused[request.method] += 1
            body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code><Message>A header "
                    b"you provided implies functionality that is not implemented</Message></Error>")
            return AWSResponse(request.url, 501, {"Content-Type": "application/xml"}, _Raw(body))
        return None

    store.client.meta.events.register("before-send.s3", no_conditional)
    small, big = okey("nc-small"), okey("nc-big")
    big_data = rand_bytes(7 * MiB, 9)
    with caplog.at_level("WARNING", logger="ckptvc.stores.s3"):
        assert store.write(small, b"first") is True
    assert store.write(small, b"second") is False
    assert store.read(small) == b"first"
    assert store.write(big, big_data) is True
    assert store.write(big, b"other") is False
    assert store.read(big) == big_data
    assert refused == {"PUT": 1}  # noticed once, then never sent again
    assert sum("conditional writes" in r.getMessage() for r in caplog.records) == 1

    # A multipart upload refused at completion is aborted, then sent the plain way.
    other = S3Store.from_url(store.url, endpoint_url=store.endpoint_url)
    other.multipart_threshold, other.part_size = 6 * MiB, 5 * MiB
    other.client.meta.events.register("before-send.s3", no_conditional)
    try:
        assert other.write(okey("nc-big2"), big_data) is True
        assert refused["POST"] == 1
        assert other.read(okey("nc-big2")) == big_data
        uploads = other.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix + "/")
        assert not uploads.get("Uploads")
    finally:
        other.close()


# ---------------------------------------------------------------- integrity


def test_server_refuses_an_upload_with_a_wrong_checksum(s3_server, store):
    if not s3_server.verifies_checksums:
        pytest.skip(f"{s3_server.name} stores uploads whatever x-amz-checksum-sha256 or Content-MD5 says")
    c = store.client
    key = f"{store.prefix}/{okey('corrupt')}"
    body = b"the bytes that were sent"
    with pytest.raises(ClientError) as err:
        c.put_object(Bucket=BUCKET, Key=key, Body=body, ChecksumSHA256=sha_b64(b"the bytes that were meant"))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err.value.response["Error"]["Code"] in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch")
    wrong_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError):
        c.put_object(Bucket=BUCKET, Key=key, Body=body, ContentMD5=wrong_md5)
    up = c.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError):
        c.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=body,
                      ChecksumSHA256=sha_b64(b"not the part"))
    c.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up["UploadId"])
    assert not store.exists(okey("corrupt"))


def test_bytes_damaged_in_transit_are_refused_and_never_stored(s3_server, store):
    if not s3_server.verifies_checksums:
        pytest.skip(f"{s3_server.name} does not verify upload checksums, so damaged bytes would be stored")
    with FaultProxy(s3_server.endpoint, seed=3, corrupt_rate=1.0, max_consecutive=1000) as proxy:
        via = new_store(s3_server, prefix=store.prefix, endpoint=proxy.endpoint)
        try:
            with pytest.raises(RemoteError) as err:
                via.write(okey("damaged"), rand_bytes(100_000, 6))
        finally:
            via.close()
        assert proxy.counts["corrupt"] >= 3  # refused, sent again, refused ...
    assert store.url in str(err.value) and "\n" not in str(err.value)
    assert not store.exists(okey("damaged"))

    with FaultProxy(s3_server.endpoint, seed=4, corrupt_rate=0.5, max_consecutive=1) as proxy:
        via = new_store(s3_server, prefix=store.prefix, endpoint=proxy.endpoint, jobs=4)
        try:
            values = {okey(f"d{i}"): rand_bytes(50_000 + i, 10 + i) for i in range(12)}
            with ThreadPoolExecutor(4) as pool:
                assert all(pool.map(lambda kv: via.write(*kv), values.items()))
        finally:
            via.close()
        assert proxy.counts["corrupt"] > 0
    for k, v in values.items():
        assert store.read(k) == v

    # Downloads too. A record (any key outside objects/) is checked by botocore against
    # the stored SHA-256 and fetched again when damaged. An object is checked by the
    # blake3 in its envelope and read again (objectdb.read_checked), so that its bytes
    # are hashed once, not twice.
    records = {f"tags/r{i}": rand_bytes(30_000 + i, 40 + i) for i in range(8)}
    envelopes = {okey(f"e{i}"): envelope.pack(codecs.RAW, 40_000 + i, b"", rand_bytes(40_000 + i, 60 + i))
                 for i in range(8)}
    for k, v in {**records, **envelopes}.items():
        assert store.write(k, v)
    with FaultProxy(s3_server.endpoint, seed=5, corrupt_response_rate=0.5, max_consecutive=2) as proxy:
        via = new_store(s3_server, prefix=store.prefix, endpoint=proxy.endpoint, jobs=4)
        try:
            with ThreadPoolExecutor(4) as pool:
                assert all(pool.map(lambda kv: via.read(kv[0]) == kv[1], records.items()))
                assert all(pool.map(lambda kv: read_checked(via, kv[0], kv[0])[0] == kv[1], envelopes.items()))
        finally:
            via.close()
        assert proxy.counts["corrupt_response"] > 0


def test_faults_never_leave_a_damaged_or_partial_value(s3_server, store):
    """Through a proxy that answers 500, drops connections before or after forwarding
    and truncates responses: every write either succeeds (and the bytes are right) or
    raises RemoteError; every read returns the right bytes or raises RemoteError."""
    values = {okey(f"f{i}"): rand_bytes(int(x), 100 + i)
              for i, x in enumerate(np.random.default_rng(7).integers(0, 300_000, 24))}
    values[okey("f-big1")] = rand_bytes(11 * MiB, 200)  # 3 parts of 5 MiB
    values[okey("f-big2")] = rand_bytes(7 * MiB, 201)
    proxy = FaultProxy(s3_server.endpoint, seed=11, error_rate=0.08, drop_rate=0.06, drop_after_rate=0.06,
                       truncate_rate=0.08, max_consecutive=2).start()
    via = new_store(s3_server, prefix=store.prefix, endpoint=proxy.endpoint, jobs=4)
    via.multipart_threshold, via.part_size, via.read_part = 6 * MiB, 5 * MiB, 2 * MiB
    try:
        def write(kv):
            try:
                return via.write(*kv)
            except RemoteError as exc:
                assert via.url in str(exc) and "\n" not in str(exc)
                return exc

        with ThreadPoolExecutor(4) as pool:
            outcomes = dict(zip(values, pool.map(write, values.items()), strict=True))
        failed = {k for k, o in outcomes.items() if isinstance(o, RemoteError)}
        assert len(failed) <= 2, outcomes
        # Each key is new: even when a retried write meets its own earlier attempt
        # (412 after a lost response), it recognises its bytes and reports True.
        assert all(o is True for k, o in outcomes.items() if k not in failed), outcomes

        for k, v in values.items():  # directly, without faults
            if k in failed:
                assert not store.exists(k) or store.read(k) == v
            else:
                assert store.read(k) == v
        assert set(store.list()) <= set(values)

        def read(kv):
            try:
                return via.read(kv[0]) == kv[1]
            except RemoteError:
                return None

        with ThreadPoolExecutor(4) as pool:
            reads = list(pool.map(read, [(k, v) for k, v in values.items() if k not in failed]))
        assert False not in reads
        assert reads.count(None) <= 2
        with contextlib.suppress(RemoteError):
            assert via.exists_many(list(values) + [okey("absent")]) == set(values) - failed
    finally:
        via.close()
        proxy.stop()
    assert proxy.faults >= 8, proxy.counts
    assert {"error", "drop", "drop_after", "truncate"} <= set(proxy.counts), proxy.counts


# ---------------------------------------------------------------- errors and configuration


def test_missing_bucket_is_a_clear_one_line_error(s3_server):
    s = S3Store.from_url("s3://no-such-bucket-ckptvc/some/prefix", endpoint_url=s3_server.endpoint)
    ops = {
        "exists": lambda: s.exists(okey(1)),
        "size": lambda: s.size(okey(1)),
        "read": lambda: s.read(okey(1)),
        "read_prefix": lambda: s.read_prefix(okey(1), 10),
        "write": lambda: s.write(okey(1), b"x"),
        "replace": lambda: s.replace(okey(1), b"x"),
        "list": lambda: list(s.list()),
        "exists_many": lambda: s.exists_many([key_in("aa", i) for i in range(5)]),
        "sizes": lambda: s.sizes([okey(1), okey(2)]),
    }
    try:
        for name, op in ops.items():
            with pytest.raises(RemoteError) as err:
                op()
            msg = str(err.value)
            assert "s3://no-such-bucket-ckptvc/some/prefix" in msg, (name, msg)
            assert "does not exist" in msg and "\n" not in msg, (name, msg)
    finally:
        s.close()


def test_unreachable_endpoint_is_a_remote_error(aws_env, monkeypatch):
    monkeypatch.setattr(s3mod, "MAX_ATTEMPTS", 3)  # the backoff between 8 attempts adds up to seconds
    (port,) = free_ports(1)  # nothing listens there
    s = S3Store.from_url("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    try:
        with pytest.raises(RemoteError) as err:
            s.write(okey(1), b"x")
    finally:
        s.close()
    assert time.monotonic() - t0 < 30
    msg = str(err.value)
    assert msg.startswith("s3://bucket/p: write objects/") and "network error after 3 attempts" in msg
    assert "\n" not in msg


def test_credentials_come_from_the_aws_chain(s3_server, aws_env, monkeypatch):
    cfg = aws_env / "config-with-profile"
    cfg.write_text("[profile ckpt]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
                   "region = us-east-1\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    s = new_store(s3_server, profile="ckpt")
    try:
        assert s.write(okey("p"), b"via profile") and s.read(okey("p")) == b"via profile"
    finally:
        s.close()

    s = new_store(s3_server, profile="nope")
    with pytest.raises(ConfigError, match="profile 'nope' not found"):
        s.exists(okey("p"))

    s = new_store(s3_server)  # no env credentials, no default profile, no instance metadata
    try:
        with pytest.raises(RemoteError, match="no usable AWS credentials") as err:
            s.exists(okey("p"))
        assert s.url in str(err.value)
    finally:
        s.close()


def test_url_and_option_validation(aws_env):
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://my.bucket-1/a/b/") == ("my.bucket-1", "a/b")
    s = S3Store.from_url("s3://bucket/team/ckpts/", region="eu-west-1", jobs=3)
    assert (s.url, s.bucket, s.prefix, s.region, s.jobs) == ("s3://bucket/team/ckpts", "bucket", "team/ckpts",
                                                             "eu-west-1", 3)
    assert s._k("objects/ab/cd") == "team/ckpts/objects/ab/cd"
    assert S3Store.from_url("s3://bucket")._k("tags/x") == "tags/x"
    for bad in ("s3://", "s3://b/x", "s3://B@d/x", "s3://user@bucket/x", "s3://bucket:9000/x",
                "s3://bucket/a//b", "s3://bucket/../x", "s3://bucket/p?versionId=1", "s3://bucket/p#frag",
                "file:///tmp/x"):
        with pytest.raises(UserInputError):
            S3Store.from_url(bad)
    with pytest.raises(UserInputError):
        S3Store.from_url("s3://bucket/p", endpoint_url="localhost:9000")
    with pytest.raises(UserInputError):
        S3Store.from_url("s3://bucket/p", jobs=-1)


def test_factory_opens_s3_remotes_with_their_options(s3_server):
    s = open_store(f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}",
                   options={"endpoint_url": s3_server.endpoint, "region": "us-east-1", "jobs": 3})
    try:
        assert isinstance(s, S3Store) and s.jobs == 3
        assert s.write("tags/x", b"1") and s.read("tags/x") == b"1"
    finally:
        s.close()


def test_push_and_pull_through_an_s3_remote(s3_server, tmp_path, monkeypatch):
    from conftest import clone, training_series, write_safetensors
    from s3servers import s3_work_tree

    from ckptvc.repo import Repo

    root, _ = s3_work_tree(tmp_path, s3_server.endpoint, monkeypatch)
    series = training_series(2)
    with Repo.open(root) as repo:
        for i, tensors in enumerate(series):
            write_safetensors(root / "m.safetensors", tensors)
            (root / "notes.bin").write_bytes(os.urandom(300_000) if i == 0 else b"tiny")
            repo.add([root / "m.safetensors", root / "notes.bin"])
            repo.commit(f"step {i}")
            repo.push()
        expected = {n: (root / n).read_bytes() for n in ("m.safetensors", "notes.bin")}
        _, again = repo.push()
        assert again.objects == 0
    dest = clone(root, tmp_path / "clone")
    with Repo.open(dest) as repo:
        res = repo.pull()
    assert sorted(res.restored) == sorted(expected)
    for name, data in expected.items():
        assert (dest / name).read_bytes() == data
