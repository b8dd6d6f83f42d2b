#!/usr/bin/env python3
"""Per-tensor-group breakdown of what a ckptvc repository stores for one artifact's
versions: weights, exp_avg, exp_avg_sq, small grouped tensors, other bytes, and
"unchanged" (chunks identical to the previous version, stored once).

    python bench/breakdown.py REPO [PATH] [--json OUT]

Reads manifests and object sizes from REPO's cache (the stored form as it is now:
older versions are deltas against newer ones, the newest is standalone)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from ckptvc.objects.objectdb import ObjectDB, object_key
from ckptvc.repo import Repo

GROUPS = ("weights", "exp_avg", "exp_avg_sq", "small tensors", "other", "unchanged")


def group_of(label: str) -> str:
    name = label.split("#", 1)[0]
    if name.startswith("group:"):
        return "small tensors"
    if name.startswith(("gap", "cdc")):
        return "other"
    if name.endswith("exp_avg_sq"):
        return "exp_avg_sq"
    if name.endswith("exp_avg"):
        return "exp_avg"
    return "weights"


def breakdown(repo_path: str, path: str | None) -> dict:
    with Repo.open(repo_path) as repo:
        entries = repo.log(str(repo.root / path) if path else None)
        if not entries:
            raise SystemExit(f"{repo_path}: no artifact versions" + (f" for {path}" if path else ""))
        target = entries[0].path
        versions = sorted((e for e in entries if e.path == target), key=lambda e: e.date)
        db = ObjectDB(repo.cache)
        rows = []
        prev: set[str] = set()
        totals = defaultdict(lambda: [0, 0])
        for k, e in enumerate(versions):
            m = db.get_manifest(e.manifest)
            chunks = [c for f in m.files for c in f.chunks]
            sizes = repo.cache.sizes([object_key(c.id) for c in chunks])
            row = defaultdict(lambda: [0, 0])
            for c in chunks:
                g = "unchanged" if c.id in prev else group_of(c.label)
                stored = 0 if c.id in prev else sizes.get(object_key(c.id), 0)
                row[g][0] += c.size
                row[g][1] += stored
                totals[g][0] += c.size
                totals[g][1] += stored
            prev = {c.id for c in chunks}
            rows.append({"version": k, "commit": e.commit[:10], "groups": {g: row[g] for g in GROUPS if g in row}})
        return {"artifact": target, "versions": rows, "totals": {g: totals[g] for g in GROUPS if g in totals}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("path", nargs="?")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    doc = breakdown(a.repo, a.path)
    print(f"{doc['artifact']}: logical MiB / stored MiB (stored/logical) per tensor group")
    header = f"{'version':>8} " + " ".join(f"{g:>24}" for g in GROUPS)
    print(header)
    for r in doc["versions"]:
        cells = []
        for g in GROUPS:
            lg, st = r["groups"].get(g, [0, 0])
            cells.append(f"{lg / 2**20:7.1f}/{st / 2**20:6.1f} ({st / lg:4.2f})" if lg else f"{'-':>24}")
        print(f"{r['version']:>8} " + " ".join(f"{c:>24}" for c in cells))
    cells = []
    for g in GROUPS:
        lg, st = doc["totals"].get(g, [0, 0])
        cells.append(f"{lg / 2**20:7.1f}/{st / 2**20:6.1f} ({st / lg:4.2f})" if lg else f"{'-':>24}")
    print(f"{'all':>8} " + " ".join(f"{c:>24}" for c in cells))
    lg = sum(v[0] for v in doc["totals"].values())
    st = sum(v[1] for v in doc["totals"].values())
    print(f"total: {lg / 2**20:.1f} MiB logical, {st / 2**20:.1f} MiB stored: {st / lg:.3f}x raw ({lg / st:.3f}x smaller)")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
