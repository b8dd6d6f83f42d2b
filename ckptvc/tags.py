"""Immutable baseline tags.

A ckptvc tag NAME is two things that agree:
- an annotated git tag `refs/tags/ckpt/NAME` (so `git push --tags` carries it and
  `ckptvc checkout NAME` finds it), whose message ends with trailers naming every
  artifact version it pins;
- on every configured remote, a record `tags/NAME` (canonical JSON) written with a
  conditional create: a tag name can be taken once, by one client, ever.

The remote records are written first and the local ref last, so a failure leaves
no local tag; a retry reuses the same record (kept in `.ckptvc/state/tags-pending/`)
and so succeeds where it already wrote. ckptvc never moves or deletes a tag, and
`check_pushed_refs` (the pre-push hook) refuses to push one moved by other means.

`pinned_manifests(repo)` is the one place that says which artifact versions tags
pin: gc and archive ask it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass, field

from ckptvc.errors import CkptvcError, CorruptObjectError, RemoteError, UserInputError
from ckptvc.ids import is_valid_id
from ckptvc.pointer import Pointer

TAG_REF_PREFIX = "refs/tags/ckpt/"
REMOTE_PREFIX = "tags/"
RECORD_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100
_TRAILER_TAG = "Ckptvc-Tag"
_TRAILER_ARTIFACT = "Ckptvc-Artifact"
_TRAILER_NONCE = "Ckptvc-Nonce"


def validate_tag_name(name: str) -> str:
    """A tag name is one path component of letters, digits, '.', '_' and '-'."""
    def bad(problem: str) -> UserInputError:
        return UserInputError(f"tag name {name!r}: {problem}")

    if not isinstance(name, str) or not name:
        raise bad("empty")
    if len(name) > MAX_NAME:
        raise bad(f"longer than {MAX_NAME} characters")
    if ".." in name:
        raise bad("'..' is not allowed")
    if "/" in name or "\\" in name:
        raise bad("'/' is not allowed (one name, no path)")
    if not _NAME_RE.match(name):
        raise bad("use letters, digits, '.', '_' and '-' only, starting with a letter or digit "
                  "(no spaces or characters git refuses in ref names)")
    if name.endswith((".lock", ".")):
        raise bad("must not end with '.lock' or '.'")
    return name


@dataclass
class TagRecord:
    name: str
    commit: str
    message: str
    tagger: str
    time: int
    artifacts: list[dict] = field(default_factory=list)  # {path, blake3, manifest, role}
    nonce: str = ""  # random, per client attempt: two clients never write the same record

    def to_dict(self) -> dict:
        return {"ckptvc_tag": RECORD_VERSION, "name": self.name, "commit": self.commit, "message": self.message,
                "tagger": self.tagger, "time": self.time, "nonce": self.nonce,
                "artifacts": sorted(self.artifacts, key=lambda a: (a["role"] != "target", a["path"], a["blake3"]))}

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> TagRecord:
        try:
            doc = json.loads(data)
            if doc.get("ckptvc_tag") != RECORD_VERSION:
                raise ValueError("unknown record version")
            arts = doc["artifacts"]
            for a in arts:
                if not (is_valid_id(a["manifest"]) and is_valid_id(a["blake3"]) and isinstance(a["path"], str)
                        and isinstance(a["role"], str)):
                    raise ValueError("bad artifact entry")
            return cls(str(doc["name"]), str(doc["commit"]), str(doc["message"]), str(doc["tagger"]),
                       int(doc["time"]), [dict(a) for a in arts], str(doc.get("nonce", "")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptObjectError(f"{where}: malformed tag record: {exc}") from None

    def manifests(self) -> set[str]:
        return {a["manifest"] for a in self.artifacts}

    def targets(self) -> list[dict]:
        return [a for a in self.to_dict()["artifacts"] if a["role"] == "target"]

    def tag_message(self) -> bytes:
        lines = [self.message, "", f"{_TRAILER_TAG}: {RECORD_VERSION}"]
        if self.nonce:
            lines.append(f"{_TRAILER_NONCE}: {self.nonce}")
        for a in self.to_dict()["artifacts"]:
            lines.append(f"{_TRAILER_ARTIFACT}: {a['role']} {a['manifest']} {a['blake3']} {_q(a['path'])}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    def to_tag_object(self):
        from dulwich.objects import Commit, Tag

        tag = Tag()
        tag.name = f"ckpt/{self.name}".encode()
        tag.object = (Commit, self.commit.encode())
        tag.tagger = self.tagger.encode("utf-8")
        tag.tag_time = self.time
        tag.tag_timezone = 0
        tag.message = self.tag_message()
        return tag


def _q(text: str) -> str:
    return text.replace("%", "%25").replace(" ", "%20").replace("\n", "%0A").replace("\r", "%0D").replace(
        "\t", "%09")


def _unq(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def _record_from_tag_message(name: str, commit: str, tagger: str, tag_time: int, message: str) -> TagRecord | None:
    marker = f"\n\n{_TRAILER_TAG}: {RECORD_VERSION}\n"
    if marker not in message:
        return None
    body, _, trailers = message.partition(marker)
    arts = []
    nonce = ""
    for line in trailers.splitlines():
        key, sep, value = line.partition(": ")
        parts = value.split(" ")
        if key == _TRAILER_NONCE and sep:
            nonce = value.strip()
        if key == _TRAILER_ARTIFACT and sep and len(parts) == 4 and is_valid_id(parts[1]) and is_valid_id(parts[2]):
            arts.append({"role": parts[0], "manifest": parts[1], "blake3": parts[2], "path": _unq(parts[3])})
    return TagRecord(name, commit, body, tagger, tag_time, arts, nonce)


# ------------------------------------------------------------ reading local tags


def _tag_refs(repo) -> dict[str, bytes]:
    refs = repo.git.repo.get_refs()
    prefix = TAG_REF_PREFIX.encode()
    return {ref[len(prefix):].decode("utf-8", "replace"): sha for ref, sha in refs.items() if ref.startswith(prefix)}


def _record_for_ref(repo, name: str, sha: bytes) -> TagRecord | None:
    store = repo.git.repo.object_store
    try:
        obj = store[sha]
    except KeyError:
        return None
    if obj.type_name == b"tag":
        target = obj
        while target.type_name == b"tag":
            target = store[target.object[1]]
        if target.type_name != b"commit":
            return None
        rec = _record_from_tag_message(name, target.id.decode(), obj.tagger.decode("utf-8", "replace"),
                                       int(obj.tag_time), obj.message.decode("utf-8", "replace"))
        if rec is not None:
            return rec
        commit = target
        tagger, tag_time, message = obj.tagger.decode("utf-8", "replace"), int(obj.tag_time), obj.message.decode(
            "utf-8", "replace").strip()
    elif obj.type_name == b"commit":
        commit, tagger, tag_time, message = obj, "", 0, ""
    else:
        return None
    # a tag made with plain git under refs/tags/ckpt/: it pins every artifact at its commit
    arts = []
    for path, data in repo.git.pointer_blobs(commit):
        with contextlib.suppress(CkptvcError):
            p = Pointer.from_bytes(data, path)
            arts.append({"path": path[:-5], "blake3": p.blake3, "manifest": p.manifest, "role": "target"})
    return TagRecord(name, commit.id.decode(), message, tagger, tag_time, arts)


def list_tags(repo) -> list[TagRecord]:
    out = []
    for name, sha in sorted(_tag_refs(repo).items()):
        rec = _record_for_ref(repo, name, sha)
        if rec is not None:
            out.append(rec)
    return out


def local_tag(repo, ref: str) -> TagRecord | None:
    """The record of the ckptvc tag `ref` names (NAME, ckpt/NAME, refs/tags/ckpt/NAME),
    when that is what `ref` resolves to as a revision; else None."""
    name = ref
    for prefix in ("refs/tags/ckpt/", "ckpt/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    sha = _tag_refs(repo).get(name)
    if sha is None:
        return None
    rec = _record_for_ref(repo, name, sha)
    if rec is None:
        return None
    commit = repo.git.resolve(ref)
    if commit is None or commit.id.decode() != rec.commit:
        return None  # a branch or plain tag of the same name shadows it
    return rec


def tags_by_version(repo) -> dict[str, list[str]]:
    from ckptvc.lineage import version_id

    out: dict[str, list[str]] = {}
    for rec in list_tags(repo):
        for a in rec.targets():
            out.setdefault(version_id(a["path"], a["blake3"]), []).append(rec.name)
    return out


def remote_tag_records(repo, remote: str | None = None) -> list[TagRecord]:
    name, store = repo.remote_store(remote)
    out = []
    for key in sorted(store.list(REMOTE_PREFIX)):
        try:
            data = store.read(key)
        except KeyError:
            continue
        out.append(TagRecord.from_bytes(data, f"remote {name}: {key}"))
    return out


def pinned_manifests(repo, remotes: bool = True) -> set[str]:
    """Manifest ids of every artifact version a ckptvc tag pins: the local tags, and
    (with remotes) every tag record on every configured remote. The one place gc and
    archive ask. A remote that cannot be read raises: better no gc than a wrong one."""
    pins: set[str] = set()
    for rec in list_tags(repo):
        pins |= rec.manifests()
    if remotes:
        for name in sorted(repo.config.remotes):
            for rec in remote_tag_records(repo, name):
                pins |= rec.manifests()
    return pins


# ------------------------------------------------------------ creating


def _resolve_targets(repo, ref: str | None) -> tuple[str, list[tuple[str, Pointer]]]:
    """(commit, [(path, pointer)]) of what `tag NAME [REF]` pins as targets."""
    from ckptvc import lineage

    git = repo.git
    head = git.head()

    def at(commit) -> dict[str, Pointer]:
        out = {}
        for path, data in git.pointer_blobs(commit):
            out[path[:-5]] = Pointer.from_bytes(data, f"{path}@{commit.id.decode()[:10]}")
        return out

    if ref is None:
        if head is None:
            raise UserInputError("nothing to tag: no commits yet (ckptvc commit first)")
        ptrs = at(head)
        if not ptrs:
            raise UserInputError("nothing to tag: no artifacts at HEAD")
        return head.id.decode(), sorted(ptrs.items())
    if "@" in ref and not ref.startswith("ckpt:"):
        path_part, rev = ref.rsplit("@", 1)
        rel = lineage._artifact_rel(repo, path_part)
        commit = git.resolve(rev) if rev else None
        if rel and commit is not None:
            ptrs = at(commit)
            hits = {p: v for p, v in ptrs.items() if p == rel or p.startswith(rel.rstrip("/") + "/")}
            if not hits:
                raise UserInputError(f"{ref}: {rel} is not tracked at {rev}")
            return commit.id.decode(), sorted(hits.items())
    if ref.startswith("ckpt:"):
        history = lineage.History.load(repo)
        v = lineage.resolve_version(repo, history, ref)
        if v.commit is None:
            raise UserInputError(f"{ref}: not committed yet (ckptvc commit first)")
        commit = git.repo[v.commit.encode()]
        ptr = at(commit).get(v.path)
        return v.commit, [(v.path, ptr if ptr is not None and ptr.blake3 == v.pointer.blake3 else v.pointer)]
    tracked = None
    with contextlib.suppress(UserInputError):
        tracked = repo.tracked([ref])
    if tracked:
        if head is None:
            raise UserInputError(f"{ref}: not committed yet (ckptvc commit first)")
        at_head = at(head)
        for t in tracked:
            committed = at_head.get(t.path)
            if committed is None or committed.to_bytes() != t.pointer.to_bytes():
                raise UserInputError(f"{t.pointer_path}: changed since the last commit; ckptvc commit first, "
                                     "then tag")
        return head.id.decode(), sorted((t.path, t.pointer) for t in tracked)
    commit = git.resolve(ref)
    if commit is not None:
        ptrs = at(commit)
        if not ptrs:
            raise UserInputError(f"{ref}: no artifacts at that revision")
        return commit.id.decode(), sorted(ptrs.items())
    raise UserInputError(f"{ref}: neither a tracked artifact, PATH@REV, a version id nor a revision")


def inputs_of(path: str, ptr: Pointer) -> list[dict]:
    """The tracked artifact versions a version names as inputs (what reproducing it
    needs): tokenizer, config, dataset, and a parent at another path."""
    out = []
    for role in ("parent", "tokenizer", "config", "dataset"):
        ref = ptr.meta.get(role)
        if not isinstance(ref, dict):
            continue
        p, b3, m = ref.get("path"), ref.get("blake3"), ref.get("manifest")
        if not (isinstance(p, str) and is_valid_id(b3) and is_valid_id(m)):
            continue
        if role == "parent" and p == path:
            continue
        out.append({"path": p, "blake3": b3, "manifest": m, "role": role})
    return out


def _artifacts(targets: list[tuple[str, Pointer]]) -> list[dict]:
    arts: dict[tuple[str, str], dict] = {}
    for path, ptr in targets:
        arts[(path, ptr.blake3)] = {"path": path, "blake3": ptr.blake3, "manifest": ptr.manifest, "role": "target"}
    for path, ptr in targets:
        for a in inputs_of(path, ptr):
            arts.setdefault((a["path"], a["blake3"]), a)
    return list(arts.values())


def create_tag(repo, name: str, ref: str | None = None, message: str | None = None) -> TagRecord:
    """Tag an artifact version (or every artifact at a revision) as an immutable baseline."""
    from ckptvc.stores.local import atomic_write_file

    validate_tag_name(name)
    refname = (TAG_REF_PREFIX + name).encode()
    refs = repo.git.repo.refs
    if refname in refs:
        raise UserInputError(f"tag {name} already exists; ckptvc tags are immutable (pick another name)")
    commit, targets = _resolve_targets(repo, ref)
    message = (message or "").strip() or f"ckptvc baseline {name}"
    import secrets

    record = TagRecord(name, commit, message, repo.git.identity().decode("utf-8", "replace"), int(time.time()),
                       _artifacts(targets), secrets.token_hex(8))
    pending = repo.dir / "state" / "tags-pending" / f"{name}.json"
    with contextlib.suppress(OSError, CkptvcError):
        prev = TagRecord.from_bytes(pending.read_bytes(), str(pending))
        if (prev.commit, prev.message, prev.to_dict()["artifacts"]) == (
                record.commit, record.message, record.to_dict()["artifacts"]):
            record = prev  # a retry: the same record, so remotes that have it agree
    data = record.to_bytes()
    pending.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_file(pending, data)
    names = sorted(repo.config.remotes, key=lambda n: (n != repo.config.default_remote, n))
    for remote in names:
        try:
            _, store = repo.remote_store(remote)
            if store.write(REMOTE_PREFIX + name, data, exclusive=True):
                continue
            existing = store.read(REMOTE_PREFIX + name)
        except (CkptvcError, OSError, KeyError) as exc:
            if isinstance(exc, UserInputError):
                raise
            raise RemoteError(f"remote {remote}: cannot record tag {name}: {exc}; no tag was created "
                              "(run the same command again to retry)") from None
        if existing != data:
            pending.unlink(missing_ok=True)
            try:
                other = TagRecord.from_bytes(existing, f"remote {remote}")
                who = f" by {other.tagger} on {time.strftime('%Y-%m-%d %H:%M', time.gmtime(other.time))}Z" \
                      f" for commit {other.commit[:10]}"
            except CkptvcError:
                who = ""
            raise UserInputError(f"tag {name} already taken on remote {remote}{who}; "
                                 "ckptvc tags are immutable (pick another name)")
    tag = record.to_tag_object()
    repo.git.repo.object_store.add_object(tag)
    if not refs.add_if_new(refname, tag.id):
        raise UserInputError(f"tag {name} already exists; ckptvc tags are immutable (pick another name)")
    pending.unlink(missing_ok=True)
    return record


def refuse_change(name: str, action: str) -> None:
    raise UserInputError(f"refusing to {action} tag {name}: ckptvc tags are immutable "
                         "(tag the new version under a new name)")


# ------------------------------------------------------------ pre-push


def _zero(sha: str) -> bool:
    return bool(sha) and set(sha) == {"0"}


def check_pushed_refs(repo, lines) -> list[str]:
    """Errors for a pre-push hook: given its stdin lines
    `<local ref> <local sha> <remote ref> <remote sha>`, refuse to delete or move a
    ckptvc tag (refs/tags/ckpt/*), and to push one whose commit differs from its
    record on a ckptvc remote (best effort: an unreachable remote is skipped)."""
    errors = []
    for line in lines:
        parts = line.split()
        if len(parts) != 4:
            continue
        _, local_sha, remote_ref, remote_sha = parts
        if not remote_ref.startswith(TAG_REF_PREFIX):
            continue
        name = remote_ref[len(TAG_REF_PREFIX):]
        if _zero(local_sha):
            errors.append(f"refusing to delete ckptvc tag {name}: tags are immutable")
            continue
        if not _zero(remote_sha) and remote_sha != local_sha:
            errors.append(f"refusing to move ckptvc tag {name}: the remote has {remote_sha[:10]}, this push "
                          f"would make it {local_sha[:10]} (tags are immutable)")
            continue
        rec = _record_for_ref(repo, name, local_sha.encode())
        if rec is None:
            continue
        for remote in sorted(repo.config.remotes):
            try:
                _, store = repo.remote_store(remote)
                data = store.read(REMOTE_PREFIX + name)
                other = TagRecord.from_bytes(data, f"remote {remote}")
            except (CkptvcError, OSError, KeyError):
                continue
            if other.commit != rec.commit:
                errors.append(f"refusing to push ckptvc tag {name}: it names commit {rec.commit[:10]} but its "
                              f"record on remote {remote} names {other.commit[:10]} (the tag was moved)")
                break
    return errors
