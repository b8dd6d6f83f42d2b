"""Git hooks: installing ckptvc's pre-push hook, and what it checks.

The hook script is `hooks/pre-push` (shipped in the package as ckptvc/data/pre-push).
Installing never clobbers a hook that is already there: a foreign pre-push hook is
kept as `pre-push.local`, and ckptvc's hook runs it first with the same input.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ckptvc.errors import CkptvcError, UserInputError

MARKER = "# ckptvc pre-push hook"
ZERO_SHA = "0" * 40


def hook_template() -> str:
    return resources.files("ckptvc").joinpath("data/pre-push").read_text("utf-8")


def hooks_dir(controldir: Path) -> Path:
    return controldir / "hooks"


def install_pre_push(controldir: Path, python: str | None = None) -> str:
    """Install (or update) the pre-push hook. Returns what was done."""
    d = hooks_dir(controldir)
    d.mkdir(parents=True, exist_ok=True)
    hook = d / "pre-push"
    text = hook_template().replace("@PYTHON@", python or sys.executable)
    action = "installed"
    if hook.exists() or hook.is_symlink():
        current = hook.read_text("utf-8", "replace") if hook.is_file() else ""
        if MARKER in current:
            if current == text:
                return "already installed"
            action = "updated"
        else:
            local = d / "pre-push.local"
            if local.exists():
                raise UserInputError(
                    f"{hook}: a pre-push hook exists and {local.name} is taken too; merge them by hand, "
                    "then run 'ckptvc install-hooks' again")
            os.replace(hook, local)
            action = f"installed (the existing hook now runs first as {local.name})"
    tmp = d / ".pre-push.ckptvc.tmp"
    tmp.write_text(text, "utf-8")
    os.chmod(tmp, 0o755)
    os.replace(tmp, hook)
    return action


@dataclass
class PushedRef:
    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str


def parse_pre_push_input(text: str) -> list[PushedRef]:
    refs = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            refs.append(PushedRef(*parts))
    return refs


@dataclass
class PrePushResult:
    checked_versions: int = 0
    uploaded_objects: int = 0
    problems: list[str] = field(default_factory=list)
    no_remote: bool = False  # no default remote: tags were checked, data was not


def commits_being_pushed(repo, refs: list[PushedRef]) -> list:
    """Commits reachable from the pushed shas and not from what the remote has."""
    include, exclude = [], []
    store = repo.git.repo.object_store
    for r in refs:
        if r.local_sha == ZERO_SHA:
            continue
        include.append(r.local_sha.encode())
        if r.remote_sha != ZERO_SHA and r.remote_sha.encode() in store:
            exclude.append(r.remote_sha.encode())
    if not include:
        return []
    commits = []
    from dulwich.objects import Commit, Tag

    heads = []
    for sha in include:
        obj = repo.git.repo[sha]
        while isinstance(obj, Tag):
            obj = repo.git.repo[obj.object[1]]
        if isinstance(obj, Commit):
            heads.append(obj.id)
    for entry in repo.git.repo.get_walker(include=heads, exclude=exclude or None):
        commits.append(entry.commit)
    return commits


def check_pre_push(repo, refs: list[PushedRef], progress=None) -> PrePushResult:
    """Everything the pushed commits reference must be on the default remote:
    push what is missing, then verify presence and sizes. Never raises for data
    problems: they are returned, so the hook can list them all."""
    from ckptvc import transfer
    from ckptvc.objects.objectdb import ObjectDB, object_key
    from ckptvc.tags import check_pushed_refs

    result = PrePushResult()
    result.problems.extend(check_pushed_refs(repo, [f"{r.local_ref} {r.local_sha} {r.remote_ref} {r.remote_sha}"
                                                    for r in refs]))
    if not repo.config.default_remote:
        result.no_remote = True
        return result
    commits = commits_being_pushed(repo, refs)
    versions, bad = repo.git.pointer_versions(commits)  # manifest -> "path@commit"
    result.problems.extend(bad)
    result.checked_versions = len(versions)
    if not versions:
        return result
    name, remote = repo.remote_store()
    db = ObjectDB(repo.cache)
    local = {m for m in versions if db.has(m)}
    on_remote = set(versions) - db.missing(versions, remote)
    for m in sorted(set(versions) - local - on_remote):
        result.problems.append(f"{versions[m]}: not in the local cache and not on remote {name} (manifest {m[:12]})")
    to_push = sorted(local - on_remote)
    if to_push:
        try:
            stats = transfer.push(db, remote, to_push, repo._transfer_jobs(remote), progress or repo.progress,
                                  recoded=repo.state.recoded())
            result.uploaded_objects = stats.objects
        except CkptvcError as exc:
            result.problems.append(f"push to {name} failed: {exc}")
            return result
    # verify: every manifest and every object it needs is on the remote. Same size as
    # our copy: the bytes were checked before upload (and by an S3 server's checksum).
    # Another size (another client's encoding of the same content): read and check it.
    from ckptvc.objects.objectdb import check_envelope

    owner: dict[str, str] = {}  # object -> the first version (path@commit) that needs it
    for m in sorted(local):
        for oid in db.get_manifest(m).chunk_ids() | {m}:
            owner.setdefault(oid, versions[m])
    for oid in db.closure(set(owner)):
        owner.setdefault(oid, "a delta base")
    keys = {object_key(o): o for o in owner}
    ours, theirs = repo.cache.sizes(keys), remote.sizes(keys)
    lacking: dict[str, int] = {}
    for k, oid in keys.items():
        if k not in theirs:
            lacking[owner[oid]] = lacking.get(owner[oid], 0) + 1
        elif ours.get(k) != theirs[k]:
            try:
                check_envelope(remote.read(k), f"{name}: {k}")
            except (CkptvcError, KeyError) as exc:
                result.problems.append(f"{owner[oid]}: {exc}")
    for where, n in sorted(lacking.items()):
        result.problems.append(f"{where}: {n} object(s) missing on remote {name} after push")
    return result
