"""Metadata of artifact versions (schema 1, docs/formats.md "Metadata").

Metadata lives apart from the data, where a fresh clone has it without fetching a
byte of any artifact:

- in the pointer's `meta` (small: environment, code commit, lineage references,
  metrics, labels, a tensor summary);
- in *metadata objects*: content-addressed files under `.ckptvc/meta/` committed to
  git next to the pointers (the installed-package list, the per-tensor table used by
  `ckptvc diff`, untracked config files, a large safetensors `__metadata__`).

Everything here is pure or touches only the work tree and git: no store, no printing.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import platform
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ckptvc.errors import UserInputError
from ckptvc.ids import hash_bytes, is_valid_id, new_hasher

SCHEMA = 1
META_DIR = ".ckptvc/meta"
# metadata objects up to this size may be kept in git (configs, package lists, tables)
MAX_META_OBJECT = 16 << 20
MAX_INLINE_HEADER = 8 << 10
MAX_METRICS = 32 << 10
MAX_CONFIG = 1 << 20
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


# ------------------------------------------------------------ metadata objects (in git)


def meta_object_relpath(oid: str) -> str:
    return f"{META_DIR}/{oid[:2]}/{oid[2:]}"


def put_meta_object(root: Path, data: bytes) -> str:
    """Write `data` under `.ckptvc/meta/` (atomically, once); returns its id (blake3)."""
    from ckptvc.stores.local import atomic_write_file

    oid = hash_bytes(data)
    path = root / meta_object_relpath(oid)
    if not path.is_file() or path.stat().st_size != len(data):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_file(path, data)
    return oid


def read_meta_object(git, oid: str, commits: list[bytes] | tuple = ()) -> bytes | None:
    """A metadata object's bytes, verified, from the work tree or from git (the given
    commits first, then HEAD, then every ref). None when nowhere to be found."""
    from dulwich.object_store import tree_lookup_path

    if not is_valid_id(oid):
        return None
    rel = meta_object_relpath(oid)
    p = git.root / rel
    with contextlib.suppress(OSError):
        data = p.read_bytes()
        if hash_bytes(data) == oid:
            return data
    repo = git.repo
    store = repo.object_store
    tried: set[bytes] = set()

    def candidates():
        yield from commits
        with contextlib.suppress(KeyError):
            yield repo.head()
        for ref, sha in repo.get_refs().items():
            if ref.startswith((b"refs/heads/", b"refs/tags/", b"refs/remotes/")):
                yield sha

    for sha in candidates():
        if not sha or sha in tried:
            continue
        tried.add(sha)
        try:
            obj = store[sha]
            while obj.type_name == b"tag":
                obj = store[obj.object[1]]
            if obj.type_name != b"commit":
                continue
            _, blob_id = tree_lookup_path(store.__getitem__, obj.tree, rel.encode())
            data = store[blob_id].data
        except (KeyError, NotADirectoryError, ValueError):
            continue
        if hash_bytes(data) == oid:
            return data
    return None


def meta_objects_in_worktree(root: Path) -> list[Path]:
    base = root / META_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob("??/*") if p.is_file() and not p.name.startswith("."))


# ------------------------------------------------------------ environment


_DIST_RE = re.compile(r"^(.+?)-([^-]+?)\.(dist-info|egg-info)$")


@functools.lru_cache(maxsize=1)
def package_list() -> str:
    """The installed Python distributions, one `name==version` a line, sorted by
    normalised name. Read from the `NAME-VERSION.dist-info` directory names on
    sys.path, as importlib.metadata finds them (first one wins), without parsing
    every METADATA file (that costs a quarter of a second)."""
    seen: dict[str, str] = {}
    for d in sys.path:
        try:
            names = sorted(os.listdir(d or "."))
        except OSError:
            continue
        for n in names:
            m = _DIST_RE.match(n)
            if m:
                key = re.sub(r"[-_.]+", "-", m.group(1)).lower()
                seen.setdefault(key, f"{key}=={m.group(2)}")
    return "".join(line + "\n" for _, line in sorted(seen.items()))


def packages_digest(text: str | None = None) -> str:
    return hash_bytes((package_list() if text is None else text).encode())


def _torch_facts(probe: bool) -> dict | None:
    """GPU and CUDA facts from torch: only if torch is already imported (a training
    loop) or CKPTVC_PROBE_TORCH=1 (importing torch costs seconds on every add)."""
    torch = sys.modules.get("torch")
    if torch is None and (probe or os.environ.get("CKPTVC_PROBE_TORCH") == "1"):
        try:
            import torch  # type: ignore[no-redef]
        except Exception:  # noqa: BLE001
            return None
    if torch is None:
        return None
    facts: dict[str, Any] = {"version": str(getattr(torch, "__version__", ""))}
    try:
        facts["cuda"] = getattr(torch.version, "cuda", None)
        cudnn = getattr(torch.backends, "cudnn", None)
        if cudnn is not None and cudnn.is_available():
            facts["cudnn"] = cudnn.version()
        if torch.cuda.is_available():
            gpus = []
            for i in range(torch.cuda.device_count()):
                prop = torch.cuda.get_device_properties(i)
                gpus.append({"name": prop.name, "memory": int(prop.total_memory),
                             "capability": f"{prop.major}.{prop.minor}"})
            facts["gpus"] = gpus
    except Exception:  # noqa: BLE001 - torch without a working CUDA stack
        pass
    return {k: v for k, v in facts.items() if v is not None}


def current_env(probe_torch: bool = False) -> dict:
    """The environment facts recorded with every version (package list digest only)."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = os.environ.get("USER", "")
    env: dict[str, Any] = {
        "user": user,
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": packages_digest(),
        "packages_count": package_list().count("\n"),
    }
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        env["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    torch = _torch_facts(probe_torch)
    if torch:
        env["torch"] = torch
    return env


_CKPTVC_MANAGED = (".ckpt", "/.gitignore")


def _managed(path: str) -> bool:
    return path.endswith(_CKPTVC_MANAGED) or path == ".gitignore" or path.startswith(".ckptvc/")


def changed_paths(git, ignore_managed: bool = True) -> list[str]:
    """Tracked paths with staged or unstaged changes (untracked files do not count).
    With ignore_managed, pointer files, .gitignore files and .ckptvc/ are skipped.
    Never rewrites the index."""
    try:
        paths = _changed_paths_from_index(git)
    except (ImportError, TypeError, AttributeError):  # a dulwich without these helpers
        paths = _changed_paths_porcelain(git)
    return sorted(p for p in paths if not (ignore_managed and _managed(p)))


def _changed_paths_from_index(git) -> set[str]:
    # what porcelain.status does for tracked files, without importing porcelain (its
    # import costs ~0.08 s of every `ckptvc add`, which records this on each version)
    from dulwich.index import get_unstaged_changes

    repo = git.repo
    index = repo.open_index()
    head = git.head()
    raw: set[bytes | str] = set()
    for (old, new), _modes, _shas in index.changes_from_tree(repo.object_store, head.tree if head else None):
        raw.add(new if new is not None else old)
    normalizer = repo.get_blob_normalizer()
    raw.update(get_unstaged_changes(index, repo.path, normalizer.checkin_normalize if normalizer else None))
    return {p.decode("utf-8", "surrogateescape") if isinstance(p, bytes) else p for p in raw}


def _changed_paths_porcelain(git) -> set[str]:
    from dulwich import porcelain

    st = porcelain.status(git.repo, untracked_files="no", optional_locks=False)
    paths: set[str] = set()
    for key in ("add", "delete", "modify"):
        for p in st.staged.get(key, []):
            paths.add(p.decode("utf-8", "surrogateescape") if isinstance(p, bytes) else p)
    for p in st.unstaged:
        paths.add(p.decode("utf-8", "surrogateescape") if isinstance(p, bytes) else p)
    return paths


def code_state(git) -> dict:
    """The code commit (HEAD) and whether tracked code differed from it."""
    head = git.head()
    state: dict[str, Any] = {"commit": head.id.decode() if head is not None else None}
    try:
        ref = git.repo.refs.read_ref(b"HEAD")
        if ref and ref.startswith(b"ref: refs/heads/"):
            state["branch"] = ref[len(b"ref: refs/heads/"):].decode("utf-8", "replace")
    except (KeyError, OSError):
        pass
    try:
        state["dirty"] = bool(changed_paths(git))
    except Exception:  # noqa: BLE001 - an unreadable index: say we do not know
        state["dirty"] = None
    return state


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------ tensors


def tensor_summary(files) -> dict | None:
    """count, parameters and dtypes, from the manifest entries (read from headers)."""
    count = params = nbytes = 0
    dtypes: dict[str, int] = {}
    formats = set()
    from ckptvc.objects.formats import DTYPE_WIDTH

    for fe in files:
        if fe.format == "raw":
            continue
        formats.add(fe.format)
        for dtype, shape in fe.tensors.values():
            n = 1
            for d in shape:
                n *= int(d)
            count += 1
            params += n
            nbytes += n * DTYPE_WIDTH.get(dtype, 0)
            dtypes[dtype] = dtypes.get(dtype, 0) + 1
    if not formats:
        return None
    out: dict[str, Any] = {"format": "+".join(sorted(formats))}
    if count:
        out.update({"count": count, "params": params, "bytes": nbytes, "dtypes": dtypes})
    return out


def file_tensor_table(path: Path, fe) -> dict[str, list]:
    """name -> [dtype, shape, bytes, digest] for one checkpoint file. The digest is
    the blake3 of the tensor's bytes for small tensors, of its piece ids for large
    ones (pieces are content ids: no data is read twice)."""
    from ckptvc.objects.chunking import SMALL
    from ckptvc.objects.formats import detect_layout

    if fe.format == "raw":
        return {}
    layout = detect_layout(path, fe.size)
    if layout is None:
        return {}
    by_label = {c.label: c.id for c in fe.chunks}
    table: dict[str, list] = {}
    with open(path, "rb") as f:
        for r in layout.regions:
            digest = None
            if r.length >= SMALL:
                ids = []
                k = 0
                while f"{r.name}#{k}" in by_label:
                    ids.append(by_label[f"{r.name}#{k}"])
                    k += 1
                if ids:
                    digest = hash_bytes(("\n".join(ids)).encode())[:32]
            if digest is None:
                h = new_hasher()
                f.seek(r.offset)
                left = r.length
                while left:
                    block = f.read(min(left, 8 << 20))
                    if not block:
                        break
                    h.update(block)
                    left -= len(block)
                digest = h.hexdigest()[:32]
            table[r.name] = [r.dtype or "?", list(r.shape), r.length, digest]
    return table


def tensor_table_bytes(table: dict[str, list]) -> bytes:
    doc = {"ckptvc_tensors": 1, "tensors": table}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def parse_tensor_table(data: bytes) -> dict[str, list] | None:
    try:
        doc = json.loads(data)
        if doc.get("ckptvc_tensors") != 1 or not isinstance(doc.get("tensors"), dict):
            return None
        return doc["tensors"]
    except (ValueError, AttributeError):
        return None


def table_from_manifest(manifest) -> dict[str, list]:
    """A tensor table from a manifest alone (versions added without a stored table):
    dtype and shape of every tensor; a digest only where a tensor has its own chunks."""
    from ckptvc.objects.formats import DTYPE_WIDTH

    table: dict[str, list] = {}
    for fe in manifest.files:
        by_name: dict[str, list[str]] = {}
        for c in fe.chunks:
            name, sep, piece = c.label.rpartition("#")
            if sep and piece.isdigit():
                by_name.setdefault(name, []).append(c.id)
        for name, (dtype, shape) in fe.tensors.items():
            n = 1
            for d in shape:
                n *= int(d)
            ids = by_name.get(name)
            digest = hash_bytes("\n".join(ids).encode())[:32] if ids else None
            key = f"{fe.path}:{name}" if fe.path else name
            table[key] = [dtype, list(shape), n * DTYPE_WIDTH.get(dtype, 0), digest]
    return table


# ------------------------------------------------------------ user-supplied metadata


def parse_labels(items: list[str] | tuple[str, ...] | dict | None) -> dict:
    """--meta KEY=VALUE items (or a dict) -> labels; values that read as JSON numbers,
    booleans or null are kept typed, the rest are strings."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else None
    out: dict[str, Any] = {}
    if pairs is None:
        parsed = []
        for item in items:
            if "=" not in item:
                raise UserInputError(f"--meta {item!r}: expected KEY=VALUE")
            k, v = item.split("=", 1)
            parsed.append((k, _typed(v)))
        pairs = parsed
    for k, v in pairs:
        if not isinstance(k, str) or not _LABEL_KEY.match(k):
            raise UserInputError(f"--meta {k!r}: keys are letters, digits, '_', '.', '-' (at most 64)")
        if not isinstance(v, (str, int, float, bool)) and v is not None:
            raise UserInputError(f"--meta {k}: values are strings, numbers or booleans")
        out[k] = v
    if len(json.dumps(out)) > MAX_METRICS:
        raise UserInputError("--meta: too much metadata (keep it under 32 KiB; use --metrics FILE or --config)")
    return out


def _typed(text: str) -> Any:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and value not in (float("inf"), float("-inf")) else text


def load_metrics(source: str | os.PathLike[str] | dict) -> dict:
    """--metrics FILE.json (a JSON object) or a dict from the Python API."""
    where = "metrics"
    if isinstance(source, dict):
        doc = source
    else:
        where = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UserInputError(f"{where}: cannot read metrics: {exc.strerror}") from None
        if len(data) > MAX_METRICS:
            raise UserInputError(f"{where}: metrics file is larger than 32 KiB")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserInputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise UserInputError(f"{where}: metrics must be a JSON object")
    try:
        text = json.dumps(doc, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"{where}: metrics must be plain JSON values ({exc})") from None
    if len(text) > MAX_METRICS:
        raise UserInputError(f"{where}: metrics are larger than 32 KiB")
    return json.loads(text)


def parse_dataset_uri(spec: str) -> dict | None:
    """`URI@DIGEST` (a dataset outside the repository) -> reference, else None."""
    if "://" not in spec:
        return None
    uri, sep, digest = spec.rpartition("@")
    if not sep or not uri or "://" not in uri:
        raise UserInputError(f"--dataset {spec}: a URI needs a digest: URI@DIGEST (e.g. s3://b/train@sha256:...)")
    if not re.fullmatch(r"[A-Za-z0-9:+._\-]{4,200}", digest):
        raise UserInputError(f"--dataset {spec}: digest {digest!r} is not a content digest")
    if any(c.isspace() for c in uri) or "\0" in uri:
        raise UserInputError(f"--dataset {spec}: the URI has white space")
    return {"path": uri, "digest": digest}


# ------------------------------------------------------------ reading metadata back


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": scalar}; lists are kept as values."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k in sorted(value):
            out.update(flatten(value[k], f"{prefix}{k}."))
        if not value and prefix:
            out[prefix[:-1]] = {}
    else:
        out[prefix[:-1] if prefix else ""] = value
    return out


def environment_differences(recorded: dict, recorded_packages: str | None) -> dict:
    """What differs between a recorded environment and this process's environment."""
    now = current_env()
    diffs: dict[str, Any] = {}
    for key in ("python", "implementation", "platform"):
        if key in recorded and recorded.get(key) != now.get(key):
            diffs[key] = [recorded.get(key), now.get(key)]
    rec_torch = (recorded.get("torch") or {}).get("version")
    now_torch = (now.get("torch") or {}).get("version")
    if rec_torch and rec_torch != now_torch:
        diffs["torch"] = [rec_torch, now_torch]
    if recorded.get("packages") and recorded.get("packages") != now["packages"]:
        pk: dict[str, Any] = {"digest": [recorded.get("packages"), now["packages"]]}
        if recorded_packages is not None:
            old = _pkg_map(recorded_packages)
            new = _pkg_map(package_list())
            pk["added"] = sorted(f"{k}=={new[k]}" for k in new.keys() - old.keys())
            pk["removed"] = sorted(f"{k}=={old[k]}" for k in old.keys() - new.keys())
            pk["changed"] = sorted(f"{k} {old[k]} -> {new[k]}" for k in old.keys() & new.keys()
                                   if old[k] != new[k])
        diffs["packages"] = pk
    return diffs


def _pkg_map(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            out[name] = version
    return out
