"""Bytes per artifact version: logical size against what the cache holds for it."""

from __future__ import annotations

import time

from ckptvc.errors import CkptvcError
from ckptvc.objects.objectdb import ObjectDB, object_key


def disk_usage(repo) -> tuple[list[dict], dict]:
    db = ObjectDB(repo.cache)
    rows = []
    logical_total = 0
    for e in sorted(repo.log(), key=lambda e: (e.path, e.date)):
        stored = needs = 0
        in_cache = db.has(e.manifest)
        if in_cache:
            try:
                own = db.get_manifest(e.manifest).chunk_ids() | {e.manifest}
                stored = sum(repo.cache.sizes([object_key(o) for o in own]).values())
                needs = sum(repo.cache.sizes([object_key(o) for o in db.closure(own)]).values())
            except CkptvcError:
                in_cache = False
        logical_total += e.size
        rows.append({"path": e.path, "commit": e.commit, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.date)),
                     "manifest": e.manifest, "logical": e.size, "stored": stored, "needs": needs,
                     "added": e.stored_bytes,
                     "in_cache": in_cache})
    cache_bytes = sum(n for n in repo.cache.sizes(repo.cache.list("objects/")).values()) if repo.cache.root.exists() else 0
    return rows, {"logical": logical_total, "cache_bytes": cache_bytes, "versions": len(rows)}
