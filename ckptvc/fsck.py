"""fsck: is every object that any pointer in history references present, whole and
right, in the cache or on a remote? With repair, heal what is not from another copy.

Levels: presence and header sanity (default); with read_data, the stored bytes'
checksum and the decoded content against its id (all objects, or a random sample).
Nothing is ever deleted; a repair writes a copy, verified against its id, over a
missing or corrupt one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ckptvc.errors import CkptvcError, CorruptObjectError
from ckptvc.objects import envelope
from ckptvc.objects.objectdb import ObjectDB, check_envelope, info_of, object_key
from ckptvc.parallel import ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress
from ckptvc.stores.base import Store


@dataclass
class Problem:
    object: str
    needed_by: str  # "path@commit"
    problem: str

    def to_dict(self) -> dict:
        return {"object": self.object, "needed_by": self.needed_by, "problem": self.problem}


@dataclass
class FsckReport:
    store: str
    versions: int = 0
    objects: int = 0
    checked_data: int = 0
    missing: list[Problem] = field(default_factory=list)
    corrupt: list[Problem] = field(default_factory=list)
    bad_pointers: list[str] = field(default_factory=list)
    repaired: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.bad_pointers)

    def to_dict(self) -> dict:
        return {"store": self.store, "ok": self.ok, "versions": self.versions, "objects": self.objects,
                "checked_data": self.checked_data, "missing": [p.to_dict() for p in self.missing],
                "corrupt": [p.to_dict() for p in self.corrupt], "bad_pointers": self.bad_pointers,
                "repaired": [p.to_dict() for p in self.repaired]}


def referenced_versions(repo) -> tuple[dict[str, str], list[str]]:
    """manifest id -> "path@commit" for every pointer in history and the workspace,
    and the pointers that do not parse."""
    versions, bad = repo.git.pointer_versions(repo.git.walk_commits())
    try:
        for t in repo.tracked():
            versions.setdefault(t.pointer.manifest, f"{t.path}@workspace")
    except CkptvcError as exc:
        bad.append(str(exc))
    return versions, bad


def fsck(repo, store: Store, read_data: bool = False, sample_pct: float = 100.0, repair: bool = False,
         jobs: int = 4, progress: Progress = NULL_PROGRESS, seed: int | None = None) -> FsckReport:
    report = _check(repo, store, read_data, sample_pct, jobs, progress, seed)
    repaired: list[Problem] = []
    # a repaired manifest reveals the chunks it names: check again until nothing heals
    while repair and (report.missing or report.corrupt):
        _repair(repo, store, report)
        if not report.repaired:
            break
        repaired += report.repaired
        report = _check(repo, store, read_data, sample_pct, jobs, progress, seed)
    report.repaired = repaired
    return report


def _check(repo, store: Store, read_data: bool, sample_pct: float, jobs: int, progress: Progress,
           seed: int | None) -> FsckReport:
    report = FsckReport(store.url)
    versions, report.bad_pointers = referenced_versions(repo)
    report.versions = len(versions)
    db = ObjectDB(store)  # no fallbacks: this store is judged alone
    needed_by: dict[str, str] = {}
    bad: set[str] = set()

    def flag(kind: list[Problem], oid: str, where: str, problem: str) -> None:
        if oid not in bad:
            bad.add(oid)
            kind.append(Problem(oid, where, problem))

    manifests = sorted(versions)
    absent = db.missing(manifests)
    for m in manifests:
        needed_by.setdefault(m, versions[m])
        if m in absent:
            flag(report.missing, m, versions[m], "manifest missing")
            continue
        try:
            for c in db.get_manifest(m).chunk_ids():
                needed_by.setdefault(c, versions[m])
        except CkptvcError as exc:
            flag(report.corrupt, m, versions[m], str(exc))
    frontier = set(needed_by) - bad
    while frontier:  # delta bases, read from the headers in this store
        gone = db.missing(frontier)
        nxt: set[str] = set()
        for oid in sorted(frontier):
            if oid in gone:
                flag(report.missing, oid, needed_by[oid], "object missing")
                continue
            try:
                head = store.read_prefix(object_key(oid), envelope.HEADER_SIZE + 64)
                base = info_of(head, f"{store.url}: object {oid[:12]}").base
            except (CorruptObjectError, KeyError) as exc:
                flag(report.corrupt, oid, needed_by[oid], str(exc))
                continue
            if base and base not in needed_by:
                needed_by[base] = needed_by[oid]
                nxt.add(base)
        frontier = nxt
    report.objects = len(needed_by)
    if read_data:
        ids = sorted(set(needed_by) - bad)
        if sample_pct < 100 and ids:
            ids = sorted(random.Random(seed).sample(ids, max(1, round(len(ids) * sample_pct / 100))))
        progress.start("fsck read data", len(ids))

        def verify(oid: str) -> str | None:
            try:
                check_envelope(store.read(object_key(oid)), f"{store.url}: object {oid[:12]}")
                db.get_raw(oid)
                return None
            except (CkptvcError, KeyError) as exc:
                return str(exc)

        for oid, problem in zip(ids, ordered_map(verify, ids, jobs), strict=True):
            report.checked_data += 1
            if problem:
                flag(report.corrupt, oid, needed_by[oid], problem)
            progress.advance("fsck read data", 1)
        progress.finish("fsck read data")
    return report


def _other_copies(repo, target: Store) -> list[Store]:
    copies: list[Store] = []
    if repo.cache.url != target.url and repo.cache.root.exists():
        copies.append(repo.cache)
    for name in repo.config.remotes:
        _, store = repo.remote_store(name)
        if store.url != target.url:
            copies.append(store)
    return copies


def _good_copy(oid: str, copies: list[Store]) -> bytes | None:
    """Stored bytes from another store whose content proves to be `oid`."""
    for store in copies:
        try:
            data = store.read(object_key(oid))
            check_envelope(data, f"{store.url}: object {oid[:12]}")
            ObjectDB(store).get_raw(oid)  # decodes with that store's bases, checks the id
            return data
        except (KeyError, CkptvcError):
            continue
    return None


def _repair(repo, store: Store, report: FsckReport) -> None:
    copies = _other_copies(repo, store)
    for kind in (report.missing, report.corrupt):
        left = []
        for p in kind:
            data = _good_copy(p.object, copies)
            if data is None:
                left.append(p)
                continue
            store.replace(object_key(p.object), data)
            # another store's encoding may be a delta on a base this store lacks
            base = info_of(data, p.object).base
            while base and not store.exists(object_key(base)):
                base_data = _good_copy(base, copies)
                if base_data is None:
                    break
                store.write(object_key(base), base_data)
                base = info_of(base_data, base).base
            report.repaired.append(p)
        kind[:] = left
    store.sync()
