"""Git access through dulwich: find the work tree, read pointers at any revision,
commit, and maintain .gitignore. No `git` binary is needed."""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ckptvc.errors import NotARepositoryError, UserInputError
from ckptvc.pointer import POINTER_SUFFIX

if TYPE_CHECKING:
    from dulwich.objects import Commit
    from dulwich.repo import Repo as DulwichRepo


def find_work_tree(start: str | os.PathLike[str] = ".") -> Path:
    """The root of the git work tree holding `start`: the nearest directory, from
    `start` up, with a `.git` entry (a directory, or a file naming one as linked work
    trees and submodules have)."""
    path = Path(start).resolve()
    for d in (path, *path.parents):
        if os.path.lexists(d / ".git"):
            return d
        if (d / "HEAD").is_file() and (d / "objects").is_dir() and (d / "refs").is_dir():
            raise NotARepositoryError(f"{d}: a bare git repository has no work tree")
    raise NotARepositoryError(f"{path}: not inside a git work tree (run 'git init' first)")


class GitRepo:
    """A git work tree. dulwich is imported and the repository opened on first use:
    commands that only read the work tree (status) start ~40 ms sooner."""

    def __init__(self, root: Path):
        self.root = root
        self._repo: DulwichRepo | None = None

    @property
    def repo(self) -> DulwichRepo:
        if self._repo is None:
            from dulwich.errors import NotGitRepository
            from dulwich.repo import Repo as DulwichRepo

            try:
                self._repo = DulwichRepo(str(self.root))
            except (NotGitRepository, ValueError, OSError) as exc:
                # an empty .git, a .git file not naming a git dir ("gitdir: ..."), one
                # naming a missing dir
                raise NotARepositoryError(f"{self.root / '.git'}: not a usable git repository ({exc})") from None
            if not os.path.isdir(self._repo.controldir()):
                # dulwich takes a .git file naming a missing directory at its word
                raise NotARepositoryError(f"{self.root / '.git'}: names {self._repo.controldir()}, which is not "
                                          "a directory")
            if self._repo.bare:
                raise NotARepositoryError(f"{self.root}: a bare git repository has no work tree")
        return self._repo

    @classmethod
    def discover(cls, start: str | os.PathLike[str] = ".") -> GitRepo:
        return cls(find_work_tree(start))

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()

    # ------------------------------------------------------------ revisions

    def resolve(self, rev: str) -> Commit | None:
        """The commit a revision names (branch, tag, ckpt tag, sha, with ~N / ^N
        suffixes as git reads them), or None."""
        import re

        m = re.match(r"^(.*?)((?:[~^][0-9]*)+)$", rev)
        if m and m.group(1):
            commit = self.resolve(m.group(1))
            for op, num in re.findall(r"([~^])([0-9]*)", m.group(2)):
                if commit is None:
                    return None
                n = int(num) if num else 1
                if op == "~":
                    for _ in range(n):
                        commit = self.repo[commit.parents[0]] if commit.parents else None
                        if commit is None:
                            return None
                elif n == 0:
                    continue
                else:
                    commit = self.repo[commit.parents[n - 1]] if len(commit.parents) >= n else None
            return commit
        return self._resolve_plain(rev)

    def _resolve_plain(self, rev: str) -> Commit | None:
        from dulwich.objects import Commit, Tag
        from dulwich.objectspec import parse_commit

        candidates = [rev]
        if "/" not in rev and not rev.startswith("refs/"):
            candidates.append(f"refs/tags/ckpt/{rev}")
        for cand in candidates:
            try:
                obj = parse_commit(self.repo, cand.encode())
            except (KeyError, ValueError, NotImplementedError, AssertionError, TypeError):
                continue
            while isinstance(obj, Tag):
                obj = self.repo[obj.object[1]]
            if isinstance(obj, Commit):
                return obj
        return None

    def head(self) -> Commit | None:
        try:
            return self.repo[self.repo.head()]
        except KeyError:
            return None

    def pointer_blobs(self, commit: Commit) -> Iterator[tuple[str, bytes]]:
        """(path, content) of every *.ckpt file in a commit's tree."""
        from dulwich.objects import Blob

        store = self.repo.object_store
        for entry in store.iter_tree_contents(commit.tree):
            path = entry.path.decode("utf-8", "surrogateescape")
            if path.endswith(POINTER_SUFFIX) and entry.mode & 0o170000 == 0o100000:
                blob = store[entry.sha]
                if isinstance(blob, Blob) and len(blob.data) <= (1 << 20):
                    yield path, blob.data

    def pointer_versions(self, commits) -> tuple[dict[str, str], list[str]]:
        """manifest id -> "path@commit" (first seen) for every pointer file in the
        trees of `commits`, and one error line for each pointer that does not parse.
        Each distinct pointer blob is parsed once."""
        from ckptvc.errors import CkptvcError
        from ckptvc.pointer import Pointer

        versions: dict[str, str] = {}
        bad: list[str] = []
        store = self.repo.object_store
        seen: set[bytes] = set()
        for commit in commits:
            for entry in store.iter_tree_contents(commit.tree):
                if not entry.path.endswith(POINTER_SUFFIX.encode()) or entry.sha in seen:
                    continue
                seen.add(entry.sha)
                where = f"{entry.path.decode('utf-8', 'replace')[:-len(POINTER_SUFFIX)]}@{commit.id.decode()[:10]}"
                try:
                    versions.setdefault(Pointer.from_bytes(store[entry.sha].data, where).manifest, where)
                except CkptvcError as exc:
                    bad.append(str(exc))
        return versions, bad

    def walk_commits(self, include: list[bytes] | None = None) -> Iterator[Commit]:
        from dulwich.objects import Commit, Tag

        heads = include
        if heads is None:
            heads = []
            for ref, sha in self.repo.get_refs().items():
                if ref.startswith((b"refs/heads/", b"refs/tags/", b"refs/remotes/")) or ref == b"HEAD":
                    heads.append(sha)
        seen_heads = []
        for sha in heads:
            obj = self.repo[sha]
            while isinstance(obj, Tag):
                obj = self.repo[obj.object[1]]
            if isinstance(obj, Commit):
                seen_heads.append(obj.id)
        if not seen_heads:
            return
        for entry in self.repo.get_walker(include=seen_heads):
            yield entry.commit

    # ------------------------------------------------------------ committing

    def identity(self) -> bytes:
        cfg = self.repo.get_config_stack()
        try:
            name = cfg.get((b"user",), b"name").decode()
            email = cfg.get((b"user",), b"email").decode()
        except KeyError:
            name = os.environ.get("GIT_AUTHOR_NAME") or getpass.getuser()
            email = os.environ.get("GIT_AUTHOR_EMAIL") or f"{getpass.getuser()}@{socket.gethostname()}"
        return f"{name} <{email}>".encode()

    def stage(self, paths: list[Path]) -> None:
        """Stage these paths as they are in the work tree; a missing one is unstaged."""
        worktree = self._worktree()
        if worktree is None:
            self._stage_porcelain(paths)
            return
        worktree.stage([os.path.relpath(p, self.root) for p in paths])

    def _worktree(self):
        # dulwich >= 0.23: staging and committing without importing porcelain, whose
        # import (client, server, patch, merge...) costs ~0.1 s of every `ckptvc commit`
        get = getattr(self.repo, "get_worktree", None)
        return get() if get is not None else None

    def _stage_porcelain(self, paths: list[Path]) -> None:
        from dulwich import porcelain

        present = [str(p) for p in paths if p.exists()]
        gone = [p for p in paths if not p.exists()]
        if present:
            porcelain.add(self.repo, paths=present)
        if gone:
            index = self.repo.open_index()
            tracked = [p for p in gone if str(p.relative_to(self.root)).encode() in index]
            if tracked:
                porcelain.remove(self.repo, paths=[str(p) for p in tracked], cached=True)

    def commit(self, message: str) -> str:
        ident = self.identity()
        worktree = self._worktree()
        try:
            if worktree is None:
                from dulwich import porcelain

                sha = porcelain.commit(self.repo, message=message.encode("utf-8"), author=ident, committer=ident)
            else:
                # local time zone, as git and porcelain.commit record it
                tz = time.localtime().tm_gmtoff
                sha = worktree.commit(message=message.encode("utf-8"), author=ident, committer=ident,
                                      commit_timezone=tz, author_timezone=tz)
        except Exception as exc:  # dulwich raises several types for hook failures
            if exc.__class__.__name__ in ("HookError", "CommitError"):
                raise UserInputError(f"commit refused: {exc}") from None
            raise
        return sha.decode()

    def staged_changes(self) -> bool:
        """Whether the index differs from HEAD's tree (compared entry by entry, as
        `git status` does: nothing is written to the object store). An index with
        unmerged paths (a merge in progress) is refused, as `git commit` refuses it."""
        index = self.repo.open_index()
        if index.has_conflicts():
            raise UserInputError("the git index has unmerged paths: finish the merge first")
        head = self.head()
        return any(True for _ in index.changes_from_tree(self.repo.object_store, head.tree if head else None))


def add_to_gitignore(root: Path, artifact: Path) -> Path:
    """Ignore `artifact` in the .gitignore of its directory (as DVC does); returns it."""
    import fcntl

    from ckptvc.stores.local import atomic_write_file

    gi = artifact.parent / ".gitignore"
    entry = "/" + artifact.name
    lock_dir = root / ".ckptvc" / "tmp"
    lock_dir.mkdir(parents=True, exist_ok=True)
    # read-modify-write under a lock: two `ckptvc add` at once must not lose an entry
    with open(lock_dir / "gitignore.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = gi.read_text("utf-8")
        except FileNotFoundError:
            text = ""
        if entry in text.splitlines():
            return gi
        if text and not text.endswith("\n"):
            text += "\n"
        atomic_write_file(gi, (text + entry + "\n").encode("utf-8"))
    return gi
