"""Repository operations: the Python API under the CLI.

    repo = ckptvc.Repo.open(".")
    repo.add(["runs/r7/step-4000.safetensors"])
    repo.commit("r7 step 4000")
    repo.push()

Nothing here prints; long operations report through a Progress callback.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ckptvc.config import Config, RemoteConfig, check_name
from ckptvc.errors import (
    CkptvcError,
    MissingObjectError,
    UserInputError,
    WorkspaceConflictError,
)
from ckptvc.gitrepo import GitRepo, add_to_gitignore
from ckptvc.ids import hash_bytes
from ckptvc.objects.manifest import FileEntry, Manifest, check_relative_path
from ckptvc.objects.objectdb import ObjectDB
from ckptvc.parallel import default_jobs
from ckptvc.pointer import Pointer, pointer_path_for, read_pointer
from ckptvc.progress import NULL_PROGRESS, Progress
from ckptvc.state import FileStamp, StateDB
from ckptvc.stores.base import Store
from ckptvc.stores.factory import open_store
from ckptvc.stores.local import LocalStore, atomic_write_file
from ckptvc.workspace import TrackedArtifact, find_pointer_files, load_tracked

CKPTVC_DIR = ".ckptvc"
CONFIG_FILE = "config.toml"
_GITIGNORE_BODY = "/cache/\n/state/\n/tmp/\n/config.local.toml\n"


@dataclass
class AddedArtifact:
    path: str
    pointer_path: str
    size: int
    new_bytes: int
    unchanged: bool


@dataclass
class ArtifactStatus:
    path: str
    workspace: str  # clean | modified | missing
    in_cache: bool
    on_remote: bool | None  # None: no default remote

    def to_dict(self) -> dict:
        return {"path": self.path, "workspace": self.workspace, "in_cache": self.in_cache,
                "on_remote": self.on_remote}


@dataclass
class CheckoutResult:
    restored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rev: str | None = None


@dataclass
class LogEntry:
    path: str
    commit: str
    date: int
    message: str
    size: int
    stored_bytes: int
    blake3: str
    manifest: str

    def to_dict(self) -> dict:
        return {"path": self.path, "commit": self.commit,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.date)),
                "message": self.message, "size": self.size, "stored_bytes": self.stored_bytes,
                "blake3": self.blake3, "manifest": self.manifest}


def dir_digest(files: list[FileEntry]) -> str:
    """A directory artifact's blake3: of its sorted (path, size, blake3) list."""
    listing = [[f.path, f.size, f.blake3] for f in sorted(files, key=lambda f: f.path)]
    return hash_bytes(json.dumps(listing, separators=(",", ":")).encode())


class Repo:
    def __init__(self, git: GitRepo, config: Config, progress: Progress = NULL_PROGRESS):
        self.git = git
        self.root = git.root
        self.config = config
        self.progress = progress
        self.dir = self.root / CKPTVC_DIR
        self.cache = LocalStore(self.dir / "cache")
        self._state: StateDB | None = None
        self._remote_stores: dict[str, Store] = {}
        self.jobs = default_jobs(config.get_int("jobs"))

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", remote_url: str | None = None) -> Repo:
        git = GitRepo.discover(path)
        d = git.root / CKPTVC_DIR
        d.mkdir(exist_ok=True)
        for sub in ("cache", "state", "tmp"):
            (d / sub).mkdir(exist_ok=True)
        gi = d / ".gitignore"
        if not gi.exists():
            atomic_write_file(gi, _GITIGNORE_BODY.encode())
        cfg_path = d / CONFIG_FILE
        config = Config.load(cfg_path) if cfg_path.exists() else Config()
        if not cfg_path.exists():
            config.save(cfg_path)
        repo = cls(git, config)
        if remote_url and "origin" not in config.remotes:
            repo.remote_add("origin", remote_url, default=True)
        from ckptvc.hooks import install_pre_push

        repo.hook_action = install_pre_push(Path(git.repo.controldir()))
        return repo

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".", progress: Progress = NULL_PROGRESS) -> Repo:
        git = GitRepo.discover(path)
        cfg_path = git.root / CKPTVC_DIR / CONFIG_FILE
        if not cfg_path.exists():
            raise UserInputError(f"{git.root}: not a ckptvc repository (run 'ckptvc init')")
        return cls(git, Config.load(cfg_path), progress)

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None
        self.git.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> StateDB:
        if self._state is None:
            self._state = StateDB(self.dir / "state" / "state.db")
        return self._state

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    # ------------------------------------------------------------ stores

    def remote_store(self, name: str | None = None) -> tuple[str, Store]:
        name = name or self.config.default_remote
        if not name:
            raise UserInputError("no remote given and no default remote set (ckptvc remote add NAME URL --default)")
        rc = self.config.remotes.get(name)
        if rc is None:
            raise UserInputError(f"{self.config_path}: no remote named {name!r}")
        if name not in self._remote_stores:
            self._remote_stores[name] = open_store(rc.url, self.root, rc.options)
        return name, self._remote_stores[name]

    def objectdb(self, with_remotes: bool = True) -> ObjectDB:
        remotes = []
        if with_remotes and self.config.default_remote:
            remotes.append(self.remote_store()[1])
        return ObjectDB(self.cache, remotes)

    def _policy(self):
        from ckptvc.ingest import StorePolicy

        c = self.config
        return StorePolicy(c.get_int("compression_level"), c.get_int("max_delta_chain"),
                           c.get_int("chunk_size"), self.jobs)

    # ------------------------------------------------------------ remotes

    def remote_add(self, name: str, url: str, default: bool = False, options: dict | None = None) -> None:
        from ckptvc.config import REMOTE_KEYS
        from ckptvc.stores.factory import validate_remote_url

        check_name(name, "remote")
        if name in self.config.remotes:
            raise UserInputError(f"{self.config_path}: remote {name!r} already exists (remove it first)")
        validate_remote_url(url)
        for key, value in (options or {}).items():
            if key not in REMOTE_KEYS or key == "url" or type(value) is not REMOTE_KEYS[key]:
                raise UserInputError(f"remote option {key}={value!r} is not valid")
        if not url.startswith("s3://") and options:
            raise UserInputError(f"remote {url!r}: --endpoint-url/--region/--profile apply to s3:// remotes only")
        self.config.remotes[name] = RemoteConfig(name, url, dict(options or {}))
        if default or not self.config.default_remote:
            self.config.core["default_remote"] = name
        self.config.save(self.config_path)

    def remote_remove(self, name: str) -> None:
        if name not in self.config.remotes:
            raise UserInputError(f"{self.config_path}: no remote named {name!r}")
        del self.config.remotes[name]
        if self.config.default_remote == name:
            self.config.core["default_remote"] = ""
        self.config.save(self.config_path)

    # ------------------------------------------------------------ paths

    def _abs(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        p = p if p.is_absolute() else Path.cwd() / p
        p = Path(os.path.normpath(p))
        try:
            p.relative_to(self.root)
        except ValueError:
            raise UserInputError(f"{path}: outside the repository {self.root}") from None
        if CKPTVC_DIR in p.relative_to(self.root).parts or ".git" in p.relative_to(self.root).parts:
            raise UserInputError(f"{path}: inside .git or .ckptvc; cannot be tracked")
        return p

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    def tracked(self, paths: list[str] | None = None) -> list[TrackedArtifact]:
        """Tracked artifacts in the work tree (all, or those at/under `paths`)."""
        if not paths:
            return load_tracked(self.root, find_pointer_files(self.root))
        out: dict[str, TrackedArtifact] = {}
        for raw in paths:
            p = self._abs(raw)
            if p.name.endswith(".ckpt") and p.is_file():
                p = p.with_name(p.name[:-5])
            pf = pointer_path_for(p)
            if pf.is_file():
                for t in load_tracked(self.root, [pf]):
                    out[t.path] = t
            elif p.is_dir():
                for t in load_tracked(self.root, find_pointer_files(self.root, p)):
                    out[t.path] = t
            else:
                raise UserInputError(f"{raw}: not a tracked artifact (no {pf.name} beside it)")
        return list(out.values())

    # ------------------------------------------------------------ add

    def add(self, paths: list[str | os.PathLike[str]], parent: str | None = None,
            meta: dict | None = None) -> list[AddedArtifact]:
        from ckptvc.ingest import Ingester

        targets = []
        for raw in paths:
            p = self._abs(raw)
            if p.name.endswith(".ckpt") and not p.exists():
                raise UserInputError(f"{raw}: pointer files are not artifacts; add the file itself")
            if not p.exists():
                raise UserInputError(f"{raw}: no such file or directory")
            if p.is_symlink():
                raise UserInputError(f"{raw}: is a symbolic link; add the file it points to")
            if not (p.is_file() or p.is_dir()):
                raise UserInputError(f"{raw}: not a regular file or directory")
            targets.append(p)
        parent_files = self._parent_files(parent) if parent else None
        self.cache.ensure()
        db = self.objectdb(with_remotes=False)
        ingester = Ingester(db, self._policy(), self.progress, self.dir / "tmp" / "recode.lock")
        results = []
        for p in targets:
            results.append(self._add_one(p, ingester, db, parent_files, meta or {}))
        return results

    def _parent_files(self, parent: str) -> dict[str, FileEntry]:
        rev = None
        if "@" in parent:
            parent, rev = parent.rsplit("@", 1)
        p = self._abs(parent)
        rel_pointer = self._rel(pointer_path_for(p))
        if rev:
            commit = self.git.resolve(rev)
            if commit is None:
                raise UserInputError(f"--parent {parent}@{rev}: unknown revision {rev!r}")
            blobs = dict(self.git.pointer_blobs(commit))
            if rel_pointer not in blobs:
                raise UserInputError(f"--parent {parent}@{rev}: not tracked at {rev}")
            ptr = Pointer.from_bytes(blobs[rel_pointer], f"{rel_pointer}@{rev}")
        else:
            pf = pointer_path_for(p)
            if not pf.is_file():
                raise UserInputError(f"--parent {parent}: not a tracked artifact")
            ptr = read_pointer(pf, rel_pointer)
        try:
            m = self.objectdb().get_manifest(ptr.manifest)
        except CkptvcError:
            return {}
        return {f.path: f for f in m.files}

    def _files_of(self, p: Path) -> list[tuple[Path, str]]:
        if p.is_file():
            return [(p, "")]
        out = []
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if d not in (".git", CKPTVC_DIR))
            for name in sorted(filenames):
                fp = Path(dirpath) / name
                if fp.is_symlink():
                    raise UserInputError(f"{self._rel(fp)}: symbolic links inside a directory artifact are not supported")
                if fp.is_file():
                    entry = fp.relative_to(p).as_posix()
                    try:
                        check_relative_path(entry)
                    except ValueError as exc:
                        raise UserInputError(f"{self._rel(fp)}: {exc}") from None
                    out.append((fp, entry))
        if not out:
            raise UserInputError(f"{self._rel(p)}: empty directory; nothing to add")
        return out

    def _add_one(self, p: Path, ingester, db: ObjectDB, parent_files: dict[str, FileEntry] | None,
                 meta: dict) -> AddedArtifact:
        rel = self._rel(p)
        pf = pointer_path_for(p)
        old: Pointer | None = None
        if pf.exists():
            old = read_pointer(pf, self._rel(pf))
        if parent_files is None and old is not None:
            try:
                parent_files = {f.path: f for f in db.get_manifest(old.manifest).files}
            except CkptvcError:
                parent_files = None
        files: list[FileEntry] = []
        new_bytes = 0
        state = self.state
        for fp, entry_path in self._files_of(p):
            state_key = self._rel(fp)
            stamp = FileStamp.of(fp.stat())
            known = state.lookup(state_key, stamp)
            if known and known[1] and db.has(known[1].get("manifest", "")):
                fe = _entry_from_state(known[1]["entry"], entry_path)
                if fe is not None:
                    files.append(fe)
                    continue
            parent_entry = (parent_files or {}).get(entry_path)
            stored = ingester.store_file(fp, entry_path, parent_entry)
            files.append(stored.entry)
            new_bytes += stored.new_bytes
            if stored.recoded:
                state.mark_recoded(stored.recoded)
        kind = "file" if p.is_file() else "dir"
        manifest = Manifest(kind, files)
        mid = db.put_manifest(manifest)
        for (fp, _), fe in zip(self._files_of(p), files, strict=True):
            state.record(self._rel(fp), FileStamp.of(fp.stat()), fe.blake3,
                         {"manifest": mid, "entry": _entry_to_state(fe)})
        digest = files[0].blake3 if kind == "file" else dir_digest(files)
        if old is not None and old.manifest == mid and not meta:
            return AddedArtifact(rel, self._rel(pf), manifest.size, 0, True)
        merged_meta = dict(old.meta) if (old is not None and old.manifest == mid) else {}
        merged_meta.update(meta)
        ptr = Pointer(kind, manifest.size, digest, mid, new_bytes, merged_meta, dict(old.extra) if old else {})
        atomic_write_file(pf, ptr.to_bytes())
        add_to_gitignore(self.root, p)
        return AddedArtifact(rel, self._rel(pf), manifest.size, new_bytes, False)

    # ------------------------------------------------------------ status

    def _matches(self, dest: Path, ptr: Pointer) -> bool:
        return self._state_of(dest, ptr) == "clean"

    def workspace_state(self, t: TrackedArtifact, rehash: bool = True) -> str:
        """clean | modified | missing, from the stat cache when it can."""
        return self._state_of(self.root / t.path, t.pointer, rehash)

    def _state_of(self, p: Path, ptr: Pointer, rehash: bool = True) -> str:
        if not p.exists():
            return "missing"
        if ptr.kind == "file":
            if not p.is_file():
                return "modified"
            digest = self._file_digest(p, rehash)
            return "clean" if digest == ptr.blake3 else "modified"
        if not p.is_dir():
            return "modified"
        try:
            manifest = self.objectdb(with_remotes=False).get_manifest(ptr.manifest)
        except CkptvcError:
            manifest = None
        expected = {f.path: f.blake3 for f in manifest.files} if manifest else None
        actual = {}
        for fp, entry in self._files_of(p):
            actual[entry] = self._file_digest(fp, rehash)
        if expected is not None:
            return "clean" if actual == expected else "modified"
        files = [FileEntry(k, (p / k).stat().st_size, v, []) for k, v in actual.items()]
        return "clean" if dir_digest(files) == ptr.blake3 else "modified"

    def _file_digest(self, fp: Path, rehash: bool) -> str | None:
        from ckptvc.ids import new_hasher

        stamp = FileStamp.of(fp.stat())
        try:
            key: str | None = fp.resolve().relative_to(self.root).as_posix()
        except ValueError:
            key = None  # outside the work tree (checkout -o DIR): no state kept
        known = self.state.lookup(key, stamp) if key else None
        if known:
            return known[0]
        if not rehash:
            return None
        h = new_hasher()
        with open(fp, "rb") as f:
            while block := f.read(8 << 20):
                h.update(block)
        digest = h.hexdigest()
        if key:
            self.state.record(key, stamp, digest, None)
        return digest

    def status(self, paths: list[str] | None = None) -> tuple[str | None, list[ArtifactStatus]]:
        tracked = self.tracked(paths)
        manifests = [t.pointer.manifest for t in tracked]
        db = ObjectDB(self.cache)
        missing_cache = db.missing(manifests)
        remote_name = self.config.default_remote or None
        on_remote: set[str] | None = None
        if remote_name:
            _, store = self.remote_store(remote_name)
            known = self.state.pushed(remote_name, manifests)
            unknown = set(manifests) - known
            on_remote = known | (unknown - db.missing(unknown, store))
        out = []
        for t in tracked:
            out.append(ArtifactStatus(t.path, self.workspace_state(t), t.pointer.manifest not in missing_cache,
                                      None if on_remote is None else t.pointer.manifest in on_remote))
        return remote_name, out

    # ------------------------------------------------------------ commit

    def commit(self, message: str) -> str:
        if not message.strip():
            raise UserInputError("empty commit message (use -m MESSAGE)")
        paths = [self.config_path, self.dir / ".gitignore"]
        index = self.git.repo.open_index()
        for t in self.tracked():
            paths.append(self.root / t.pointer_path)
            gi = (self.root / t.path).parent / ".gitignore"
            if gi.exists():
                paths.append(gi)
        for key in list(index):
            name = key.decode("utf-8", "surrogateescape")
            if name.endswith(".ckpt") and not (self.root / name).exists():
                paths.append(self.root / name)
        self.git.stage(sorted(set(paths)))
        if not self.git.staged_changes():
            raise UserInputError("nothing to commit: pointers and config match HEAD")
        return self.git.commit(message)

    # ------------------------------------------------------------ revisions

    def pointers_at(self, rev: str) -> dict[str, Pointer]:
        """Artifact path -> pointer, as of a git revision (read without moving HEAD)."""
        commit = self.git.resolve(rev)
        if commit is None:
            raise UserInputError(f"{rev}: unknown revision")
        out = {}
        for path, data in self.git.pointer_blobs(commit):
            out[path[: -len(".ckpt")]] = Pointer.from_bytes(data, f"{path}@{rev}")
        return out

    def all_history_manifests(self) -> set[str]:
        manifests = set()
        seen_blobs: set[bytes] = set()
        store = self.git.repo.object_store
        for commit in self.git.walk_commits():
            for entry in store.iter_tree_contents(commit.tree):
                if entry.path.endswith(b".ckpt") and entry.sha not in seen_blobs:
                    seen_blobs.add(entry.sha)
                    data = store[entry.sha].data
                    with contextlib.suppress(CkptvcError):
                        manifests.add(Pointer.from_bytes(data, entry.path.decode()).manifest)
        return manifests

    # ------------------------------------------------------------ transfers

    def push(self, remote: str | None = None, all_commits: bool = False, paths: list[str] | None = None):
        from ckptvc import transfer

        name, store = self.remote_store(remote)
        if isinstance(store, LocalStore):
            store.ensure()
        manifests = {t.pointer.manifest for t in self.tracked(paths)}
        if all_commits:
            manifests |= {m for m in self.all_history_manifests() if ObjectDB(self.cache).has(m)}
        stats = transfer.push(ObjectDB(self.cache), store, manifests, self._transfer_jobs(store), self.progress,
                              recoded=self.state.recoded())
        self.state.mark_pushed(name, sorted(manifests))
        return name, stats

    def _transfer_jobs(self, store: Store) -> int:
        configured = getattr(store, "jobs", None)
        if configured:
            return int(configured)
        return max(self.jobs * 4, 8) if getattr(store, "url", "").startswith("s3://") else max(self.jobs * 2, 4)

    def fetch(self, remote: str | None = None, rev: str | None = None, paths: list[str] | None = None,
              all_commits: bool = False):
        from ckptvc import transfer

        name, store = self.remote_store(remote)
        manifests = {p.manifest for p in self._target_pointers(rev, paths).values()}
        if all_commits:
            manifests |= self.all_history_manifests()
        self.cache.ensure()
        stats = transfer.fetch(ObjectDB(self.cache), store, manifests, self._transfer_jobs(store), self.progress)
        return name, stats

    def _target_pointers(self, rev: str | None, paths: list[str] | None) -> dict[str, Pointer]:
        if rev is None:
            return {t.path: t.pointer for t in self.tracked(paths)}
        at_rev = self.pointers_at(rev)
        if not paths:
            return at_rev
        wanted = {}
        for raw in paths:
            rel = self._rel(self._abs(raw))
            if rel.endswith(".ckpt"):
                rel = rel[:-5]
            hits = {k: v for k, v in at_rev.items() if k == rel or k.startswith(rel.rstrip("/") + "/")}
            if not hits:
                raise UserInputError(f"{raw}: not tracked at {rev}")
            wanted.update(hits)
        return wanted

    def pull(self, remote: str | None = None, rev: str | None = None, paths: list[str] | None = None,
             force: bool = False) -> CheckoutResult:
        self.fetch(remote, rev, paths)
        return self.checkout(rev, paths, force=force, remote=remote)

    # ------------------------------------------------------------ checkout

    def resolve_target(self, args: list[str]) -> tuple[str | None, list[str]]:
        """Split `checkout` arguments into (revision, paths). A first argument that
        names a tracked path (a pointer in the work tree) is a path; otherwise, if it
        resolves as a git revision (branch, tag, ckpt tag, commit), it is the revision."""
        if not args:
            return None, []
        first, rest = args[0], args[1:]
        try:
            p = self._abs(first)
            is_path = pointer_path_for(p).is_file() or (p.name.endswith(".ckpt") and p.is_file()) or (
                p.is_dir() and bool(find_pointer_files(self.root, p)))
        except UserInputError:
            is_path = False
        if is_path:
            return None, args
        if self.git.resolve(first) is not None:
            return first, rest
        raise UserInputError(f"{first}: neither a tracked path nor a git revision")

    def checkout(self, rev: str | None = None, paths: list[str] | None = None, force: bool = False,
                 remote: str | None = None, output: str | None = None) -> CheckoutResult:
        from ckptvc import transfer
        from ckptvc.restore import restore_file

        targets = self._target_pointers(rev, paths)
        current = {t.path: t for t in self.tracked()} if rev is not None else {}
        result = CheckoutResult(rev=rev)
        db = ObjectDB(self.cache)
        needed = sorted({p.manifest for p in targets.values()} - set())
        missing = db.missing(needed)
        remote_name = remote or self.config.default_remote or None
        if missing:
            if not remote_name:
                raise MissingObjectError(
                    f"{len(missing)} artifact version(s) are not in the cache and no remote is set")
            _, store = self.remote_store(remote_name)
            self.cache.ensure()
            transfer.fetch(db, store, missing, self._transfer_jobs(store), self.progress)
        if remote_name:
            db = ObjectDB(self.cache, [self.remote_store(remote_name)[1]])
        out_root = Path(output).resolve() if output else self.root
        # decide everything before changing anything
        plan = []
        for path, ptr in sorted(targets.items()):
            dest = out_root / path
            if not dest.exists() and not dest.is_symlink():
                plan.append((path, ptr, "restore"))
                continue
            if self._matches(dest, ptr):
                plan.append((path, ptr, "clean"))
                continue
            if not force:
                cur = current.get(path) if (rev is not None and output is None) else None
                if cur is None or not self._matches(dest, cur.pointer):
                    raise WorkspaceConflictError(
                        f"{dest}: has changes that are not added; 'ckptvc add' it first or use --force")
            plan.append((path, ptr, "restore"))
        for path, ptr, action in plan:
            dest = out_root / path
            if action == "clean":
                result.unchanged.append(path)
            else:
                manifest = db.get_manifest(ptr.manifest)
                self._restore_artifact(db, manifest, dest, path, restore_file)
                result.restored.append(path)
            if output is None and rev is not None:
                pf = self.root / (path + ".ckpt")
                if not pf.exists() or pf.read_bytes() != ptr.to_bytes():
                    atomic_write_file(pf, ptr.to_bytes())
                add_to_gitignore(self.root, dest)
        return result

    def _restore_artifact(self, db: ObjectDB, manifest: Manifest, dest: Path, label: str, restore_file) -> None:
        if manifest.kind == "file":
            fe = manifest.files[0]
            if dest.is_dir():
                raise WorkspaceConflictError(f"{label}: is a directory in the workspace; remove it first")
            restore_file(db, fe, dest, self.jobs, self.progress, label)
            self._record_state(dest, fe)
            return
        if dest.exists() and not dest.is_dir():
            raise WorkspaceConflictError(f"{label}: is a file in the workspace; remove it first")
        for fe in manifest.files:
            fdest = dest / fe.path
            restore_file(db, fe, fdest, self.jobs, self.progress, f"{label}/{fe.path}")
            self._record_state(fdest, fe)
        wanted = {fe.path for fe in manifest.files}
        for fp, entry in self._files_of(dest):
            if entry not in wanted:
                fp.unlink()  # content of the restored version only; unknown files were refused earlier

    def _record_state(self, dest: Path, fe: FileEntry) -> None:
        try:
            key = dest.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return  # restored outside the work tree (-o DIR)
        self.state.record(key, FileStamp.of(dest.stat()), fe.blake3, None)

    # ------------------------------------------------------------ log

    def log(self, path: str | None = None, rev: str = "HEAD") -> list[LogEntry]:
        from dulwich.diff_tree import tree_changes

        want = None
        if path:
            want = self._rel(self._abs(path))
            if want.endswith(".ckpt"):
                want = want[:-5]
        head = self.git.resolve(rev)
        if head is None:
            return []
        store = self.git.repo.object_store
        entries = []
        for walk in self.git.repo.get_walker(include=[head.id]):
            c = walk.commit
            parent_tree = store[c.parents[0]].tree if c.parents else None
            for change in tree_changes(store, parent_tree, c.tree):
                new = change.new
                if new is None or new.path is None or not new.path.endswith(b".ckpt"):
                    continue
                p = new.path.decode("utf-8", "surrogateescape")[:-5]
                if want and p != want and not p.startswith(want.rstrip("/") + "/"):
                    continue
                try:
                    ptr = Pointer.from_bytes(store[new.sha].data, f"{p}.ckpt@{c.id.decode()[:8]}")
                except CkptvcError:
                    continue
                entries.append(LogEntry(p, c.id.decode(), c.commit_time,
                                        c.message.decode("utf-8", "replace").strip(), ptr.size,
                                        ptr.stored_bytes, ptr.blake3, ptr.manifest))
        return entries


def _entry_to_state(fe: FileEntry) -> dict:
    m = Manifest("file", [FileEntry("", fe.size, fe.blake3, fe.chunks, fe.executable, fe.format, fe.tensors,
                                    fe.metadata, fe.delta_run)])
    return json.loads(m.to_bytes())


def _entry_from_state(doc: dict, path: str) -> FileEntry | None:
    try:
        fe = Manifest.from_bytes(json.dumps(doc).encode(), "state").files[0]
    except CkptvcError:
        return None
    fe.path = path
    return fe
