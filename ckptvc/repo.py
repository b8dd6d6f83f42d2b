"""Repository operations: the Python API under the CLI.

    repo = ckptvc.Repo.open(".")
    repo.add(["runs/r7/step-4000.safetensors"])
    repo.commit("r7 step 4000")
    repo.push()

Nothing here prints; long operations report through a Progress callback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import time
from collections.abc import Iterable, Iterator
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
from ckptvc.parallel import WorkerPools, default_jobs
from ckptvc.pointer import Pointer, artifact_path_for, pointer_path_for, read_pointer
from ckptvc.progress import NULL_PROGRESS, Progress
from ckptvc.state import FileStamp, StateDB
from ckptvc.stores.base import Store
from ckptvc.stores.factory import open_store
from ckptvc.stores.local import LocalStore, atomic_write_file, stale_files
from ckptvc.workspace import TrackedArtifact, find_pointer_files, load_tracked

CKPTVC_DIR = ".ckptvc"
CONFIG_FILE = "config.toml"
# A replaced workspace file left in .ckptvc/tmp/replaced by a killed checkout is
# deleted by a later one once it is this old (a younger one may be in a running
# checkout's hands).
REPLACED_GRACE_S = 60
_GITIGNORE_BODY = "/cache/\n/state/\n/tmp/\n/config.local.toml\n"


@dataclass
class AddedArtifact:
    path: str
    pointer_path: str
    size: int
    new_bytes: int
    unchanged: bool
    blake3: str = ""

    @property
    def id(self) -> str:
        """The version id (`ckpt:PATH@BLAKE3[:12]`), as lineage names it."""
        return f"ckpt:{self.path}@{self.blake3[:12]}"


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
    inputs: list[str] = field(default_factory=list)  # artifacts restored because a version names them
    configs: list[str] = field(default_factory=list)  # config files written from metadata objects
    missing_inputs: list[str] = field(default_factory=list)  # named inputs not found in history
    code: str | None = None  # the code commit checked out (--with-code)
    summary: list[dict] = field(default_factory=list)  # reproduction facts per artifact


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
    meta: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"ckpt:{self.path}@{self.blake3[:12]}"

    def to_dict(self) -> dict:
        from ckptvc.lineage import edges_of

        inputs: dict[str, str] = {}
        for e in edges_of(self.path, Pointer("file", self.size, self.blake3, self.manifest, meta=self.meta)):
            inputs[e.rel] = e.source
        return {"path": self.path, "commit": self.commit,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.date)),
                "message": self.message, "size": self.size, "stored_bytes": self.stored_bytes,
                "blake3": self.blake3, "manifest": self.manifest, "id": self.id,
                "metrics": self.meta.get("metrics", {}), "labels": self.meta.get("labels", {}),
                "seed": self.meta.get("seed"), "inputs": inputs}

    def record(self) -> dict:
        """The fields `log --where` and `--sort` see (metrics, labels and meta resolve too)."""
        d = self.to_dict()
        d["time"] = self.date
        d["meta"] = self.meta
        return d


def dir_digest(files: list[FileEntry]) -> str:
    """A directory artifact's blake3: of its sorted (path, size, blake3) list."""
    listing = [[f.path, f.size, f.blake3] for f in sorted(files, key=lambda f: f.path)]
    return hash_bytes(json.dumps(listing, separators=(",", ":")).encode())


def _written(files: Iterable[Path]) -> int:
    """When an artifact was last written: the newest mtime (ns) of its files; 0 when
    none can be read."""
    newest = 0
    for f in files:
        with contextlib.suppress(OSError):
            newest = max(newest, f.stat().st_mtime_ns)
    return newest


class Repo:
    def __init__(self, git: GitRepo, config: Config, progress: Progress = NULL_PROGRESS):
        self.git = git
        self.root = git.root
        self.config = config
        self.progress = progress
        self.dir = self.root / CKPTVC_DIR
        self.cache = LocalStore(self.dir / "cache")
        self._trash_swept = False
        self._temps_swept: set[Path] = set()
        self._state: StateDB | None = None
        self._remote_stores: dict[str, Store] = {}
        self.jobs = default_jobs(config.get_int("jobs"))
        self._fsync_checkout = bool(config.core["fsync_checkout"])

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", remote_url: str | None = None) -> Repo:
        git = GitRepo.discover(path)
        controldir = Path(git.repo.controldir())  # a broken .git fails here, before anything is made
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

        repo.hook_action = install_pre_push(controldir)
        return repo

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".", progress: Progress = NULL_PROGRESS) -> Repo:
        git = GitRepo.discover(path)
        cfg_path = git.root / CKPTVC_DIR / CONFIG_FILE
        if not cfg_path.exists():
            raise UserInputError(f"{git.root}: not a ckptvc repository (run 'ckptvc init')")
        return cls(git, Config.load(cfg_path), progress)

    def close(self) -> None:
        # objects written by reads that healed or filled the cache wait for a sync; if
        # it fails they stay unpublished (absent), which every reader handles
        for store in [self.cache, *self._remote_stores.values()]:
            with contextlib.suppress(CkptvcError):
                store.sync()
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
            meta: dict | None = None, *, dataset: str | None = None, tokenizer: str | None = None,
            config: str | None = None, metrics: str | os.PathLike[str] | dict | None = None,
            labels: list[str] | dict | None = None, seed: int | None = None) -> list[AddedArtifact]:
        """Store artifacts and write their pointers, with metadata (docs/formats.md,
        "Metadata"): captured (code commit, environment, tensor summary) and given
        (parent, dataset, tokenizer, config, metrics, labels, seed). Tokenizer and
        dataset paths that are not tracked yet (or changed) are added first."""
        from ckptvc import metadata as md
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
        # everything the user gave is checked before anything is written
        user: dict = {}
        parent_ptr = None
        if parent:
            parent_ptr, user["parent"] = self._resolve_parent(parent)
        if metrics is not None:
            user["metrics"] = md.load_metrics(metrics)
        if labels:
            user["labels"] = md.parse_labels(labels)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise UserInputError(f"--seed {seed!r}: must be an integer")
            user["seed"] = seed
        inputs: list[tuple[str, Path]] = []
        if dataset:
            uri = md.parse_dataset_uri(dataset)
            if uri is not None:
                user["dataset"] = uri
            else:
                inputs.append(("dataset", self._input_path(dataset, "dataset")))
        if tokenizer:
            inputs.append(("tokenizer", self._input_path(tokenizer, "tokenizer")))
        config_data: tuple[str, bytes] | None = None
        if config:
            cp = self._input_path(config, "config")
            if pointer_path_for(cp).is_file():
                inputs.append(("config", cp))
            else:
                if not cp.is_file():
                    raise UserInputError(f"--config {config}: not a file")
                if cp.stat().st_size > md.MAX_CONFIG:
                    raise UserInputError(f"--config {config}: larger than 1 MiB; 'ckptvc add' it, then pass it again")
                config_data = (self._rel(cp), cp.read_bytes())
        parent_files = None
        if parent_ptr is not None:
            try:
                parent_files = {f.path: f for f in self.objectdb().get_manifest(parent_ptr.manifest).files}
            except CkptvcError:
                parent_files = {}
        self.cache.ensure()
        self.cache.clean_tmp()  # leftovers of an add or fetch killed long ago
        db = self.objectdb(with_remotes=False)
        with Ingester(db, self._policy(), self.progress, self.dir / "tmp" / "recode.lock") as ingester:
            auto = {"env": md.current_env(), "code": md.code_state(self.git)}
            md.put_meta_object(self.root, md.package_list().encode())
            results: list[AddedArtifact] = []
            for role, p in inputs:
                user[role] = self._ensure_tracked(p, ingester, db, auto, results)
            if config_data is not None:
                oid = md.put_meta_object(self.root, config_data[1])
                user["config"] = {"path": config_data[0], "blake3": oid, "size": len(config_data[1])}
            # (path, kind, files, when written) of what this call has stored, for delta bases. The
            # oldest artifact goes first: each one's base is then the one written before it,
            # and the newest ends standalone (a glob gives step-1000 before step-200)
            added_here: list[tuple[Path, str, dict[str, FileEntry], int]] = []
            listed = [self._files_of(p) for p in targets]
            order = sorted(range(len(targets)), key=lambda i: _written(fp for fp, _ in listed[i]))
            done: dict[int, AddedArtifact] = {}
            for i in order:
                done[i] = self._add_one(targets[i], ingester, db, parent_files, meta or {}, auto, user, added_here,
                                        listed[i])
            results.extend(done[i] for i in range(len(targets)))
        return results

    def _input_path(self, raw: str, role: str) -> Path:
        """An input named on the command line: a file, a directory or a pointer."""
        from ckptvc.pointer import looks_like_pointer

        p = self._abs(raw)
        if p.name.endswith(".ckpt") and p.is_file() and looks_like_pointer(p):
            p = p.with_name(p.name[:-5])
        if not p.exists() and not pointer_path_for(p).is_file():
            raise UserInputError(f"--{role} {raw}: no such file, directory or tracked artifact")
        if p.is_symlink():
            raise UserInputError(f"--{role} {raw}: is a symbolic link; name the file it points to")
        return p

    def _ensure_tracked(self, p: Path, ingester, db: ObjectDB, auto: dict, results: list) -> dict:
        """A reference to the tracked version of `p`, adding it first when it is not
        tracked yet or has changed since it was added."""
        pf = pointer_path_for(p)
        ptr = read_pointer(pf, self._rel(pf)) if pf.is_file() else None
        if p.exists() and (ptr is None or self._state_of(p, ptr) != "clean"):
            results.append(self._add_one(p, ingester, db, None, {}, auto, {}))
            ptr = read_pointer(pf, self._rel(pf))
        assert ptr is not None
        return {"path": self._rel(p), "blake3": ptr.blake3, "manifest": ptr.manifest}

    def _resolve_parent(self, parent: str) -> tuple[Pointer, dict]:
        """`--parent PATH[@REV]` -> (its pointer, the metadata reference to it)."""
        raw = parent
        rev = None
        if "@" in parent:
            parent, rev = parent.rsplit("@", 1)
        p = self._abs(parent)
        if p.name.endswith(".ckpt") and not pointer_path_for(p).is_file():
            p = p.with_name(p.name[:-5])
        rel = self._rel(p)
        rel_pointer = self._rel(pointer_path_for(p))
        ref: dict = {"path": rel}
        if rev:
            commit = self.git.resolve(rev)
            if commit is None:
                raise UserInputError(f"--parent {raw}: unknown revision {rev!r}")
            blobs = dict(self.git.pointer_blobs(commit))
            if rel_pointer not in blobs:
                raise UserInputError(f"--parent {raw}: not tracked at {rev}")
            ptr = Pointer.from_bytes(blobs[rel_pointer], f"{rel_pointer}@{rev}")
            ref["commit"] = commit.id.decode()
        else:
            pf = pointer_path_for(p)
            if not pf.is_file():
                raise UserInputError(f"--parent {raw}: not a tracked artifact")
            ptr = read_pointer(pf, rel_pointer)
        ref.update({"blake3": ptr.blake3, "manifest": ptr.manifest})
        return ptr, ref

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
                 meta: dict, auto: dict | None = None, user: dict | None = None,
                 added_here: list[tuple[Path, str, dict[str, FileEntry], int]] | None = None,
                 file_list: list[tuple[Path, str]] | None = None) -> AddedArtifact:
        rel = self._rel(p)
        pf = pointer_path_for(p)
        user = user or {}
        old: Pointer | None = None
        if pf.exists():
            old = read_pointer(pf, self._rel(pf))
        if parent_files is None and old is not None:
            try:
                parent_files = {f.path: f for f in db.get_manifest(old.manifest).files}
            except CkptvcError:
                parent_files = None
        if file_list is None:
            file_list = self._files_of(p)
        kind = "file" if p.is_file() else "dir"
        written = _written(fp for fp, _ in file_list)
        if parent_files is None and old is None:
            from ckptvc.delta_base import MIN_BASE_BYTES, find_delta_base

            total = sum(fp.stat().st_size for fp, _ in file_list)
            if total >= MIN_BASE_BYTES:
                candidates = self._base_candidates(p, kind, total, written, db, added_here or [])
                parent_files = find_delta_base(file_list, candidates)
        new_bytes = 0
        state = self.state
        stats = [fp.stat() for fp, _ in file_list]
        stored_entries: dict[int, FileEntry] = {}
        # A folder's files are stored oldest first, each new one with no file at its own
        # path in the parent version taking an older sibling as its delta base (a folder
        # of checkpoints: delta_base.sibling_file_base). (path, entry, when written).
        siblings: list[tuple[str, FileEntry, int]] = []
        if kind == "dir":
            siblings = [(fe.path, fe, 0) for fe in (parent_files or {}).values()]
        for i in sorted(range(len(file_list)), key=lambda i: (stats[i].st_mtime_ns, i) if kind == "dir" else i):
            fp, entry_path = file_list[i]
            st = stats[i]
            known = state.lookup(self._rel(fp), FileStamp.of(st))
            fe = None
            if known and known[1] and db.has(known[1].get("manifest", "")):
                fe = _entry_from_state(known[1]["entry"], entry_path)
            if fe is None:
                parent_entry = (parent_files or {}).get(entry_path)
                if parent_entry is None and siblings:
                    from ckptvc.delta_base import sibling_file_base

                    parent_entry = sibling_file_base(fp, entry_path, st.st_mtime_ns, siblings)
                stored = ingester.store_file(fp, entry_path, parent_entry)
                fe = stored.entry
                new_bytes += stored.new_bytes
                if stored.recoded:
                    state.mark_recoded(stored.recoded)
            stored_entries[i] = fe
            if kind == "dir":
                siblings.append((entry_path, fe, st.st_mtime_ns))
        files = [stored_entries[i] for i in range(len(file_list))]
        manifest = Manifest(kind, files)
        mid = db.put_manifest(manifest)
        if added_here is not None:
            added_here.append((p, kind, {fe.path: fe for fe in files}, written))
        # each file's stamp from before it was read: a stat now could see a write made
        # since (with an old mtime, as tar x or rsync -t leave, not even racy) and pair
        # it with the content that was read
        for (fp, _), fe, st in zip(file_list, files, stats, strict=True):
            state.mark_saved(self._rel(fp), fe.blake3, mid)
            state.record(self._rel(fp), FileStamp.of(st), fe.blake3,
                         {"manifest": mid, "entry": _entry_to_state(fe)})
        digest = files[0].blake3 if kind == "file" else dir_digest(files)
        if old is not None and old.manifest == mid and not meta and not user:
            return AddedArtifact(rel, self._rel(pf), manifest.size, 0, True, digest)
        same_content = old is not None and old.blake3 == digest and old.kind == kind
        if same_content:
            assert old is not None
            merged_meta = dict(old.meta)  # re-annotating a version: its captured facts stay
            if auto is not None and "schema" not in merged_meta:
                merged_meta.update(self._auto_meta(file_list, kind, files, auto))
        else:
            merged_meta = self._auto_meta(file_list, kind, files, auto) if auto is not None else {}
            if old is not None and auto is not None and "parent" not in user:
                merged_meta["parent"] = {"path": rel, "blake3": old.blake3, "manifest": old.manifest,
                                         "implicit": True}
        merged_meta.update(user)
        merged_meta.update(meta)
        # new_bytes is the store's net growth: re-coding the parent can make it negative
        ptr = Pointer(kind, manifest.size, digest, mid, max(new_bytes, 0), merged_meta, dict(old.extra) if old else {})
        atomic_write_file(pf, ptr.to_bytes())
        add_to_gitignore(self.root, p)
        return AddedArtifact(rel, self._rel(pf), manifest.size, new_bytes, False, digest)

    def _base_candidates(self, p: Path, kind: str, size: int, written: int, db: ObjectDB,
                         added_here: list[tuple[Path, str, dict[str, FileEntry], int]]) -> Iterator[dict[str, FileEntry]]:
        """Tracked artifacts of `kind` and about `size` bytes that may share the layout of
        the new one at `p`, likeliest first: those of its name in sibling directories
        (delta_base.same_name_elsewhere), then the others beside it; each group what
        this add stored before it (newest first), then the pointers (newest first).
        None written after `p` (by its files' mtimes): the base is re-coded as a delta,
        and a later checkpoint must stay the quick one to restore."""
        from ckptvc.delta_base import same_name_elsewhere, sibling_pointers

        def near(n: int) -> bool:
            return size // 2 <= n <= size * 2

        def cousin(path: Path) -> bool:
            return same_name_elsewhere(path.as_posix(), p.as_posix())

        seen = {path for path, *_ in added_here}  # judged from memory
        arts = [(pf, art) for pf in sibling_pointers(p, self.root) if (art := artifact_path_for(pf)) not in seen]
        for first in (True, False):
            for path, k, files, when in reversed(added_here):
                if cousin(path) == first and k == kind and when <= written and near(sum(f.size for f in files.values())):
                    yield files
            for pf, art in arts:
                if cousin(art) != first:
                    continue
                try:
                    ptr = read_pointer(pf)
                    if ptr.kind != kind or not near(ptr.size):
                        continue
                    files = {f.path: f for f in db.get_manifest(ptr.manifest).files}
                except (CkptvcError, OSError):
                    continue  # a broken neighbour is no base; it is not ours to report here
                if _written([art / f for f in files] if kind == "dir" else [art]) <= written:
                    yield files

    def _auto_meta(self, file_list: list[tuple[Path, str]], kind: str, files: list[FileEntry], auto: dict) -> dict:
        """Facts captured at add (metadata schema 1): no tensor data is read except
        small tensors' bytes for the tensor table (large ones use their chunk ids)."""
        from ckptvc import metadata as md

        m: dict = {"schema": md.SCHEMA, "created": md.now_iso(), "env": auto["env"], "code": auto["code"]}
        summary = md.tensor_summary(files)
        if summary is not None:
            table: dict[str, list] = {}
            for (fp, entry), fe in zip(file_list, files, strict=True):
                for name, row in md.file_tensor_table(fp, fe).items():
                    table[f"{entry}:{name}" if entry else name] = row
            if table:
                if "count" not in summary:  # torch zips: storages, not named tensors
                    summary.update({"storages": len(table), "bytes": sum(r[2] for r in table.values())})
                summary["table"] = md.put_meta_object(self.root, md.tensor_table_bytes(table))
            m["tensors"] = summary
        if kind == "file" and files[0].metadata:
            header = files[0].metadata
            encoded = json.dumps(header, sort_keys=True).encode()
            if len(encoded) <= md.MAX_INLINE_HEADER:
                m["header"] = header
            else:
                m["header_object"] = md.put_meta_object(self.root, encoded)
        return m

    # ------------------------------------------------------------ status

    def _matches(self, dest: Path, ptr: Pointer) -> bool:
        return self._state_of(dest, ptr) == "clean"

    def workspace_state(self, t: TrackedArtifact, rehash: bool = True) -> str:
        """clean | modified | missing, from the stat cache when it can."""
        return self._state_of(self.root / t.path, t.pointer, rehash, key=t.path)

    def _state_of(self, p: Path, ptr: Pointer, rehash: bool = True, key: str | None = None) -> str:
        """`key`: the path's state-cache key when the caller knows it (saves resolving
        every path: status of 100 files spends its time on such calls)."""
        try:
            st = os.stat(p)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        if ptr.kind == "file":
            if not stat.S_ISREG(st.st_mode):
                return "modified"
            digest = self._file_digest(p, rehash, st, key)
            return "clean" if digest == ptr.blake3 else "modified"
        if not stat.S_ISDIR(st.st_mode):
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

    def _file_digest(self, fp: Path, rehash: bool, st: os.stat_result | None = None,
                     key: str | None = None) -> str | None:
        from ckptvc.ids import new_hasher

        stamp = FileStamp.of(st or fp.stat())
        if key is None:
            try:
                key = fp.resolve().relative_to(self.root).as_posix()
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
        from ckptvc.metadata import meta_objects_in_worktree

        paths = [self.config_path, self.dir / ".gitignore"]
        index = self.git.repo.open_index()
        tracked = self.tracked()
        for t in tracked:
            paths.append(self.root / t.pointer_path)
            gi = (self.root / t.path).parent / ".gitignore"
            if gi.exists():
                paths.append(gi)
        for key in list(index):
            name = key.decode("utf-8", "surrogateescape")
            if name.endswith(".ckpt") and not (self.root / name).exists():
                paths.append(self.root / name)
        for mp in meta_objects_in_worktree(self.root):
            if self._rel(mp).encode() not in index:
                paths.append(mp)  # metadata objects: content-addressed, committed once
        self.git.stage(sorted(set(paths)))
        if not self.git.staged_changes():
            raise UserInputError("nothing to commit: pointers and config match HEAD")
        trailers = self._lineage_trailers(tracked)
        if trailers:
            message = message.rstrip() + "\n\n" + "\n".join(trailers) + "\n"
        return self.git.commit(message)

    def _lineage_trailers(self, tracked: list[TrackedArtifact]) -> list[str]:
        """Trailers for each artifact version this commit adds (or re-annotates)."""
        from ckptvc.lineage import trailers_for

        head = self.git.head()
        at_head = dict(self.git.pointer_blobs(head)) if head is not None else {}
        lines: list[str] = []
        for t in sorted(tracked, key=lambda t: t.path):
            if at_head.get(t.pointer_path) != t.pointer.to_bytes():
                lines.extend(trailers_for(t.path, t.pointer))
        return lines

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
        """Every artifact version any branch, tag or remote-tracking ref reaches."""
        return set(self.git.pointer_versions(self.git.walk_commits())[0])

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
        # a local directory is bound by the disk; an object store by round trips
        return max(self.jobs * 2, 4) if isinstance(store, LocalStore) else max(self.jobs * 4, 8)

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
        self.remote_store(remote)  # a pull needs a remote even when nothing is missing
        # checkout fetches what is missing (streaming it from a network remote)
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
                 remote: str | None = None, output: str | None = None, with_code: bool = False) -> CheckoutResult:
        """Restore artifacts (verified by hash). With a revision or ckptvc tag, the
        inputs each restored version names (tokenizer, config, tracked dataset, a parent
        at another path) come too, and `with_code` also checks out the code commit the
        version recorded (refusing over a work tree with uncommitted changes)."""
        from ckptvc import transfer
        from ckptvc.restore import restore_file

        if with_code and rev is None:
            raise UserInputError("--with-code needs a revision or tag (ckptvc checkout TAG --with-code)")
        targets = self._target_pointers(rev, paths)
        result = CheckoutResult(rev=rev)
        configs: list[tuple[str, bytes]] = []
        primary = dict(targets)
        if rev is not None:
            from ckptvc import tags

            record = tags.local_tag(self, rev)
            if record is not None and not paths:
                wanted = {(a["path"], a["blake3"]) for a in record.targets()}
                primary = {p: v for p, v in targets.items() if (p, v.blake3) in wanted}
            targets, configs = self._with_inputs(rev, primary, result)
        code_commit = None
        if with_code:
            code_commit = self._code_commit(primary)
            if output is None:
                from ckptvc.metadata import changed_paths

                changed = changed_paths(self.git, ignore_managed=False)
                if changed:
                    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                    raise WorkspaceConflictError(
                        f"--with-code: the work tree has uncommitted changes ({', '.join(changed[:3])}{more}); "
                        "commit or stash them first")
        current = {t.path: t for t in self.tracked()} if rev is not None else {}
        db = cache_db = ObjectDB(self.cache)
        needed = sorted({p.manifest for p in targets.values()})
        missing = db.missing(needed)
        remote_name = remote or self.config.default_remote or None
        streamed: dict[str, tuple[bytes, Manifest]] = {}
        stream_from: Store | None = None
        if missing:
            if not remote_name:
                raise MissingObjectError(
                    f"{len(missing)} artifact version(s) are not in the cache and no remote is set")
            _, store = self.remote_store(remote_name)
            self.cache.ensure()
            # The objects stream in as the restore reaches them, several ahead of the
            # decoders: over a network read through into the cache and checked, from a
            # local directory on the same filesystem hard-linked (ObjectDB.link_in), so
            # the transfer overlaps the decoding and writing instead of preceding it (a
            # local remote's headers, read cold one by one to learn delta bases, took
            # 0.3-0.5 s before a restore could start). The fetch after the restore
            # brings whatever is left and then stores the manifests.
            streamed = transfer.read_manifests(store, missing)
            stream_from = store
        if remote_name:
            db = ObjectDB(self.cache, [self.remote_store(remote_name)[1]])
            if stream_from is not None:
                db.fetch_ahead_jobs = self._transfer_jobs(stream_from)
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
                saved = (cur is not None and self._matches(dest, cur.pointer)) or (
                    output is None and self._is_saved(dest, db))
                if not saved:
                    raise WorkspaceConflictError(
                        f"{dest}: has changes that are not added; 'ckptvc add' it first or use --force")
            plan.append((path, ptr, "restore"))
        for path, data in configs:
            self._check_config_overwrite(out_root / path, path, data, force or (with_code and output is None),
                                         output is None)
        if code_commit is not None:
            self._checkout_code(code_commit, Path(output).resolve() if output else None)
            result.code = code_commit
        with WorkerPools() as pools:  # one set of decoders for every file restored
            restore = functools.partial(restore_file, pools=pools)
            for path, ptr, action in plan:
                dest = out_root / path
                if action == "clean":
                    result.unchanged.append(path)
                else:
                    manifest = (streamed[ptr.manifest][1] if ptr.manifest in streamed
                                else db.get_manifest(ptr.manifest))
                    self._restore_artifact(db, manifest, dest, path, restore, ptr.manifest)
                    result.restored.append(path)
                if path not in primary:
                    result.inputs.append(path)
                if rev is not None and (output is None or code_commit is not None):
                    pf = out_root / (path + ".ckpt")
                    if not pf.exists() or pf.read_bytes() != ptr.to_bytes():
                        atomic_write_file(pf, ptr.to_bytes())
                    if output is None:
                        add_to_gitignore(self.root, dest)
        if stream_from is not None:
            # what the restore decoded is in the cache with its chains: only the rest is
            # walked (a MiniLM version five deltas deep: 1,368 headers, 0.05-0.08 s)
            transfer.fetch(cache_db, stream_from, missing, self._transfer_jobs(stream_from), self.progress,
                           manifests=streamed, complete=db.decoded)
        for path, data in configs:
            dest = out_root / path
            if not dest.is_file() or dest.read_bytes() != data:
                dest.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_file(dest, data)
            result.configs.append(path)
        if rev is not None:
            result.summary = self._reproduction(primary, code_commit)
        return result

    def _with_inputs(self, rev: str, primary: dict[str, Pointer],
                     result: CheckoutResult) -> tuple[dict[str, Pointer], list[tuple[str, bytes]]]:
        """Add to the versions restored the inputs they name: tracked ones as artifacts
        (the revision's pointer when it is that version, else the version from history),
        configs kept as metadata objects as (path, bytes)."""
        from ckptvc import metadata as md
        from ckptvc.ids import is_valid_id
        from ckptvc.lineage import History, version_id
        from ckptvc.tags import inputs_of

        targets = dict(primary)
        at_rev = self.pointers_at(rev)
        commit = self.git.resolve(rev)
        configs: dict[str, bytes] = {}
        history = None
        for path, ptr in sorted(primary.items()):
            for a in inputs_of(path, ptr):
                if a["path"] in targets:
                    continue
                cand = at_rev.get(a["path"])
                if cand is None or cand.blake3 != a["blake3"]:
                    if history is None:
                        history = History.load(self)
                    v = history.versions().get(version_id(a["path"], a["blake3"]))
                    cand = v.pointer if v is not None else None
                if cand is None:
                    result.missing_inputs.append(version_id(a["path"], a["blake3"]))
                    continue
                targets[a["path"]] = cand
            ref = ptr.meta.get("config")
            if isinstance(ref, dict) and "manifest" not in ref and is_valid_id(ref.get("blake3")):
                cpath = ref.get("path")
                if not isinstance(cpath, str) or cpath in targets or cpath in configs:
                    continue
                data = md.read_meta_object(self.git, ref["blake3"], [commit.id] if commit is not None else [])
                if data is None:
                    result.missing_inputs.append(f"config:{cpath}@{ref['blake3'][:12]}")
                    continue
                configs[cpath] = data
        return targets, sorted(configs.items())

    def _check_config_overwrite(self, dest: Path, rel: str, data: bytes, force: bool, in_place: bool) -> None:
        if force or not dest.exists():
            return
        if not dest.is_file():
            raise WorkspaceConflictError(f"{dest}: is not a file; cannot restore the config there")
        current = dest.read_bytes()
        if current == data:
            return
        if in_place:
            head = self.git.head()
            if head is not None:
                from dulwich.object_store import tree_lookup_path

                store = self.git.repo.object_store
                with contextlib.suppress(KeyError, NotADirectoryError):
                    _, sha = tree_lookup_path(store.__getitem__, head.tree, rel.encode())
                    if store[sha].data == current:
                        return  # a committed version: git has it, overwriting loses nothing
        raise WorkspaceConflictError(f"{dest}: config has changes that are not committed; commit it or use --force")

    def _code_commit(self, primary: dict[str, Pointer]) -> str:
        commits = {}
        for path, ptr in primary.items():
            code = ptr.meta.get("code")
            if isinstance(code, dict) and isinstance(code.get("commit"), str):
                commits.setdefault(code["commit"], []).append(path)
        if not commits:
            raise UserInputError("--with-code: no code commit was recorded for "
                                 + (", ".join(sorted(primary)) or "these artifacts"))
        if len(commits) > 1:
            raise UserInputError("--with-code: these artifacts were made from different code commits "
                                 f"({', '.join(c[:10] for c in sorted(commits))}); name one artifact")
        sha = next(iter(commits))
        try:
            obj = self.git.repo[sha.encode()]
        except (KeyError, ValueError):
            raise MissingObjectError(f"--with-code: code commit {sha[:10]} is not in this repository "
                                     "(was it pushed? try 'git fetch')") from None
        if obj.type_name != b"commit":
            raise MissingObjectError(f"--with-code: {sha[:10]} is not a commit")
        return sha

    def _checkout_code(self, sha: str, output: Path | None) -> None:
        """Move HEAD (detached) and the work tree to `sha`, or export its tree under
        `output` when restoring elsewhere."""
        from dulwich import porcelain

        if output is None:
            # a code commit older than `ckptvc init`'s commit has no .ckptvc/: keep ours usable
            keep = {p: p.read_bytes() for p in (self.config_path, self.dir / ".gitignore") if p.is_file()}
            try:
                porcelain.checkout(self.git.repo, target=sha)
            except Exception as exc:  # dulwich raises several types for refused checkouts
                if exc.__class__.__name__ in ("CheckoutError", "Error"):
                    raise WorkspaceConflictError(f"--with-code: cannot check out {sha[:10]}: {exc}") from None
                raise
            for p, data in keep.items():
                if not p.exists():
                    atomic_write_file(p, data)
            return
        store = self.git.repo.object_store
        commit = self.git.repo[sha.encode()]
        for entry in store.iter_tree_contents(commit.tree):
            rel = entry.path.decode("utf-8", "surrogateescape")
            try:
                check_relative_path(rel)
            except ValueError:
                continue
            dest = output / rel
            kind = entry.mode & 0o170000
            if kind == 0o100000:
                dest.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_file(dest, store[entry.sha].data)
                if entry.mode & 0o111:
                    dest.chmod(0o755)
            elif kind == 0o120000 and not dest.exists() and not dest.is_symlink():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(store[entry.sha].data.decode("utf-8", "surrogateescape"), dest)

    def _reproduction(self, primary: dict[str, Pointer], code_checked_out: str | None) -> list[dict]:
        from ckptvc import metadata as md
        from ckptvc.lineage import Reproduction, version_id

        out = []
        for path, ptr in sorted(primary.items()):
            meta = ptr.meta
            if "schema" not in meta:
                continue
            env = meta.get("env") if isinstance(meta.get("env"), dict) else {}
            code = dict(meta["code"]) if isinstance(meta.get("code"), dict) else None
            if code is not None:
                code["checked_out"] = code_checked_out is not None and code.get("commit") == code_checked_out
            config = meta.get("config") if isinstance(meta.get("config"), dict) else None
            packages = None
            if isinstance(env.get("packages"), str):
                data = md.read_meta_object(self.git, env["packages"])
                packages = data.decode("utf-8", "replace") if data is not None else None
            r = Reproduction(version_id(path, ptr.blake3), code,
                             {k: config[k] for k in ("path", "blake3") if k in config} if config else None,
                             meta.get("seed"),
                             {k: env.get(k) for k in ("python", "platform", "packages", "host", "user") if k in env},
                             md.environment_differences(env, packages))
            out.append(r.to_dict())
        return out

    def _restore_artifact(self, db: ObjectDB, manifest: Manifest, dest: Path, label: str, restore_file,
                          manifest_id: str | None = None) -> None:
        if manifest.kind == "file":
            fe = manifest.files[0]
            if dest.is_dir():
                raise WorkspaceConflictError(f"{label}: is a directory in the workspace; remove it first")
            self._sweep_temps(dest.parent)
            written = restore_file(db, fe, dest, self.jobs, self.progress, label, self._fsync_checkout,
                                   self._trash_dir())
            self._record_state(dest, fe, manifest_id, written)
            return
        if dest.exists() and not dest.is_dir():
            raise WorkspaceConflictError(f"{label}: is a file in the workspace; remove it first")
        for fe in manifest.files:
            fdest = dest / fe.path
            self._sweep_temps(fdest.parent)
            written = restore_file(db, fe, fdest, self.jobs, self.progress, f"{label}/{fe.path}",
                                   self._fsync_checkout, self._trash_dir())
            self._record_state(fdest, fe, manifest_id, written)
        wanted = {fe.path for fe in manifest.files}
        for fp, entry in self._files_of(dest):
            if entry not in wanted:
                fp.unlink()  # content of the restored version only; unknown files were refused earlier

    def _sweep_temps(self, directory: Path) -> None:
        """Delete what killed restores left in `directory` (once per directory): each is
        a hidden temp file as large as the artifact it was writing."""
        if directory not in self._temps_swept:
            self._temps_swept.add(directory)
            from ckptvc.restore import sweep_stale_temps

            sweep_stale_temps(directory)

    def _trash_dir(self) -> Path:
        """Where replaced workspace files wait for their background delete. What a
        killed process left there (the old content of a file it had replaced) goes
        the first time a checkout needs the directory; a minute's grace leaves alone
        what a concurrent checkout is still moving."""
        trash = self.dir / "tmp" / "replaced"
        if not self._trash_swept:
            self._trash_swept = True
            from ckptvc.restore import discard_later

            for leftover in stale_files(trash, REPLACED_GRACE_S, moved=True):
                discard_later(leftover)
        return trash

    def _record_state(self, dest: Path, fe: FileEntry, manifest: str | None, written: os.stat_result) -> None:
        """`written`: the restored file's stat taken before it was renamed into place. A
        stat of `dest` now could see another process's write since the rename (one that
        also set an old mtime, as `tar x` or `rsync -t` do, would not even be racy) and
        pair it with the restored content's hash."""
        try:
            key = dest.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return  # restored outside the work tree (-o DIR)
        self.state.record(key, FileStamp.of(written), fe.blake3, None)
        if manifest:
            self.state.mark_saved(key, fe.blake3, manifest)

    def _is_saved(self, dest: Path, db: ObjectDB) -> bool:
        """Is the workspace content at `dest` a version ckptvc stored (added or checked
        out here, and still in the cache or on a remote)? Then replacing it loses
        nothing: this is what `git checkout OLD && ckptvc checkout` meets."""
        files = [(dest, "")] if dest.is_file() else (self._files_of(dest) if dest.is_dir() else [])
        if not files:
            return False
        for fp, _ in files:
            digest = self._file_digest(fp, rehash=True)
            try:
                key = fp.resolve().relative_to(self.root).as_posix()
            except ValueError:
                return False
            manifest = self.state.saved_manifest(key, digest) if digest else None
            if manifest is None:
                return False
            if not db.has(manifest) and not any(manifest not in db.missing([manifest], r) for r in db.remotes):
                return False
        return True

    # ------------------------------------------------------------ log

    def log(self, path: str | None = None, rev: str = "HEAD", where: str | None = None,
            sort: str | None = None) -> list[LogEntry]:
        """Artifact versions in the history of `rev`, newest first; `where` filters
        (`loss < 0.5 and "ft" in path`), `sort` orders by a metric (`-acc`: descending).
        Reads git only (history cached per commit in .ckptvc/state/)."""
        from ckptvc import lineage

        predicate = lineage.compile_where(where) if where else None
        if sort is not None:
            lineage.sort_key(sort)
        want = None
        if path:
            want = self._rel(self._abs(path))
            if want.endswith(".ckpt"):
                want = want[:-5]
        head = self.git.resolve(rev)
        if head is None:
            return []
        history = lineage.History.load(self, include_worktree=False)
        entries = []
        for sha, p, blob, _ in history.walk_log(head.id.decode()):
            if want and p != want and not p.startswith(want.rstrip("/") + "/"):
                continue
            ptr = history.pointer(blob, f"{p}.ckpt@{sha[:8]}")
            if ptr is None:
                continue
            info = history.commits[sha]
            entries.append(LogEntry(p, sha, info["t"], lineage.strip_trailers(info["m"]), ptr.size,
                                    ptr.stored_bytes, ptr.blake3, ptr.manifest, ptr.meta))
        if predicate is not None or sort is not None:
            records = [(e.record(), e) for e in entries]
            if predicate is not None:
                records = [(r, e) for r, e in records if predicate(r)]
            if sort is not None:
                order = {id(r): e for r, e in records}
                return [order[id(r)] for r in lineage.sort_records([r for r, _ in records], sort)]
            return [e for _, e in records]
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
