"""Whole-object GETs of an S3 store's objects, outside botocore's request machinery.

A pull downloads hundreds of objects of a few MiB each. Through boto3 each GET cost
4.1 ms of client CPU per 2 MiB here, 8 at a time (request building, signing, event hooks,
urllib3's body reads), against 2.6-2.7 ms for the same GET signed by the same client
(`generate_presigned_url`) and read with http.client over a keep-alive connection per
thread, the body read straight into one bytes object (bench/floors.py --s3). On a 2 GiB
pull that was 1-1.9 CPU-s.

This path only ever answers the common case: a 200 with a Content-Length, read whole.
Anything else (another status, a connection or protocol error, a short body) returns
None and the store issues the request through boto3, which reports errors, retries and
parses error bodies as it always did. Statuses that mean this path itself is wrong for
the endpoint (a redirect, 400, 403, ...) turn it off for the store, and so do a few
failures in a row; so does a proxy that boto3 would use. Reading the bytes this way
changes nothing about their checking: every object's envelope carries a blake3 of its
payload that every reader verifies (ckptvc.objects.objectdb.read_checked).
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import urllib.request
from typing import Any
from urllib.parse import urlsplit

PRESIGN_SECONDS = 900
MAX_FAILURES_IN_A_ROW = 4
# Statuses after which boto3's own answer is wanted for this request, but that say
# nothing against this path: a missing key, throttling, a server error.
_PASS_ON = {404, 429, 500, 502, 503, 504}


class _NotHere(Exception):
    """The response is one for boto3 to handle."""


class DirectGet:
    """GETs of whole S3 objects over http.client, one keep-alive connection per thread.

    `client` is the store's boto3 client (it signs the URL with the store's credentials,
    region and addressing style); `ca_bundle` the CA file for https (botocore's own
    when None)."""

    def __init__(self, client: Any, bucket: str, *, connect_timeout: float, read_timeout: float,
                 ca_bundle: str | None = None):
        self._client = client
        self._bucket = bucket
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ca_bundle = ca_bundle
        self._local = threading.local()
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._failures = 0
        self.enabled = os.environ.get("CKPTVC_S3_DIRECT_GET", "1") not in ("0", "no", "false")
        self.gets = 0  # answered here (for tests and the bench's accounting)

    def get(self, s3key: str, limit: int | None = None) -> tuple[bytes, int, str | None] | None:
        """(the body, or its first `limit` bytes; the object's length; its ETag), or
        None when boto3 should answer this request."""
        if not self.enabled:
            return None
        try:
            url = urlsplit(self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": s3key}, ExpiresIn=PRESIGN_SECONDS))
        except Exception:  # noqa: BLE001 - no credentials, a bad config: boto3 says what is wrong
            self._turn_off()
            return None
        if url.scheme not in ("http", "https") or not url.hostname or self._proxied(url.scheme, url.hostname):
            self._turn_off()
            return None
        target = url.path + ("?" + url.query if url.query else "")
        for fresh in (False, True):
            conn, reused = self._connection(url.scheme, url.hostname, url.port, fresh)
            try:
                return self._get_on(conn, target, limit)
            except _NotHere:
                return None
            except (OSError, http.client.HTTPException, ValueError):
                self._drop(conn)
                if reused and not fresh:
                    continue  # a kept-alive connection the server had closed: once more on a new one
                with self._lock:
                    self._failures += 1
                    if self._failures >= MAX_FAILURES_IN_A_ROW:
                        self._turn_off()
                return None
        return None

    def _get_on(self, conn: http.client.HTTPConnection, target: str,
                limit: int | None) -> tuple[bytes, int, str | None]:
        if conn.sock is None:
            conn.connect()
            conn.sock.settimeout(self._read_timeout)
        conn.request("GET", target, headers={"User-Agent": "ckptvc"})
        resp = conn.getresponse()
        if resp.status != 200:
            self._drop(conn)
            if resp.status not in _PASS_ON:
                self._turn_off()
            raise _NotHere()
        length = resp.getheader("Content-Length")
        if length is None or resp.getheader("Content-Encoding", "identity") != "identity" or resp.chunked:
            self._drop(conn)
            self._turn_off()
            raise _NotHere()
        total = int(length)
        want = total if limit is None else min(limit, total)
        data = resp.read(want)  # one bytes object, read into from the socket
        if len(data) != want:
            raise http.client.IncompleteRead(data, want - len(data))
        if want < total:
            self._drop(conn)  # the rest of the body is not wanted: the connection cannot be reused
        etag = resp.getheader("ETag")
        with self._lock:
            self._failures = 0
            self.gets += 1
        return data, total, etag

    def close(self) -> None:
        """Close the calling thread's connections (a pool's threads take theirs with them)."""
        conns = getattr(self._local, "conns", None)
        if conns:
            for conn in conns.values():
                conn.close()
            conns.clear()

    # ------------------------------------------------------------ plumbing

    def _turn_off(self) -> None:
        self.enabled = False

    @staticmethod
    def _proxied(scheme: str, host: str) -> bool:
        """Whether boto3 would send this request through a proxy (HTTP(S)_PROXY minus
        NO_PROXY): this path does not speak to proxies, so it stays out of the way."""
        return scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)

    def _connection(self, scheme: str, host: str, port: int | None,
                    fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to (scheme, host, port), and whether it was used
        before; a new one when `fresh`. Connecting happens on first use, in _get_on."""
        conns: dict | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (scheme, host, port)
        conn = None if fresh else conns.get(key)
        if conn is not None:
            return conn, True
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self._connect_timeout, context=self._ssl_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._connect_timeout)
        conns[key] = conn
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        conns = getattr(self._local, "conns", {})
        for key, c in list(conns.items()):
            if c is conn:
                del conns[key]

    def _ssl_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                cafile = self._ca_bundle
                if cafile is None:
                    from botocore.httpsession import get_cert_path

                    cafile = get_cert_path(True)
                self._ssl = ssl.create_default_context(cafile=cafile)
            return self._ssl
