"""Moving objects between stores: push and fetch, verified, resumable.

Order keeps an invariant that status and resumption rely on: a manifest is
written to a store only after every object it needs is there. An interrupted
transfer leaves whole objects only (stores write atomically), and the next run
moves just what is still missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ckptvc.errors import CorruptObjectError, MissingObjectError, RemoteError
from ckptvc.ids import hash_bytes
from ckptvc.objects import codecs, envelope
from ckptvc.objects.manifest import Manifest
from ckptvc.objects.objectdb import ObjectDB, info_of, object_key, read_checked
from ckptvc.parallel import ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress
from ckptvc.stores.base import Store
from ckptvc.stores.local import LocalStore


@dataclass
class TransferStats:
    objects: int = 0
    bytes: int = 0
    skipped: int = 0


def copy_objects(src: Store, dst: Store, oids: Iterable[str], jobs: int, progress: Progress, task: str,
                 stats: TransferStats, replace: bool = False, link: bool = False) -> list[str]:
    """Copy objects verbatim, checking each envelope before it is written. Returns the
    delta bases the copied objects name. replace=True overwrites (re-coded objects).
    link=True lets a local cache share the file of a local remote on the same
    filesystem (fetch only: a remote must stay an independent copy, so push copies)."""
    oids = sorted(set(oids))
    if not oids:
        return []
    sizes = src.sizes([object_key(o) for o in oids])  # one listing or stat pass: totals for the bar
    progress.start(task, sum(sizes.values()))

    linkable = link and isinstance(src, LocalStore) and src.lends_to(dst)

    def one(oid: str) -> tuple[int, str | None]:
        key = object_key(oid)
        if linkable and not replace:
            # Same filesystem: share the remote's file. No byte moves, so none can be
            # damaged in transit; content is proven against its id when decoded.
            try:
                linked = dst.link_from(src, key)
            except KeyError:
                raise MissingObjectError(f"object {oid[:12]} is missing from {src.url}") from None
            if linked is not None:
                head = dst.read_prefix(key, envelope.HEADER_SIZE + 64)
                return linked, info_of(head, f"{dst.url}: object {oid[:12]}").base
        try:
            data, info = read_checked(src, key, f"{src.url}: object {oid[:12]}")
        except KeyError:
            raise MissingObjectError(f"object {oid[:12]} is missing from {src.url}") from None
        if replace:
            dst.replace(key, data)
        else:
            dst.write(key, data)
        return len(data), info.base

    bases = []
    for size, base in ordered_map(one, oids, jobs, window=jobs * 4):
        stats.objects += 1
        stats.bytes += size
        if base:
            bases.append(base)
        progress.advance(task, size)
    progress.finish(task)
    return bases


def decode_manifest_bytes(data: bytes, oid: str, where: str) -> Manifest:
    env = envelope.unpack(data, where)

    def no_base(_: str) -> bytes:
        raise CorruptObjectError(f"{where}: manifest must not be delta-coded")

    raw = codecs.decode(env.codec, env.params, env.payload, env.raw_size, where, no_base)
    if hash_bytes(raw) != oid:
        raise CorruptObjectError(f"{where}: manifest content does not match its id")
    return Manifest.from_bytes(bytes(raw), where)


def push(db: ObjectDB, remote: Store, manifest_ids: Iterable[str], jobs: int,
         progress: Progress = NULL_PROGRESS, recoded: set[str] | None = None) -> TransferStats:
    """Send what `manifest_ids` need. Three phases, each safe to interrupt:
    1. objects the remote lacks (with every delta base they name);
    2. objects re-coded smaller in the cache since the remote got them (their bases
       are there after phase 1, so a reader never meets a delta without its base);
    3. manifests, last: a manifest on a remote means its objects are all there."""
    stats = TransferStats()
    manifest_ids = sorted(set(manifest_ids))
    todo = db.missing(manifest_ids, remote)
    stats.skipped = len(manifest_ids) - len(todo)
    chunks: set[str] = set()
    for mid in manifest_ids:
        if not db.has(mid):
            raise MissingObjectError(f"manifest {mid[:12]} is not in the cache; nothing to push for it")
        chunks |= db.get_manifest(mid).chunk_ids()
    try:
        needed = db.closure(chunks)
        missing = db.missing(needed, remote)
        bases = copy_objects(db.cache, remote, missing, jobs, progress, "push objects", stats)
        # an object re-coded by a concurrent add between the closure and the copy
        # names a base the closure did not see: send bases until none is missing (the
        # closure's own objects are known to be there: just sent, or found present)
        there = set(needed)
        while wanted := db.missing(set(bases) - there, remote):
            there |= wanted
            bases = copy_objects(db.cache, remote, wanted, jobs, progress, "push objects", stats)
        # what the remote had before this push may have been re-coded smaller since;
        # what this push just sent is the cache's current form
        candidates = sorted((needed - missing) | _present(db, remote, (recoded or set()) - needed))
        smaller = _smaller_in_cache(db, remote, candidates)
        if smaller:
            bases = db.closure(set(smaller)) - set(smaller)
            copy_objects(db.cache, remote, db.missing(bases, remote), jobs, progress, "push objects", stats)
            copy_objects(db.cache, remote, smaller, jobs, progress, "push re-coded objects", stats, replace=True)
        remote.sync()
        copy_objects(db.cache, remote, todo, jobs, progress, "push manifests", stats)
        remote.sync()
    except OSError as exc:
        raise RemoteError(f"{remote.url}: push failed: {exc}") from exc
    return stats


def _present(db: ObjectDB, store: Store, oids: set[str] | None) -> set[str]:
    if not oids:
        return set()
    return set(oids) - db.missing(oids, store)


def _smaller_in_cache(db: ObjectDB, remote: Store, oids: list[str]) -> list[str]:
    if not oids:
        return []
    keys = {object_key(o): o for o in oids}
    local = db.cache.sizes(keys)
    there = remote.sizes(keys)
    return [o for k, o in keys.items() if k in local and k in there and local[k] < there[k]]


def read_manifests(remote: Store, manifest_ids: Iterable[str]) -> dict[str, tuple[bytes, Manifest]]:
    """Manifests read from a remote and checked against their ids, not stored: a
    manifest enters the cache only after every object it needs (see fetch)."""
    out = {}
    for mid in sorted(set(manifest_ids)):
        try:
            data = remote.read(object_key(mid))
        except KeyError:
            raise MissingObjectError(f"manifest {mid[:12]} is not on remote {remote.url}") from None
        except OSError as exc:
            raise RemoteError(f"{remote.url}: fetch failed: {exc}") from exc
        out[mid] = (data, decode_manifest_bytes(data, mid, f"{remote.url}: manifest {mid[:12]}"))
    return out


def fetch(db: ObjectDB, remote: Store, manifest_ids: Iterable[str], jobs: int,
          progress: Progress = NULL_PROGRESS, manifests: dict[str, tuple[bytes, Manifest]] | None = None,
          complete: set[str] | frozenset[str] = frozenset()) -> TransferStats:
    """Bring what `manifest_ids` need into the cache, manifests last. `manifests`:
    ones already read with read_manifests (a streaming pull), not read again.
    `complete`: objects known to be in the cache with their whole delta chains (the
    ones a streaming restore decoded): not looked at again."""
    stats = TransferStats()
    manifest_ids = sorted(set(manifest_ids))
    todo = db.missing(manifest_ids)
    stats.skipped = len(manifest_ids) - len(todo)
    if not todo:
        return stats
    known = dict(manifests or {})
    known.update(read_manifests(remote, [m for m in todo if m not in known]))
    fetched_manifests: dict[str, bytes] = {}
    chunks: set[str] = set()
    for mid in todo:
        data, manifest = known[mid]
        chunks |= manifest.chunk_ids()
        fetched_manifests[mid] = data
    try:
        # the closure follows delta bases through what the cache already has and
        # stops at what it lacks; the bases of those are learnt as they arrive
        wanted = db.missing(db.closure(chunks, complete=complete))
        while wanted:
            bases = copy_objects(remote, db.cache, wanted, jobs, progress, "fetch objects", stats, link=True)
            wanted = db.missing(set(bases))
        db.cache.sync()
        for mid, data in fetched_manifests.items():
            info_of(data, mid)
            db.cache.write(object_key(mid), data)
            stats.objects += 1
            stats.bytes += len(data)
        db.cache.sync()
    except OSError as exc:
        raise RemoteError(f"{remote.url}: fetch failed: {exc}") from exc
    return stats
