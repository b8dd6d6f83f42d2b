"""Lineage: artifact versions in git history, as a networkx graph, and the queries
over them (show, log --where/--sort, lineage, diff).

Everything is read from git (pointer blobs in every commit reachable from any
branch, tag or remote ref, plus the work tree's pointers) and from metadata
objects committed under `.ckptvc/meta/`: no query reads the cache or a remote.

Node ids are stable:
  ckpt:<path>@<blake3[:12]>      a tracked artifact version (checkpoint, tokenizer,
                                 tracked dataset or config; its `type` says which)
  dataset:<uri>@<digest>         a dataset outside the repository
  config:<path>@<blake3[:12]>    a config file stored as a metadata object
  code:<sha>                     a code commit
Edges point the way data flows: from an input to the version made from it, with
`rel` one of parent, dataset, tokenizer, config, code.

Scanning history costs one tree diff per commit; the result is cached per commit
(commits are immutable) in `.ckptvc/state/history-v1.json`, so queries over
thousands of versions read one JSON file and the refs.
"""

from __future__ import annotations

import ast
import contextlib
import heapq
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ckptvc.errors import CkptvcError, UserInputError
from ckptvc.pointer import MAX_POINTER_SIZE, Pointer

HISTORY_CACHE = "history-v1.json"
_CACHE_VERSION = 1
INPUT_RELS = ("parent", "dataset", "tokenizer", "config")
RELS = (*INPUT_RELS, "code")


def version_id(path: str, blake3: str) -> str:
    return f"ckpt:{path}@{blake3[:12]}"


def iso(ts: float | int | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ------------------------------------------------------------ edges of one version


@dataclass(frozen=True)
class Edge:
    source: str  # the input
    target: str  # the version made from it
    rel: str
    source_type: str
    source_attrs: tuple = ()  # (key, value) pairs describing the input node
    attrs: tuple = ()  # (key, value) pairs on the edge


def _ref_node(rel: str, ref: Any) -> tuple[str, str, dict] | None:
    """(node id, node type, attrs) for a metadata reference, or None when unusable."""
    if not isinstance(ref, dict):
        return None
    path, b3 = ref.get("path"), ref.get("blake3")
    if not isinstance(path, str) or not path:
        return None
    if rel == "dataset" and isinstance(ref.get("digest"), str) and not isinstance(b3, str):
        return f"dataset:{path}@{ref['digest']}", "dataset", {"uri": path, "digest": ref["digest"]}
    if not isinstance(b3, str) or len(b3) < 12:
        return None
    attrs = {"path": path, "blake3": b3}
    if isinstance(ref.get("manifest"), str):
        attrs["manifest"] = ref["manifest"]
        return version_id(path, b3), ("checkpoint" if rel == "parent" else rel), attrs
    if rel == "parent":
        return version_id(path, b3), "checkpoint", attrs
    if rel == "config":
        return f"config:{path}@{b3[:12]}", "config", attrs
    return version_id(path, b3), rel, attrs


def edges_of(path: str, ptr: Pointer, legacy_parent: str | None = None) -> list[Edge]:
    """The lineage edges a version's pointer records. `legacy_parent` is the blake3 of
    the previous version at the same path, used only for pointers written before
    metadata (schema 1) existed."""
    vid = version_id(path, ptr.blake3)
    meta = ptr.meta
    out: list[Edge] = []
    for rel in INPUT_RELS:
        node = _ref_node(rel, meta.get(rel))
        if node is None:
            continue
        nid, ntype, nattrs = node
        eattrs = {"implicit": True} if rel == "parent" and meta[rel].get("implicit") else {}
        out.append(Edge(nid, vid, rel, ntype, tuple(sorted(nattrs.items())), tuple(sorted(eattrs.items()))))
    if "parent" not in meta and "schema" not in meta and legacy_parent and legacy_parent != ptr.blake3:
        out.append(Edge(version_id(path, legacy_parent), vid, "parent", "checkpoint",
                        (("blake3", legacy_parent), ("path", path)), (("implicit", True),)))
    code = meta.get("code")
    if isinstance(code, dict) and isinstance(code.get("commit"), str) and code["commit"]:
        dirty = code.get("dirty")
        out.append(Edge(f"code:{code['commit']}", vid, "code", "code", (("commit", code["commit"]),),
                        (("dirty", dirty),) if isinstance(dirty, bool) else ()))
    return out


# ------------------------------------------------------------ commit trailers

TRAILER_VERSION = "Ckptvc-Version"
TRAILER_EDGE = "Ckptvc-Edge"


def _q(text: str) -> str:
    return text.replace("%", "%25").replace(" ", "%20").replace("\t", "%09").replace("\n", "%0A").replace(
        "\r", "%0D")


def _unq(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def trailers_for(path: str, ptr: Pointer) -> list[str]:
    """Trailer lines naming a version a commit adds, and its edges: git history alone
    (`git log`) rebuilds the lineage graph from these."""
    vid = version_id(path, ptr.blake3)
    lines = [f"{TRAILER_VERSION}: {_q(vid)} manifest={ptr.manifest}"]
    for e in edges_of(path, ptr):
        lines.append(f"{TRAILER_EDGE}: {_q(e.source)} {e.rel} {_q(e.target)}")
    return lines


def strip_trailers(message: str) -> str:
    """A commit message without the lineage trailers ckptvc appended."""
    lines = message.rstrip().splitlines()
    while lines and lines[-1].startswith((f"{TRAILER_VERSION}: ", f"{TRAILER_EDGE}: ")):
        lines.pop()
    return "\n".join(lines).strip()


def parse_trailers(message: str) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """([(version id, manifest)], [(source, rel, target)]) from a commit message."""
    versions, edges = [], []
    for line in message.splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        parts = value.strip().split(" ")
        if key == TRAILER_VERSION and len(parts) == 2 and parts[1].startswith("manifest="):
            versions.append((_unq(parts[0]), parts[1][len("manifest="):]))
        elif key == TRAILER_EDGE and len(parts) == 3:
            edges.append((_unq(parts[0]), parts[1], _unq(parts[2])))
    return versions, edges


# ------------------------------------------------------------ history


@dataclass
class Version:
    path: str
    pointer: Pointer
    commit: str | None  # the commit that introduced it; None: only in the work tree
    time: int
    message: str
    prev_blob: str | None = None  # pointer blob of the version before it at this path
    in_worktree: bool = False

    @property
    def id(self) -> str:
        return version_id(self.path, self.pointer.blake3)

    @property
    def meta(self) -> dict:
        return self.pointer.meta

    def summary(self) -> dict:
        p = self.pointer
        return {"id": self.id, "path": self.path, "kind": p.kind, "size": p.size, "blake3": p.blake3,
                "manifest": p.manifest, "stored_bytes": p.stored_bytes, "commit": self.commit,
                "date": iso(self.time), "message": self.message, "committed": self.commit is not None}


class History:
    """Every artifact version reachable from any ref (and in the work tree)."""

    def __init__(self, repo, include_worktree: bool = True):
        self.repo = repo
        self.include_worktree = include_worktree
        self.git = repo.git
        self.cache_path = repo.dir / "state" / HISTORY_CACHE
        self.commits: dict[str, dict] = {}  # sha -> {"t": time, "p": parents, "m": message, "c": changes}
        self.blobs: dict[str, str | None] = {}  # pointer blob sha -> text (None: not a pointer)
        self.tags: dict[str, str] = {}  # tag object sha -> commit sha
        self._pointers: dict[str, Pointer | None] = {}
        self._changed = False
        self._read_ahead: dict = {}
        self.heads: list[str] = []
        self.order: list[str] = []  # reachable commits, parents before children
        self.position: dict[str, int] = {}
        self._versions: dict[str, Version] | None = None
        self._graph = None

    @classmethod
    def load(cls, repo, include_worktree: bool = True) -> History:
        h = cls(repo, include_worktree)
        h._read_cache()
        h.scan()
        h._save_cache()
        return h

    # -- cache

    def _read_cache(self) -> None:
        try:
            doc = json.loads(self.cache_path.read_bytes())
            if doc.get("v") != _CACHE_VERSION:
                return
            self.commits = doc["commits"]
            self.blobs = doc["blobs"]
            self.tags = doc.get("tags", {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.commits, self.blobs, self.tags = {}, {}, {}

    def _save_cache(self) -> None:
        if not self._changed:
            return
        from ckptvc.stores.local import atomic_write_file

        doc = {"v": _CACHE_VERSION, "commits": self.commits, "blobs": self.blobs, "tags": self.tags}
        with contextlib.suppress(OSError):
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_file(self.cache_path, json.dumps(doc, separators=(",", ":")).encode())
        self._changed = False

    # -- walking

    def ref_heads(self) -> list[str]:
        out = []
        for ref, sha in sorted(self.git.repo.get_refs().items()):
            if not (ref == b"HEAD" or ref.startswith((b"refs/heads/", b"refs/tags/", b"refs/remotes/"))):
                continue
            commit = self.peel(sha.decode())
            if commit:
                out.append(commit)
        return out

    def peel(self, sha: str) -> str | None:
        """The commit a ref's object names (annotated tags peeled), or None."""
        if sha in self.commits:
            return sha
        if sha in self.tags:
            return self.tags[sha]
        store = self.git.repo.object_store
        obj_sha = sha
        try:
            obj = store[sha.encode()]
            while obj.type_name == b"tag":
                obj_sha = obj.object[1].decode()
                obj = store[obj.object[1]]
        except KeyError:
            return None
        if obj.type_name != b"commit":
            return None
        if obj_sha != sha:
            self.tags[sha] = obj_sha
            self._changed = True
        return obj_sha

    def scan(self, extra: Iterable[str] = ()) -> None:
        self.heads = self.ref_heads()
        heads = list(dict.fromkeys([*self.heads, *extra]))
        # iterative post-order DFS: parents before children, deterministic
        order: list[str] = []
        seen: set[str] = set()
        for head in heads:
            if head in seen:
                continue
            stack: list[tuple[str, bool]] = [(head, False)]
            while stack:
                sha, expanded = stack.pop()
                if expanded:
                    order.append(sha)
                    continue
                if sha in seen:
                    continue
                info = self.commits.get(sha) or self._index_commit(sha)
                if info is None:
                    continue
                seen.add(sha)
                stack.append((sha, True))
                for parent in reversed(info["p"]):
                    if parent not in seen:
                        stack.append((parent, False))
        self.order = order
        self._read_ahead.clear()
        self.position = {sha: i for i, sha in enumerate(order)}
        self._versions = None
        self._graph = None

    def _index_commit(self, sha: str) -> dict | None:
        from dulwich.diff_tree import tree_changes
        from dulwich.object_store import tree_lookup_path

        store = self.git.repo.object_store
        try:
            c = self._read_ahead.pop(sha, None) or store[sha.encode()]
        except KeyError:
            return None  # shallow clone or missing object: history stops here
        if c.type_name != b"commit":
            return None
        parents = [p.decode() for p in c.parents]
        parent_trees = []
        for p in c.parents:
            try:
                pc = store[p]
                if p.decode() not in self.commits:
                    self._read_ahead[p.decode()] = pc  # indexed next: read each commit once
                parent_trees.append(pc.tree)
            except KeyError:
                parent_trees.append(None)
        changes = []
        base = parent_trees[0] if parent_trees else None
        for ch in tree_changes(store, base, c.tree):
            new = ch.new
            if new is None or new.path is None or not new.path.endswith(b".ckpt"):
                continue
            if new.mode is None or new.mode & 0o170000 != 0o100000:
                continue
            if len(parent_trees) > 1:
                same = False
                for other in parent_trees[1:]:
                    if other is None:
                        continue
                    with contextlib.suppress(KeyError, NotADirectoryError):
                        if tree_lookup_path(store.__getitem__, other, new.path)[1] == new.sha:
                            same = True
                            break
                if same:
                    continue  # brought in by a merge: introduced on the other branch
            old = ch.old
            old_sha = old.sha.decode() if old is not None and old.sha is not None and old.path == new.path else None
            blob = new.sha.decode()
            self._blob_text(blob)
            changes.append([new.path.decode("utf-8", "surrogateescape"), blob, old_sha])
        info = {"t": c.commit_time, "p": parents, "m": c.message.decode("utf-8", "replace"), "c": changes}
        self.commits[sha] = info
        self._changed = True
        return info

    def _blob_text(self, blob: str) -> str | None:
        if blob in self.blobs:
            return self.blobs[blob]
        text = None
        try:
            data = self.git.repo.object_store[blob.encode()].data
            if len(data) <= MAX_POINTER_SIZE:
                text = data.decode("utf-8")
        except (KeyError, UnicodeDecodeError, AttributeError):
            text = None
        self.blobs[blob] = text
        self._changed = True
        return text

    def pointer(self, blob: str | None, where: str = "") -> Pointer | None:
        if blob is None:
            return None
        if blob in self._pointers:
            return self._pointers[blob]
        text = self._blob_text(blob)
        ptr = None
        if text is not None:
            with contextlib.suppress(CkptvcError):
                ptr = Pointer.from_bytes(text.encode("utf-8"), where or blob)
        self._pointers[blob] = ptr
        return ptr

    # -- versions

    def versions(self) -> dict[str, Version]:
        if self._versions is not None:
            return self._versions
        out: dict[str, Version] = {}
        for sha in self.order:
            info = self.commits[sha]
            for path, blob, old in info["c"]:
                ptr = self.pointer(blob, f"{path}@{sha[:8]}")
                if ptr is None:
                    continue
                vid = version_id(path[: -len(".ckpt")], ptr.blake3)
                v = out.get(vid)
                if v is None:
                    out[vid] = Version(path[: -len(".ckpt")], ptr, sha, info["t"], strip_trailers(info["m"]), old)
                else:
                    v.pointer = ptr  # a later commit re-annotated it: newest metadata wins
        if self.include_worktree:
            for t in self._worktree():
                vid = version_id(t.path, t.pointer.blake3)
                v = out.get(vid)
                if v is None:
                    try:
                        mtime = int(os.stat(self.repo.root / t.pointer_path).st_mtime)
                    except OSError:
                        mtime = int(time.time())
                    out[vid] = Version(t.path, t.pointer, None, mtime, "", None, True)
                else:
                    v.in_worktree = True
                    if v.pointer.to_bytes() != t.pointer.to_bytes():
                        v.pointer = t.pointer
        self._save_cache()
        self._versions = out
        return out

    def _worktree(self):
        """The work tree's pointers; a malformed one is skipped here (the commands that
        act on it name it), so one bad file does not hide the rest."""
        from ckptvc.workspace import find_pointer_files, load_tracked

        out = []
        with contextlib.suppress(CkptvcError, OSError):
            for pf in find_pointer_files(self.repo.root):
                with contextlib.suppress(CkptvcError):
                    out.extend(load_tracked(self.repo.root, [pf]))
        return out

    def legacy_parent(self, v: Version) -> str | None:
        if "schema" in v.meta or "parent" in v.meta or v.prev_blob is None:
            return None
        prev = self.pointer(v.prev_blob)
        return prev.blake3 if prev is not None else None

    def walk_log(self, head: str) -> list[tuple[str, str, str, str | None]]:
        """(commit, path, blob, previous blob) introduced by each commit reachable from
        `head`, newest first (commit date order, children before parents)."""
        if head not in self.commits:
            self.scan([head])
        out = []
        heap = [(-self.commits[head]["t"], 0, head)] if head in self.commits else []
        seen = {head}
        seq = 1
        while heap:
            _, _, sha = heapq.heappop(heap)
            info = self.commits[sha]
            for path, blob, old in info["c"]:
                out.append((sha, path[: -len(".ckpt")], blob, old))
            for p in info["p"]:
                if p not in seen and p in self.commits:
                    seen.add(p)
                    heapq.heappush(heap, (-self.commits[p]["t"], seq, p))
                    seq += 1
        self._save_cache()
        return out

    # -- graph

    def graph(self):
        """networkx DiGraph of every version and every input it names."""
        if self._graph is not None:
            return self._graph
        import networkx as nx

        g = nx.DiGraph()
        versions = self.versions()
        for v in versions.values():
            g.add_node(v.id, **_version_attrs(v))
        for v in versions.values():
            for e in edges_of(v.path, v.pointer, self.legacy_parent(v)):
                if e.source not in g:
                    attrs = dict(e.source_attrs)
                    # known: False marks a version named as an input but not in any history
                    attrs.update({"type": e.source_type, "known": not e.source.startswith("ckpt:")})
                    g.add_node(e.source, **attrs)
                g.add_edge(e.source, e.target, rel=e.rel, **dict(e.attrs))
        for src, _, d in g.edges(data=True):
            if d["rel"] in ("dataset", "tokenizer", "config") and src.startswith("ckpt:"):
                g.nodes[src]["type"] = d["rel"]
        self._graph = g
        return g


def _version_attrs(v: Version) -> dict:
    p = v.pointer
    attrs: dict[str, Any] = {"type": "checkpoint", "path": v.path, "blake3": p.blake3, "manifest": p.manifest,
                             "kind": p.kind, "size": p.size, "commit": v.commit, "date": iso(v.time),
                             "known": True, "committed": v.commit is not None}
    if v.message:
        attrs["message"] = v.message.splitlines()[0]
    if isinstance(p.meta.get("metrics"), dict):
        attrs["metrics"] = p.meta["metrics"]
    if "seed" in p.meta:
        attrs["seed"] = p.meta["seed"]
    return attrs


# ------------------------------------------------------------ resolving REF


def resolve_version(repo, history: History, ref: str) -> Version:
    """A version named by: a node id (ckpt:PATH@B3), PATH@REV, PATH@BLAKE3-PREFIX,
    PATH (the work tree's version, else the newest), a ckptvc tag, or a revision
    holding exactly one artifact."""
    versions = history.versions()
    problem = f"{ref}: not an artifact version (give PATH, PATH@REV, a ckptvc tag or a version id)"
    if ref.startswith("ckpt:"):
        hits = [v for vid, v in versions.items() if vid == ref or vid.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        raise UserInputError(f"{ref}: {'ambiguous' if hits else 'no such'} artifact version")
    if "@" in ref:
        path_part, rev = ref.rsplit("@", 1)
        rel = _artifact_rel(repo, path_part)
        if rel is not None and rev:
            commit = repo.git.resolve(rev)
            if commit is not None:
                blobs = dict(repo.git.pointer_blobs(commit))
                data = blobs.get(rel + ".ckpt")
                if data is None:
                    raise UserInputError(f"{ref}: {rel} is not tracked at {rev}")
                ptr = Pointer.from_bytes(data, f"{rel}.ckpt@{rev}")
                return _version_for(history, rel, ptr)
            hits = [v for v in versions.values() if v.path == rel and v.pointer.blake3.startswith(rev.lower())]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise UserInputError(f"{ref}: {rev!r} names {len(hits)} versions of {rel}; give more of the hash")
            # perhaps '@' is part of the path: try the whole of it below, else say this
            problem = f"{ref}: {rev!r} is neither a revision nor a version of {rel}"
    rel = _artifact_rel(repo, ref)
    if rel is not None:
        pf = repo.root / (rel + ".ckpt")
        if pf.is_file():
            from ckptvc.pointer import read_pointer

            return _version_for(history, rel, read_pointer(pf, rel + ".ckpt"))
        head = repo.git.head()
        if head is not None:
            data = dict(repo.git.pointer_blobs(head)).get(rel + ".ckpt")
            if data is not None:
                return _version_for(history, rel, Pointer.from_bytes(data, f"{rel}.ckpt@HEAD"))
        hits = [v for v in versions.values() if v.path == rel]
        if hits:
            return max(hits, key=lambda v: (v.time, history.position.get(v.commit or "", 1 << 30)))
    from ckptvc import tags

    record = tags.local_tag(repo, ref)
    if record is not None:
        targets = [a for a in record.artifacts if a["role"] == "target"]
        if len(targets) == 1:
            return _version_for_ref(history, targets[0]["path"], targets[0]["blake3"], ref)
        raise UserInputError(f"{ref}: tag names {len(targets)} artifacts; name one as PATH@{ref}")
    commit = repo.git.resolve(ref)
    if commit is not None:
        blobs = list(repo.git.pointer_blobs(commit))
        if len(blobs) == 1:
            path, data = blobs[0]
            return _version_for(history, path[:-5], Pointer.from_bytes(data, f"{path}@{ref}"))
        raise UserInputError(f"{ref}: revision holds {len(blobs)} artifacts; name one as PATH@{ref}")
    raise UserInputError(problem)


def _artifact_rel(repo, raw: str) -> str | None:
    try:
        p = repo._abs(raw)
    except UserInputError:
        return None
    rel = repo._rel(p)
    if rel.endswith(".ckpt"):
        rel = rel[:-5]
    return rel or None


def _version_for(history: History, path: str, ptr: Pointer) -> Version:
    v = history.versions().get(version_id(path, ptr.blake3))
    if v is not None:
        return v
    return Version(path, ptr, None, int(time.time()), "")


def _version_for_ref(history: History, path: str, blake3: str, ref: str) -> Version:
    v = history.versions().get(version_id(path, blake3))
    if v is None:
        raise UserInputError(f"{ref}: version {version_id(path, blake3)} is not in this repository's history")
    return v


# ------------------------------------------------------------ lineage views


def lineage_subgraph(g, root: str, ancestors: bool = True, descendants: bool = True):
    import networkx as nx

    keep = {root}
    if ancestors:
        keep |= nx.ancestors(g, root)
    if descendants:
        keep |= nx.descendants(g, root)
    return g.subgraph(keep).copy()


def to_json(g, root: str) -> dict:
    nodes = []
    for nid in sorted(g.nodes):
        d = {"id": nid}
        d.update({k: v for k, v in g.nodes[nid].items() if v is not None})
        nodes.append(d)
    edges = []
    for s, t in sorted(g.edges):
        d = {"source": s, "target": t}
        d.update(g.edges[s, t])
        edges.append(d)
    return {"root": root, "nodes": nodes, "edges": edges}


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DOT_SHAPES = {"checkpoint": "box", "dataset": "cylinder", "tokenizer": "component", "config": "note",
               "code": "hexagon"}


def to_dot(g, root: str) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for nid in sorted(g.nodes):
        d = g.nodes[nid]
        shape = _DOT_SHAPES.get(d.get("type", ""), "ellipse")
        extra = ", style=bold" if nid == root else ""
        lines.append(f"  {_dot_id(nid)} [label={_dot_id(short_label(nid))}, shape={shape}{extra}];")
    for s, t in sorted(g.edges):
        lines.append(f"  {_dot_id(s)} -> {_dot_id(t)} [label={_dot_id(g.edges[s, t]['rel'])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_graphml(g) -> str:
    import networkx as nx

    h = nx.DiGraph()

    def clean(d: dict) -> dict:
        out = {}
        for k, v in d.items():
            if v is None:
                continue
            out[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
        return out

    for nid in sorted(g.nodes):
        h.add_node(nid, **clean(g.nodes[nid]))
    for s, t in sorted(g.edges):
        h.add_edge(s, t, **clean(g.edges[s, t]))
    return "\n".join(nx.generate_graphml(h)) + "\n"


def short_label(nid: str) -> str:
    if nid.startswith("code:"):
        return "code:" + nid[5:15]
    return nid


def tree(g, root: str, direction: str = "ancestors", collapse: int = 3) -> dict:
    """Nested {"id", "rel", "type", "children", "repeat"}: a node's inputs
    (ancestors) or the versions made from it (descendants). Repeats are cut, and a
    run of more than `collapse` versions at one path (implicit parent edges) is one
    node {"id": None, "collapsed": n, "path", "first", "last"} whose children are the
    inputs of the hidden versions not shown elsewhere (code commits left out) and the
    run's far end. Nothing else is hidden: a version branching off the run (an
    explicit parent edge) still shows under the collapsed node."""
    seen: set[str] = set()

    def nbrs(nid: str) -> list[tuple[int, str, str, dict]]:
        if direction == "ancestors":
            pairs = [(n, g.edges[n, nid]) for n in g.predecessors(nid)]
        else:
            pairs = [(n, g.edges[nid, n]) for n in g.successors(nid)]
        return sorted((RELS.index(e["rel"]) if e["rel"] in RELS else 99, n, e["rel"], e) for n, e in pairs)

    def chain_next(nid: str) -> str | None:
        nxt = [n for _, n, r, e in nbrs(nid) if r == "parent" and e.get("implicit")]
        return nxt[0] if len(nxt) == 1 else None

    def build(nid: str, rel: str | None, skip: str | None = None) -> dict:
        node = {"id": nid, "rel": rel, "type": g.nodes[nid].get("type"), "children": [], "repeat": nid in seen}
        if nid in seen:
            return node
        seen.add(nid)
        for _, n, r, e in nbrs(nid):
            if n == skip:
                continue
            if r == "parent" and e.get("implicit") and n not in seen:
                chain = [n]
                while (nxt := chain_next(chain[-1])) is not None and nxt not in seen and nxt not in chain:
                    chain.append(nxt)
                if len(chain) > collapse + 1:
                    hidden = chain[1:-1]
                    head = build(n, r, skip=chain[1])
                    seen.update(hidden)
                    extra: dict[str, str] = {}
                    for h in hidden:
                        for _, m, rr, ee in nbrs(h):
                            if rr == "code" or (rr == "parent" and ee.get("implicit")) or m in seen:
                                continue
                            extra.setdefault(m, rr)
                    run = {"id": None, "rel": "parent", "type": "run", "collapsed": len(hidden),
                           "path": g.nodes[n].get("path"), "first": hidden[0], "last": hidden[-1],
                           "children": [build(m, rr) for m, rr in sorted(extra.items())], "repeat": False}
                    run["children"].append(build(chain[-1], "parent"))
                    head["children"].append(run)
                    node["children"].append(head)
                    continue
            node["children"].append(build(n, r))
        return node

    return build(root, None)


# ------------------------------------------------------------ show, diff


def show(repo, history: History, v: Version) -> dict:
    g = history.graph()
    doc = v.summary()
    doc["meta"] = v.meta
    inputs, used_by = [], []
    if v.id in g:
        for s in sorted(g.predecessors(v.id)):
            inputs.append({"rel": g.edges[s, v.id]["rel"], "id": s, "type": g.nodes[s].get("type")})
        for t in sorted(g.successors(v.id)):
            used_by.append({"rel": g.edges[v.id, t]["rel"], "id": t})
    doc["lineage"] = {"inputs": inputs, "used_by": used_by}
    from ckptvc import tags

    doc["tags"] = sorted(tags.tags_by_version(repo).get(v.id, []))
    return doc


def load_tensor_table(repo, v: Version) -> tuple[dict | None, str]:
    """(table, source): from the metadata object in git, else (versions without one)
    from a manifest already in the local cache, else (None, "none")."""
    from ckptvc import metadata

    tensors = v.meta.get("tensors")
    oid = tensors.get("table") if isinstance(tensors, dict) else None
    if isinstance(oid, str):
        data = metadata.read_meta_object(repo.git, oid, [v.commit.encode()] if v.commit else [])
        if data is not None:
            table = metadata.parse_tensor_table(data)
            if table is not None:
                return table, "metadata"
    if "schema" not in v.meta:
        from ckptvc.objects.objectdb import ObjectDB

        db = ObjectDB(repo.cache)
        with contextlib.suppress(CkptvcError, OSError):
            if db.has(v.pointer.manifest):
                return metadata.table_from_manifest(db.get_manifest(v.pointer.manifest)), "manifest"
    return None, "none"


def diff(repo, history: History, a: Version, b: Version) -> dict:
    from ckptvc import metadata

    fields = {}
    sa, sb = a.summary(), b.summary()
    for key in ("path", "kind", "size", "stored_bytes", "blake3", "manifest", "commit"):
        if sa[key] != sb[key]:
            fields[key] = [sa[key], sb[key]]
    fa, fb = metadata.flatten(a.meta), metadata.flatten(b.meta)
    meta_diff = {
        "added": {k: fb[k] for k in sorted(fb.keys() - fa.keys())},
        "removed": {k: fa[k] for k in sorted(fa.keys() - fb.keys())},
        "changed": {k: [fa[k], fb[k]] for k in sorted(fa.keys() & fb.keys()) if fa[k] != fb[k]},
    }
    ta, src_a = load_tensor_table(repo, a)
    tb, src_b = load_tensor_table(repo, b)
    tensors = None
    if ta is not None and tb is not None:
        tensors = tensor_diff(ta, tb)
    return {"a": a.id, "b": b.id, "fields": fields, "meta": meta_diff, "tensors": tensors,
            "tensor_source": [src_a, src_b], "identical": a.pointer.blake3 == b.pointer.blake3}


def tensor_diff(ta: dict, tb: dict) -> dict:
    added, removed, changed, unknown = [], [], [], []
    nbytes = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    unchanged = 0
    for name in sorted(tb.keys() - ta.keys()):
        dt, shape, n, _ = tb[name]
        added.append({"name": name, "dtype": dt, "shape": shape, "bytes": n})
        nbytes["added"] += n
    for name in sorted(ta.keys() - tb.keys()):
        dt, shape, n, _ = ta[name]
        removed.append({"name": name, "dtype": dt, "shape": shape, "bytes": n})
        nbytes["removed"] += n
    for name in sorted(ta.keys() & tb.keys()):
        (da, sha, na, ha), (db_, shb, nb, hb) = ta[name], tb[name]
        if da == db_ and sha == shb and ha is not None and ha == hb:
            unchanged += 1
            nbytes["unchanged"] += nb
            continue
        entry: dict[str, Any] = {"name": name, "bytes": nb}
        if da != db_:
            entry["dtype"] = [da, db_]
        if sha != shb:
            entry["shape"] = [sha, shb]
        if na != nb:
            entry["bytes"] = [na, nb]
        if ha is None or hb is None:
            if da == db_ and sha == shb:
                unknown.append(name)
                continue
        else:
            entry["content"] = ha != hb
        changed.append(entry)
        nbytes["changed"] += nb
    return {"added": added, "removed": removed, "changed": changed, "unchanged": unchanged,
            "unknown": unknown, "bytes": nbytes}


# ------------------------------------------------------------ log --where / --sort


_CMP = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_MISSING = object()


def lookup(record: dict, name: str) -> Any:
    """A field by name: the record's own keys, then metrics, labels and meta; dotted
    names descend (metrics.eval.loss)."""
    head, _, rest = name.partition(".")
    value: Any = _MISSING
    for scope in (record, record.get("metrics") or {}, record.get("labels") or {}, record.get("meta") or {}):
        if isinstance(scope, dict) and name in scope:
            return scope[name]
        if isinstance(scope, dict) and head in scope:
            value = scope[head]
            break
    if value is _MISSING:
        return None
    for part in rest.split(".") if rest else []:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def compile_where(expr: str) -> Callable[[dict], bool]:
    """A filter from a small, safe expression language:
    `loss < 0.5 and labels.lr >= 1e-4`, `"ft-a" in path`, `metrics["eval/loss"] < 2`,
    `seed == 1234 or not dataset`. Names missing from a version are null, and a
    comparison with null is false."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise UserInputError(f"--where {expr!r}: not a valid expression ({exc.msg})") from None

    def name_of(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{name_of(node.value)}.{node.attr}"
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(
                node.slice.value, str):
            return f"{name_of(node.value)}\0{node.slice.value}"
        raise UserInputError(f"--where {expr!r}: unsupported syntax {ast.unparse(node)!r}")

    def value_of(node: ast.AST, rec: dict) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value_of(e, rec) for e in node.elts]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = value_of(node.operand, rec)
            return -v if isinstance(v, (int, float)) else None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not truth(node.operand, rec)
        if isinstance(node, (ast.BoolOp, ast.Compare)):
            return truth(node, rec)
        name = name_of(node)
        parts = name.split("\0")
        value = lookup(rec, parts[0])
        for key in parts[1:]:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def truth(node: ast.AST, rec: dict) -> bool:
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(truth(v, rec) for v in node.values)
            return any(truth(v, rec) for v in node.values)
        if isinstance(node, ast.Compare):
            left = value_of(node.left, rec)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = value_of(comp, rec)
                fn = _CMP.get(type(op))
                if fn is None:
                    raise UserInputError(f"--where {expr!r}: unsupported operator")
                if (left is None or right is None) and type(op) not in (ast.Eq, ast.NotEq):
                    return False
                try:
                    if not fn(left, right):
                        return False
                except TypeError:
                    return False
                left = right
            return True
        v = value_of(node, rec)
        return bool(v)

    # validate the shape once, on an empty record, so bad syntax fails before any output
    truth(tree.body, {})
    return lambda rec: truth(tree.body, rec)


def sort_key(metric: str) -> tuple[str, bool]:
    """`--sort loss` ascending, `--sort -loss` descending."""
    metric = metric.strip()
    if not metric or metric == "-":
        raise UserInputError("--sort: name a metric (e.g. --sort eval_loss, --sort -accuracy)")
    return (metric[1:], True) if metric.startswith("-") else (metric, False)


def sort_records(records: list[dict], metric: str) -> list[dict]:
    """Records with the metric first (numbers, then strings), sorted; the rest after."""
    name, desc = sort_key(metric)
    numeric, strings, missing = [], [], []
    for r in records:
        v = lookup(r, name)
        if isinstance(v, bool) or v is None:
            missing.append(r)
        elif isinstance(v, (int, float)):
            numeric.append((v, r))
        elif isinstance(v, str):
            strings.append((v, r))
        else:
            missing.append(r)
    numeric.sort(key=lambda p: p[0], reverse=desc)
    strings.sort(key=lambda p: p[0], reverse=desc)
    return [r for _, r in numeric] + [r for _, r in strings] + missing


@dataclass
class Reproduction:
    """What `checkout --with-code` (and any checkout of a revision) reports."""

    artifact: str
    code: dict | None = None
    config: dict | None = None
    seed: Any = None
    env: dict = field(default_factory=dict)
    differs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"artifact": self.artifact, "code": self.code, "config": self.config, "seed": self.seed,
                "env": self.env, "differs": self.differs}
