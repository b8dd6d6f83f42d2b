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
from ckptvc.objects.objectdb import ObjectDB, check_envelope, info_of, object_key
from ckptvc.parallel import ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress
from ckptvc.stores.base import Store


@dataclass
class TransferStats:
    objects: int = 0
    bytes: int = 0
    skipped: int = 0


def copy_objects(src: Store, dst: Store, oids: Iterable[str], jobs: int, progress: Progress, task: str,
                 stats: TransferStats) -> list[str]:
    """Copy objects verbatim, checking each envelope before it is written. Returns the
    delta bases the copied objects name."""
    oids = sorted(set(oids))
    if not oids:
        return []
    progress.start(task, len(oids))

    def one(oid: str) -> tuple[int, str | None]:
        key = object_key(oid)
        try:
            data = src.read(key)
        except KeyError:
            raise MissingObjectError(f"object {oid[:12]} is missing from {src.url}") from None
        info = check_envelope(data, f"{src.url}: object {oid[:12]}")
        dst.write(key, data)
        return len(data), info.base

    bases = []
    for size, base in ordered_map(one, oids, jobs, window=jobs * 4):
        stats.objects += 1
        stats.bytes += size
        if base:
            bases.append(base)
        progress.advance(task, 1)
    progress.finish(task)
    return bases


def decode_manifest_bytes(data: bytes, oid: str, where: str) -> Manifest:
    env = envelope.unpack(data, where)

    def no_base(_: str) -> bytes:
        raise CorruptObjectError(f"{where}: manifest must not be delta-coded")

    raw = codecs.decode(env.codec, env.params, env.payload, env.raw_size, where, no_base)
    if hash_bytes(raw) != oid:
        raise CorruptObjectError(f"{where}: manifest content does not match its id")
    return Manifest.from_bytes(raw, where)


def _with_bases(db: ObjectDB, store: Store, oids: set[str]) -> set[str]:
    return db.closure(oids, store)


def push(db: ObjectDB, remote: Store, manifest_ids: Iterable[str], jobs: int,
         progress: Progress = NULL_PROGRESS) -> TransferStats:
    stats = TransferStats()
    manifest_ids = sorted(set(manifest_ids))
    todo = db.missing(manifest_ids, remote)
    stats.skipped = len(manifest_ids) - len(todo)
    if not todo:
        return stats
    chunks: set[str] = set()
    for mid in todo:
        if not db.has(mid):
            raise MissingObjectError(f"manifest {mid[:12]} is not in the cache; nothing to push for it")
        chunks |= db.get_manifest(mid).chunk_ids()
    needed = _with_bases(db, db.cache, chunks)
    try:
        missing = db.missing(needed, remote)
        copy_objects(db.cache, remote, missing, jobs, progress, "push objects", stats)
        copy_objects(db.cache, remote, todo, jobs, progress, "push manifests", stats)
    except OSError as exc:
        raise RemoteError(f"{remote.url}: push failed: {exc}") from exc
    return stats


def fetch(db: ObjectDB, remote: Store, manifest_ids: Iterable[str], jobs: int,
          progress: Progress = NULL_PROGRESS) -> TransferStats:
    stats = TransferStats()
    manifest_ids = sorted(set(manifest_ids))
    todo = db.missing(manifest_ids)
    stats.skipped = len(manifest_ids) - len(todo)
    if not todo:
        return stats
    fetched_manifests: dict[str, bytes] = {}
    chunks: set[str] = set()
    for mid in todo:
        key = object_key(mid)
        try:
            data = remote.read(key)
        except KeyError:
            raise MissingObjectError(f"manifest {mid[:12]} is not on remote {remote.url}") from None
        chunks |= decode_manifest_bytes(data, mid, f"{remote.url}: manifest {mid[:12]}").chunk_ids()
        fetched_manifests[mid] = data
    try:
        wanted = db.missing(chunks)
        # delta bases present in the cache may still name bases of their own
        for oid in chunks - wanted:
            base = db.info(oid).base
            if base:
                wanted |= db.missing(db.closure({base}))
        while wanted:
            bases = copy_objects(remote, db.cache, wanted, jobs, progress, "fetch objects", stats)
            wanted = db.missing(set(bases))
        for mid, data in fetched_manifests.items():
            info_of(data, mid)
            db.cache.write(object_key(mid), data)
            stats.objects += 1
            stats.bytes += len(data)
    except OSError as exc:
        raise RemoteError(f"{remote.url}: fetch failed: {exc}") from exc
    return stats
