"""Whole-object GETs outside botocore (ckptvc/stores/s3_direct.py), against the real S3
servers of s3servers.py: the bytes round-trip, only objects go that way, anything but a
plain 200 is handed back to boto3 (which reports it as before), and the path turns
itself off where it cannot work (a redirect, failures in a row, a proxy)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import uuid

import numpy as np
import pytest

from ckptvc.errors import RemoteError
from ckptvc.objects import codecs, envelope
from ckptvc.objects.objectdb import read_checked
from ckptvc.stores.s3 import S3Store
from ckptvc.stores.s3_direct import MAX_FAILURES_IN_A_ROW, DirectGet

pytest.register_assert_rewrite("s3servers")
pytest_plugins = ["s3servers"]
from s3servers import BUCKET, FaultProxy, free_ports  # noqa: E402

MiB = 1 << 20


def okey(name: str) -> str:
    h = hashlib.sha256(name.encode()).hexdigest()
    return f"objects/{h[:2]}/{h[2:]}"


def rand_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture
def store(s3_server):
    s = S3Store.from_url(f"s3://{BUCKET}/d-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server.endpoint, jobs=4)
    yield s
    s.close()


def test_objects_round_trip_through_the_direct_path(store):
    store.read_part = 1 * MiB  # a 3 MiB value: its first MiB here, the rest as ranged GETs by boto3
    values = {okey(f"v{n}"): rand_bytes(n, n) for n in (0, 1, 4096, MiB - 1, MiB, MiB + 1, 3 * MiB + 5)}
    for key, data in values.items():
        assert store.write(key, data) is True
    before = store.direct.gets
    for key, data in values.items():
        got = store.read(key)
        assert type(got) is bytes
        assert hashlib.blake2b(got).digest() == hashlib.blake2b(data).digest()
    assert store.direct.gets - before == len(values)
    assert store.direct.enabled


def test_only_objects_go_direct_and_a_missing_one_is_still_a_keyerror(store):
    store.write("tags/baseline", b"tag bytes")
    before = store.direct.gets
    assert store.read("tags/baseline") == b"tag bytes"  # boto3, with the SHA-256 check
    assert store.direct.gets == before
    with pytest.raises(KeyError):
        store.read(okey("absent"))
    assert store.direct.enabled  # a 404 says nothing against the path


def test_a_kept_alive_connection_that_died_is_replaced(store):
    key = okey("alive")
    store.write(key, b"x" * 1000)
    assert store.read(key) == b"x" * 1000
    # close this thread's connection under it, as a server dropping an idle one would
    # (moto answers with Connection: close, so there is only something to close on SeaweedFS)
    for conn in store.direct._local.conns.values():
        if conn.sock is not None:
            conn.sock.close()
    before = store.direct.gets
    assert store.read(key) == b"x" * 1000
    assert store.direct.gets == before + 1 and store.direct._failures == 0


def test_faults_are_answered_by_boto3_and_objects_arrive_whole(s3_server):
    """500s, dropped connections, cut-off and damaged bodies between the store and the
    server: every object read through read_checked comes back exactly as written."""
    plain = S3Store.from_url(f"s3://{BUCKET}/f-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server.endpoint)
    objects = {}
    for i in range(12):
        raw = rand_bytes(200_000 + i, 100 + i)
        key = okey(f"fault{i}")
        objects[key] = envelope.pack(codecs.RAW, len(raw), b"", raw)
        plain.write(key, objects[key])
    with FaultProxy(s3_server.endpoint, seed=7, error_rate=0.15, drop_rate=0.1, drop_after_rate=0.1,
                    truncate_rate=0.1, corrupt_response_rate=0.1, max_consecutive=2) as proxy:
        faulty = S3Store.from_url(plain.url, endpoint_url=proxy.endpoint, jobs=2)
        try:
            for _ in range(3):
                for key, stored in objects.items():
                    data, _ = read_checked(faulty, key, key)
                    assert data == stored
            assert faulty.direct.gets > 0
        finally:
            faulty.close()
        assert proxy.faults > 5
    plain.close()


class _Stub(http.server.BaseHTTPRequestHandler):
    status = 307

    def do_GET(self):  # noqa: N802
        self.send_response(self.status)
        self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Signer:
    """Stands in for the boto3 client: a presigned URL to wherever the test says."""

    def __init__(self, base: str):
        self.base = base

    def generate_presigned_url(self, op, Params, ExpiresIn):  # noqa: N803 - boto3's names
        return f"{self.base}/{Params['Bucket']}/{Params['Key']}?X-Amz-Signature=x"


def test_a_redirect_turns_the_path_off():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        d = DirectGet(_Signer(f"http://127.0.0.1:{server.server_address[1]}"), "b", connect_timeout=2,
                      read_timeout=2)
        assert d.get("objects/ab/cd") is None
        assert not d.enabled
        assert d.get("objects/ab/cd") is None  # off: no request sent
    finally:
        server.shutdown()
        server.server_close()


def test_failures_in_a_row_turn_the_path_off():
    (port,) = free_ports(1)  # nothing listens there
    d = DirectGet(_Signer(f"http://127.0.0.1:{port}"), "b", connect_timeout=1, read_timeout=1)
    for _ in range(MAX_FAILURES_IN_A_ROW):
        assert d.enabled
        assert d.get("objects/ab/cd") is None
    assert not d.enabled


def test_a_proxy_boto3_would_use_keeps_the_path_out(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    assert DirectGet._proxied("http", "s3.example.com")
    monkeypatch.setenv("NO_PROXY", "s3.example.com")
    monkeypatch.setenv("no_proxy", "s3.example.com")
    assert not DirectGet._proxied("http", "s3.example.com")


def test_turned_off_by_the_environment(store, monkeypatch):
    monkeypatch.setenv("CKPTVC_S3_DIRECT_GET", "0")
    s = S3Store.from_url(store.url, endpoint_url=store.endpoint_url)
    try:
        key = okey("env")
        s.write(key, b"abc")
        assert s.read(key) == b"abc"
        assert s.direct.gets == 0 and not s.direct.enabled
    finally:
        s.close()


def test_wrong_credentials_are_still_reported_by_boto3(s3_server, monkeypatch):
    """Whatever the direct path gets, an error a user must see comes from boto3."""
    s = S3Store.from_url(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", endpoint_url=s3_server.endpoint)
    try:
        with pytest.raises((RemoteError, KeyError)):
            s.read(okey("anything"))
    finally:
        s.close()
