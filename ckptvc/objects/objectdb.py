"""ObjectDB: content-addressed objects over stores, every read verified.

Reads try the cache first, then each remote in order (hot to cold); an object read
from a remote is checked and kept in the cache. A raw read decodes delta chains
and proves the result against the id; nothing unverified is ever returned.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ckptvc.errors import CkptvcError, CorruptObjectError, MissingObjectError
from ckptvc.ids import hash_bytes, is_valid_id
from ckptvc.objects import envelope
from ckptvc.objects.manifest import Manifest
from ckptvc.stores.base import Store
from ckptvc.stores.local import LocalStore

OBJECTS_PREFIX = "objects/"


def object_key(oid: str) -> str:
    if not is_valid_id(oid):
        raise CorruptObjectError(f"invalid object id {oid!r}")
    return f"{OBJECTS_PREFIX}{oid[:2]}/{oid[2:]}"


def key_to_id(key: str) -> str | None:
    if not key.startswith(OBJECTS_PREFIX):
        return None
    rest = key[len(OBJECTS_PREFIX):]
    oid = rest.replace("/", "")
    return oid if is_valid_id(oid) and rest[2:3] == "/" else None


@dataclass(frozen=True)
class ObjectInfo:
    codec: int
    raw_size: int
    base: str | None
    depth: int


def info_of(data: bytes | memoryview, where: str) -> ObjectInfo:
    codec, raw_size, params, _ = envelope.parse_header(data, where)
    return ObjectInfo(codec, raw_size, envelope.delta_base(codec, params), envelope.chain_depth(codec, params))


def check_envelope(data: bytes, where: str) -> ObjectInfo:
    """Verify stored bytes without decoding: header sane and payload checksum right."""
    env = envelope.unpack(data, where)
    return ObjectInfo(env.codec, env.raw_size, envelope.delta_base(env.codec, env.params),
                      envelope.chain_depth(env.codec, env.params))


def read_checked(store: Store, key: str, where: str, attempts: int = 5) -> tuple[bytes, ObjectInfo]:
    """Read an object's stored bytes and check its envelope (header and payload
    checksum), reading again when they arrive damaged: bytes that fail in transit
    differ on the next read; bytes damaged at rest fail every time and are reported."""
    for attempt in range(attempts):
        data = store.read(key)
        try:
            return data, check_envelope(data, where)
        except CorruptObjectError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class _RawCache:
    """A small LRU of verified raw objects, bounded in bytes: chunks of consecutive
    versions share delta bases, and decoding a base twice costs a whole chain."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0
        self.items: OrderedDict[str, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, oid: str) -> bytes | None:
        with self.lock:
            data = self.items.get(oid)
            if data is not None:
                self.items.move_to_end(oid)
            return data

    def put(self, oid: str, data: memoryview) -> None:
        if len(data) > self.max_bytes // 4:
            return
        with self.lock:
            if oid in self.items:
                return
            self.items[oid] = data
            self.used += len(data)
            while self.used > self.max_bytes:
                _, old = self.items.popitem(last=False)
                self.used -= len(old)


class ObjectDB:
    def __init__(self, cache: Store, remotes: Sequence[Store] = (), raw_cache_bytes: int = 32 << 20):
        self.cache = cache
        self.remotes = list(remotes)
        self._raw = _RawCache(raw_cache_bytes)
        # > 0: a restore's prefetcher reads objects missing from the cache through from
        # the remotes, this many at once, ahead of the decoders (a streaming pull)
        self.fetch_ahead_jobs = 0
        # ids decoded here, so in the cache with every base of their chains (a read
        # through stores what it reads): a fetch after a restore need not walk them again
        self.decoded: set[str] = set()
        # objects being read through from a remote: one reader fetches, others wait
        self._inflight: dict[str, threading.Event] = {}
        self._inflight_lock = threading.Lock()

    # ------------------------------------------------------------ presence

    def has(self, oid: str) -> bool:
        return self.cache.exists(object_key(oid))

    def missing(self, oids: Iterable[str], store: Store | None = None) -> set[str]:
        store = store or self.cache
        wanted = {object_key(o): o for o in oids}
        present = store.exists_many(wanted)
        return {o for k, o in wanted.items() if k not in present}

    def info(self, oid: str) -> ObjectInfo:
        """Header facts from the cache copy (no payload read)."""
        key = object_key(oid)
        try:
            head = self.cache.read_prefix(key, envelope.HEADER_SIZE + 64)
        except KeyError:
            raise MissingObjectError(f"object {oid[:12]} is not in the cache") from None
        return info_of(head, f"{self.cache.url}: object {oid[:12]}")

    # ------------------------------------------------------------ writing

    def put_encoded(self, oid: str, enc, raw_size: int) -> bool:
        """Store an encoded form (codecs.Encoded) of the object `oid`."""
        return self.cache.write(object_key(oid), envelope.pack_parts(enc.codec, raw_size, enc.params, enc.parts))

    def replace_encoded(self, oid: str, enc, raw_size: int) -> None:
        """Swap the stored form of an object already present (same content, same id)."""
        self.cache.replace(object_key(oid), envelope.pack_parts(enc.codec, raw_size, enc.params, enc.parts))

    def stored_size(self, oid: str) -> int | None:
        return self.cache.size(object_key(oid))

    def put_raw(self, data: bytes, width: int = 1, level: int = 3) -> str:
        from ckptvc.objects import codecs

        oid = hash_bytes(data)
        if not self.has(oid):
            self.put_encoded(oid, codecs.encode_standalone(data, width, level), len(data))
        return oid

    def put_manifest(self, manifest: Manifest) -> str:
        """Write a manifest after everything it names is durable, and make it durable."""
        self.cache.sync()
        oid = self.put_raw(manifest.to_bytes(), 1, 19)
        self.cache.sync()
        return oid

    # ------------------------------------------------------------ reading

    def read_stored(self, oid: str, verify: bool = True, skip_cache: bool = False, once: bool = False) -> bytes:
        """The envelope bytes of an object: from the cache, else from a remote (checked,
        then kept in the cache). verify=False skips the payload checksum of a cache copy,
        for callers that prove the decoded content against its id anyway. once=True:
        a streaming reader that will not come back for it (see Store.read_once)."""
        key = object_key(oid)
        errors: list[str] = []
        claim = None
        try:
            if not skip_cache:
                data = self._read_cached(oid, key, verify, once, errors)
                if data is not None:
                    return data
                if not errors and self.remotes:
                    # another thread may have read it through since the miss, or be doing
                    # so now (then this waits for it): look in the cache again either way
                    claim = self._claim(oid)
                    # a local remote lends its file: then the cache has it, and it is
                    # read (and, if corrupt, healed from a remote) like any cache copy
                    self.link_in(oid)
                    data = self._read_cached(oid, key, verify, once, errors)
                    if data is not None:
                        return data
            return self._read_remotes(oid, key, errors, skip_cache)
        finally:
            self._release(oid, claim)

    def _release(self, oid: str, claim: threading.Event | None) -> None:
        if claim is not None:
            with self._inflight_lock:
                del self._inflight[oid]
            claim.set()

    def _read_cached(self, oid: str, key: str, verify: bool, once: bool, errors: list[str]) -> bytes | None:
        try:
            data = self.cache.read_once(key) if once else self.cache.read(key)
            if verify:
                check_envelope(data, f"{self.cache.url}: object {oid[:12]}")
            return data
        except KeyError:
            return None
        except CorruptObjectError as exc:
            if not self.remotes:
                raise
            errors.append(str(exc))
            return None

    def link_in(self, oid: str) -> bool:
        """Give the cache the file of a local remote (on the same filesystem) holding
        `oid`, as a hard link: no byte is copied, so none can be damaged in transit,
        and what is read from it is proven like any cache copy (a corrupt one is
        replaced by rename, never rewritten: the remote's file stays as it was). True
        when the cache has it now through a link (made here or before); False when no
        local remote can lend it (then it is read through)."""
        key = object_key(oid)
        for remote in self.remotes:
            if not (isinstance(remote, LocalStore) and remote.lends_to(self.cache)):
                continue
            try:
                if self.cache.link_from(remote, key) is not None:
                    return True
            except KeyError:
                continue
        return False

    def _claim(self, oid: str) -> threading.Event | None:
        """The right to read `oid` through from a remote (an event to set when done), or
        None after waiting for the thread that had it: one GET per object, however many
        decoders and prefetchers want it at once."""
        with self._inflight_lock:
            busy = self._inflight.get(oid)
            if busy is None:
                claim = self._inflight[oid] = threading.Event()
                return claim
        busy.wait()
        return None

    def _read_remotes(self, oid: str, key: str, errors: list[str], skip_cache: bool) -> bytes:
        for remote in self.remotes:
            try:
                data, _ = read_checked(remote, key, f"{remote.url}: object {oid[:12]}")
            except KeyError:
                continue
            except CorruptObjectError as exc:
                errors.append(str(exc))
                continue
            if errors or skip_cache:
                self.cache.replace(key, data)  # the cache copy was proven bad: heal it
            else:
                self.cache.write(key, data)
            return data
        if errors:
            raise CorruptObjectError(errors[0])
        where = ", ".join([self.cache.url] + [r.url for r in self.remotes])
        raise MissingObjectError(f"object {oid[:12]} is missing (looked in {where})")

    def get_raw(self, oid: str, verify: bool = True, once: bool = False) -> memoryview:
        """The verified raw content of an object, decoding its delta chain.

        Only the final content is hashed: a wrong base can only give a wrong result
        (XOR and addition are bijections), which the id check catches. Then the chain
        is decoded again, every level verified (and healed from a remote when one
        has a good copy), to name the corrupt object or to get the right content."""
        cached = self._raw.get(oid)
        if cached is not None:
            self.decoded.add(oid)
            return cached
        if not verify:
            # the caller proves the content some other way (a whole-file hash)
            raw = self._decode(oid, [], verify=False, once=once)
            self.decoded.add(oid)
            return raw
        chain: list[tuple[str, memoryview]] = []
        try:
            raw = self._decode(oid, chain, verify=False, once=once)
            ok = hash_bytes(raw) == oid
        except CorruptObjectError:
            ok = False
        if not ok:
            chain = []
            raw = self._decode(oid, chain, verify=True)
        for base_id, base_raw in chain:
            self._raw.put(base_id, base_raw)
        self.decoded.add(oid)
        return raw

    def _decode(self, oid: str, chain: list[tuple[str, memoryview]], verify: bool, once: bool = False) -> memoryview:
        from ckptvc.objects import codecs

        if len(chain) > 256:
            raise CorruptObjectError(f"object {oid[:12]}: delta chain too deep or cyclic")
        cached = self._raw.get(oid)
        if cached is not None:
            return cached
        where = f"object {oid[:12]}"

        def base_raw(base: str) -> memoryview:
            data = self._decode(base, chain, verify, once)
            chain.append((base, data))
            return data

        def attempt(data: bytes) -> memoryview:
            env = envelope.unpack(data, where, check=verify)
            # unverified (the caller hashes the result): a split delta reads only the
            # high halves along its chain; verified: every base is decoded and proven
            base_top = None if verify else (lambda base: self._top16(base, len(chain) + 1, once))
            raw = codecs.decode(env.codec, env.params, env.payload, env.raw_size, where, base_raw, base_top)
            if verify and hash_bytes(raw) != oid:
                raise CorruptObjectError(f"{where}: content does not match its id (corrupt object or delta base)")
            return raw

        try:
            return attempt(self.read_stored(oid, verify=verify, once=once))
        except CorruptObjectError:
            if not (verify and self.remotes):
                raise
            return attempt(self.read_stored(oid, verify=True, skip_cache=True))

    # the first read of an object whose high halves are wanted: its header, and for
    # a split delta usually its whole HI part
    _TOP_HEAD = 128 << 10

    def _top16(self, oid: str, depth: int, once: bool):
        """The high 16 bits of each 32-bit element of an object, unverified (for a
        caller that hashes what it builds from them), reading as little as it can:
        the HI part of a split delta, the two high planes of a standalone object."""
        from ckptvc.objects import codecs

        if depth > 256:
            raise CorruptObjectError(f"object {oid[:12]}: delta chain too deep or cyclic")
        cached = self._raw.get(oid)
        if cached is not None:
            return codecs.top16(cached)
        key = object_key(oid)
        where = f"object {oid[:12]}"
        try:
            head = self.cache.read_prefix(key, self._TOP_HEAD)
        except KeyError:
            head = None  # not in the cache: read it through (from a remote)
            if self.link_in(oid):
                head = self.cache.read_prefix(key, self._TOP_HEAD)
        if head is not None:
            codec, raw_size, params, off = envelope.parse_header(head, where)
            if raw_size % 4 == 0 and codec == codecs.SPLIT_SUB and len(params) == 35:
                hi_len = codecs.split_hi_length(head[off:off + 4], where)
                hi = head[off + 4 : off + 4 + hi_len]
                if len(hi) < hi_len:
                    hi += self.cache.read_range(key, off + 4 + len(hi), hi_len - len(hi))
                if len(hi) != hi_len:
                    raise CorruptObjectError(f"{where}: truncated split payload")
                return codecs.split_top16(params, hi, raw_size, where, self._top16(params[:32].hex(), depth + 1, once))
            if raw_size % 4 == 0 and codec == codecs.PLANES and params == bytes([4]):
                pos = self._high_planes_offset(key, head, off, where)
                return codecs.top16_of_planes(self.cache.read_range(key, pos, None), raw_size, where, first_plane=2)
        return codecs.top16(self._decode(oid, [], verify=False, once=once))

    def _high_planes_offset(self, key: str, head: bytes, off: int, where: str) -> int:
        """Where plane 2 of a width-4 planes object starts (the two low planes are skipped
        by their headers)."""
        pos = off
        for _ in range(2):
            h = head[pos : pos + 5]
            if len(h) < 5:
                h = self.cache.read_range(key, pos, 5)
            if len(h) != 5:
                raise CorruptObjectError(f"{where}: truncated plane header")
            pos += 5 + int.from_bytes(h[1:5], "little")
        return pos

    def prefetch(self, oid: str) -> None:
        """Start reading a cached object in the background (a hint: nothing is checked
        or reported here)."""
        self.cache.prefetch(object_key(oid))

    def prefetch_chain(self, oid: str, max_depth: int = 64, once: bool = False) -> None:
        """Start reading an object and what a decode of it reads of its delta bases:
        whole bases, or only the parts that split deltas need (a hint only: errors end
        it, the real reads check everything). once: the decode reads whole objects with
        read_once (get_raw(once=True)). In a streaming pull (fetch_ahead_jobs), objects
        missing from the cache are read through into it instead."""
        from ckptvc.objects import codecs

        whole = True
        for _ in range(max_depth):
            key = object_key(oid)
            try:
                if self.fetch_ahead_jobs and self.remotes and not self.cache.exists(key) and not self.link_in(oid):
                    # just written by the read: its pages are in memory, nothing to prefetch
                    head = self.read_stored(oid)[: envelope.HEADER_SIZE + 64]
                    codec, _, params, _ = envelope.parse_header(head, oid)
                else:
                    head = self.cache.read_prefix(key, envelope.HEADER_SIZE + 64)
                    codec, _, params, off = envelope.parse_header(head, oid)
                    if whole:
                        self.cache.prefetch(key, once=once)
                    elif codec == codecs.SPLIT_SUB and len(head) >= off + 4:
                        self.cache.prefetch(key, 0, off + 4 + int.from_bytes(head[off:off + 4], "little"))
                    elif codec == codecs.PLANES and params == bytes([4]):
                        self.cache.prefetch(key, self._high_planes_offset(key, head, off, oid))
                    else:
                        self.cache.prefetch(key, once=once)
            except (KeyError, CkptvcError, OSError):
                return  # the decoder's own read reports it
            base = envelope.delta_base(codec, params)
            if not base:
                return
            whole = whole and codec != codecs.SPLIT_SUB
            oid = base

    def get_manifest(self, oid: str) -> Manifest:
        return Manifest.from_bytes(bytes(self.get_raw(oid)), f"manifest {oid[:12]}")

    # ------------------------------------------------------------ closure

    def closure(self, oids: Iterable[str], store: Store | None = None,
                complete: set[str] | frozenset[str] = frozenset()) -> set[str]:
        """Every object needed to decode `oids` in `store`: the objects and the delta
        bases their stored forms name, read from headers in that store. Objects in
        `complete` are known to be in the store with their whole chains: they are left
        out, and so is what only they need."""
        store = store or self.cache
        seen: set[str] = set()
        todo = [o for o in oids if o not in complete]
        while todo:
            oid = todo.pop()
            if oid in seen or oid in complete:
                continue
            seen.add(oid)
            try:
                head = store.read_prefix(object_key(oid), envelope.HEADER_SIZE + 64)
            except KeyError:
                continue
            base = info_of(head, f"{store.url}: object {oid[:12]}").base
            if base and base not in seen:
                todo.append(base)
        return seen
