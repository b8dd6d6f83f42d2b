"""Whole-object GETs outside botocore (ckptvc/stores/s3_direct.py), against the real S3
servers of s3servers.py: the bytes round-trip, only objects go that way, anything but a
plain 200 is handed back to boto3 (which reports it as before), and the path turns
itself off where it cannot work (a redirect, failures in a row, a proxy)."""

from __future__ import annotations

import contextlib
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
        assert type(got) is bytes and got == data
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


@contextlib.contextmanager
def _serving(handler, tls=None):
    """A stub HTTP(S) server on 127.0.0.1 answering with `handler`; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_turns_the_path_off():
    with _serving(_Stub) as base:
        d = DirectGet(_Signer(base), "b", connect_timeout=2, read_timeout=2)
        assert d.get("objects/ab/cd") is None
        assert not d.enabled
        assert d.get("objects/ab/cd") is None  # off: no request sent


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


def test_a_missing_bucket_is_still_reported_by_boto3(s3_server):
    """The direct path passes a 404 on: the user gets boto3's one-line error, not a KeyError."""
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    s = S3Store.from_url(f"s3://{bucket}/x", endpoint_url=s3_server.endpoint)
    try:
        with pytest.raises(RemoteError, match=f"bucket '{bucket}' does not exist"):
            s.read(okey("anything"))
        assert s.direct.enabled  # a 404 says nothing against the path
    finally:
        s.close()


class _Busy(_Stub):
    status = 503


class _NoSigner:
    def generate_presigned_url(self, *args, **kwargs):
        raise RuntimeError("no credentials")


def test_a_server_error_is_passed_on_without_turning_the_path_off():
    with _serving(_Busy) as base:
        d = DirectGet(_Signer(base), "b", connect_timeout=2, read_timeout=2)
        for _ in range(MAX_FAILURES_IN_A_ROW + 1):
            assert d.get("objects/ab/cd") is None  # boto3 retries a 503
        assert d.enabled


def test_a_url_that_cannot_be_signed_turns_the_path_off():
    d = DirectGet(_NoSigner(), "b", connect_timeout=1, read_timeout=1)
    assert d.get("objects/ab/cd") is None
    assert not d.enabled


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    pytest.importorskip("cryptography")  # a dependency of moto[server]
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class _Body(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = rand_bytes(300_000, 42)

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("ETag", '"abc"')
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_https_is_verified_with_the_ca_bundle_boto3_would_use(tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path, "server")
    other_ca, _ = _self_signed(tmp_path, "someone-else")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with _serving(_Body, ctx) as base:
        trusted = DirectGet(_Signer(base), "b", connect_timeout=2, read_timeout=5, ca_bundle=cert)
        for _ in range(3):  # the connection is kept and used again
            data, total, etag = trusted.get("objects/ab/cd")
            assert data == _Body.body and total == len(_Body.body) and etag == '"abc"'
        data, total, _ = trusted.get("objects/ab/cd", limit=1000)
        assert data == _Body.body[:1000] and total == len(_Body.body)
        assert trusted.gets == 4 and trusted.enabled

        stranger = DirectGet(_Signer(base), "b", connect_timeout=2, read_timeout=5, ca_bundle=other_ca)
        for _ in range(MAX_FAILURES_IN_A_ROW):
            assert stranger.get("objects/ab/cd") is None  # the certificate is not trusted: boto3's turn
        assert not stranger.enabled and stranger.gets == 0
