"""Checkpoint-aware storage: formats understood, tensor dedup, deltas, chain bound,
hostile headers. Every case ends in a byte-identical restore."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import sys
import types

import numpy as np
import pytest
from conftest import cache_bytes, torch_like_zip, training_series, write_safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptvc.objects.formats import detect_layout
from ckptvc.objects.objectdb import ObjectDB
from ckptvc.repo import Repo

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _restore_and_compare(root, name: str, want: bytes) -> None:
    (root / name).unlink()
    with Repo.open(root) as repo:
        repo.checkout(paths=[name])
    assert (root / name).read_bytes() == want


def _set_chain(root, n: int) -> None:
    cfg = root / ".ckptvc" / "config.toml"
    cfg.write_text(cfg.read_text().replace("max_delta_chain = 8", f"max_delta_chain = {n}"))


DTYPES = [np.float32, np.float16, np.float64, np.int64, np.int32, np.int8, np.uint8, np.bool_, "bf16"]


@st.composite
def tensor_dicts(draw):
    n = draw(st.integers(1, 6))
    out, bf16 = {}, set()
    for i in range(n):
        dtype = draw(st.sampled_from(DTYPES))
        shape = tuple(draw(st.lists(st.integers(0, 70), min_size=0, max_size=3)))
        seed = draw(st.integers(0, 2**31))
        rng = np.random.default_rng(seed)
        size = int(np.prod(shape)) if shape else 1
        if dtype == "bf16":
            arr = rng.integers(0, 2**16, size, dtype=np.uint16).reshape(shape)
            bf16.add(f"t{i}")
        elif dtype == np.bool_:
            arr = rng.integers(0, 2, size).astype(np.bool_).reshape(shape)
        elif np.issubdtype(dtype, np.floating):
            arr = rng.standard_normal(size).astype(dtype).reshape(shape)
            if size:
                arr.flat[0] = np.nan
                arr.flat[-1] = np.inf
        else:
            info = np.iinfo(dtype)
            arr = rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True).reshape(shape)
        out[f"t{i}"] = arr
    return out, bf16


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions=st.lists(tensor_dicts(), min_size=1, max_size=3))
def test_safetensors_any_dtype_shape_round_trips_every_version(workdir, versions):
    with Repo.open(workdir) as repo:
        commits = []
        for tensors, bf16 in versions:
            write_safetensors(workdir / "m.safetensors", tensors, {"k": "v"}, bf16)
            repo.add([workdir / "m.safetensors"])
            try:
                sha = repo.commit("v")
            except Exception:  # same content as the previous version: nothing to commit
                sha = commits[-1][0]
            commits.append((sha, (workdir / "m.safetensors").read_bytes()))
        for sha, want in commits:
            repo.checkout(sha, force=True)
            assert (workdir / "m.safetensors").read_bytes() == want


def test_layout_of_safetensors_header_is_understood(tmp_path):
    t = {"a": np.zeros((3, 5), np.float32), "b": np.arange(7, dtype=np.int64)}
    p = write_safetensors(tmp_path / "x.safetensors", t, {"step": "3"})
    layout = detect_layout(p, p.stat().st_size)
    assert layout is not None and layout.format == "safetensors" and layout.metadata == {"step": "3"}
    assert [(r.name, r.width, r.length) for r in layout.regions] == [("a", 4, 60), ("b", 8, 56)]


def _hostile_header(kind: str) -> bytes:
    good = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    body = np.arange(8, dtype=np.float32).tobytes()
    if kind == "huge_length":
        return struct.pack("<Q", 2**63) + b"{}" + body
    if kind == "bad_json":
        h = b'{"a": {"dtype": '
        return struct.pack("<Q", len(h)) + h + body
    hdr = dict(good)
    if kind == "out_of_range":
        hdr["a"] = {"dtype": "F32", "shape": [4], "data_offsets": [0, 10**9]}
    elif kind == "overlap":
        hdr["b"] = {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}
    elif kind == "shape_lies":
        hdr["a"] = {"dtype": "F32", "shape": [400], "data_offsets": [0, 16]}
    elif kind == "negative":
        hdr["a"] = {"dtype": "F32", "shape": [-4], "data_offsets": [16, 0]}
    elif kind == "unknown_dtype":
        hdr["a"] = {"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}
    elif kind == "not_object":
        hdr = [1, 2, 3]
    raw = json.dumps(hdr).encode()
    return struct.pack("<Q", len(raw)) + raw + body


@pytest.mark.parametrize("kind", ["huge_length", "bad_json", "out_of_range", "overlap", "shape_lies", "negative",
                                  "unknown_dtype", "not_object"])
def test_hostile_safetensors_header_falls_back_to_plain_chunks(workdir, kind):
    data = _hostile_header(kind)
    p = workdir / "evil.safetensors"
    p.write_bytes(data)
    assert detect_layout(p, len(data)) is None
    with Repo.open(workdir) as repo:
        repo.add([p])
    _restore_and_compare(workdir, "evil.safetensors", data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=400), prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x10\x00\x00\x00"]))
def test_random_bytes_never_crash_format_detection(tmp_path, data, prefix):
    p = tmp_path / "f.bin"
    p.write_bytes(prefix + data)
    detect_layout(p, len(prefix + data))  # returns a layout or None, never raises


def test_torch_zip_saved_under_new_names_still_deltas_against_its_parent(workdir):
    """torch.save("ckpt-001.pt") puts its storages under ckpt-001/data/: a series saved
    under changing names must still pair each storage with the parent's."""
    rng = np.random.default_rng(3)
    v1 = [(rng.standard_normal(1 << 18) * 0.02).astype(np.float32) for _ in range(3)]
    # a small training step: every value moves, by about 1e-4 of itself
    v2 = [(a * (1 + rng.standard_normal(a.size) * 1e-4)).astype(np.float32) for a in v1]
    p = workdir / "model.pt"
    with Repo.open(workdir) as repo:
        torch_like_zip(p, v1, "ckpt-000")
        first = repo.add([p])[0].new_bytes
        torch_like_zip(p, v2, "ckpt-001")
        second = repo.add([p])[0].new_bytes
    assert second < first * 0.75, (first, second)  # the parent became a delta (its high halves)
    _restore_and_compare(workdir, "model.pt", p.read_bytes())


def _pickle_with_storages(protocol: int) -> bytes:
    """A data.pkl as torch.save writes it: persistent ids ('storage', <class>, key,
    location, numel), the second use of a class fetched from the memo."""
    fake = types.ModuleType("torch")
    for name in ("FloatStorage", "BFloat16Storage", "LongStorage"):
        setattr(fake, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    ids = {"a": ("storage", fake.FloatStorage, "0", "cpu", 6), "b": ("storage", fake.BFloat16Storage, "1", "cpu", 2),
           "c": ("storage", fake.FloatStorage, "2", "cpu", 5), "d": ("storage", fake.LongStorage, "3", "cpu", 3)}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ids.get(obj) if isinstance(obj, str) else None

    buf = io.BytesIO()
    saved = sys.modules.get("torch")
    sys.modules["torch"] = fake  # the classes are pickled by reference, as torch.<name>
    try:
        Pickler(buf, protocol=protocol).dump({k: k for k in ids})
    finally:
        if saved is None:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved
    return buf.getvalue()


@pytest.mark.parametrize("protocol", [2, 4])
def test_torch_pickle_gives_each_storage_its_dtype(protocol):
    from ckptvc.objects.formats import torch_storage_dtypes

    assert torch_storage_dtypes(_pickle_with_storages(protocol)) == {"0": "F32", "1": "BF16", "2": "F32", "3": "I64"}


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(min_value=0, max_value=400))
def test_hostile_torch_pickle_never_crashes(data, cut):
    from ckptvc.objects.formats import torch_storage_dtypes

    good = _pickle_with_storages(2)
    for blob in (data, good[:cut], good[:cut] + data):
        assert isinstance(torch_storage_dtypes(blob), dict)


def test_torch_zip_is_chunked_per_storage_and_dedups_frozen_ones(workdir):
    series = training_series(2, scale=4)
    p = workdir / "model.pt"
    torch_like_zip(p, list(series[0].values()))
    layout = detect_layout(p, p.stat().st_size)
    assert layout is not None and layout.format == "torch" and len(layout.regions) == len(series[0])
    with Repo.open(workdir) as repo:
        first = repo.add([p])[0]
        torch_like_zip(p, list(series[1].values()))
        second = repo.add([p])[0]
        v2 = p.read_bytes()
    frozen = series[0]["model.frozen"].nbytes
    assert second.new_bytes < first.new_bytes - frozen // 2
    _restore_and_compare(workdir, "model.pt", v2)


def test_real_torch_save_round_trips(workdir):
    torch = pytest.importorskip("torch")
    sd = {"w": torch.randn(300, 200), "b": torch.zeros(200, dtype=torch.bfloat16), "i": torch.arange(10)}
    p = workdir / "ckpt.pt"
    torch.save(sd, p)
    layout = detect_layout(p, p.stat().st_size)
    assert layout.format == "torch"
    assert [(r.name, r.dtype, r.width) for r in layout.regions] == [
        ("data/0", "F32", 4), ("data/1", "BF16", 2), ("data/2", "I64", 8)]
    with Repo.open(workdir) as repo:
        repo.add([p])
    _restore_and_compare(workdir, "ckpt.pt", p.read_bytes())


def test_sharded_checkpoint_directory_round_trips_and_dedups(workdir):
    series = training_series(2, scale=4)
    d = workdir / "sharded"
    names = list(series[0])
    half = len(names) // 2

    def write(k):
        t = series[k]
        write_safetensors(d / "model-00001-of-00002.safetensors", {n: t[n] for n in names[:half]})
        write_safetensors(d / "model-00002-of-00002.safetensors", {n: t[n] for n in names[half:]})
        index = {"weight_map": {n: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, n in enumerate(names)}}
        (d / "model.safetensors.index.json").write_text(json.dumps(index))

    write(0)
    with Repo.open(workdir) as repo:
        repo.add([d])
        repo.commit("shards v0")
        write(1)
        repo.add([d])
        sha = repo.commit("shards v1")
    want = {p.name: p.read_bytes() for p in d.iterdir()}
    import shutil

    shutil.rmtree(d)
    with Repo.open(workdir) as repo:
        repo.checkout(sha)
        assert {p.name: p.read_bytes() for p in d.iterdir()} == want


def test_frozen_tensors_cost_nothing_new(workdir):
    rng = np.random.default_rng(3)
    frozen = (rng.standard_normal((1024, 512)) * 0.02).astype(np.float32)  # 2 MiB
    with Repo.open(workdir) as repo:
        sizes = []
        for _ in range(3):
            t = {"frozen.embed": frozen, "head": rng.standard_normal((64, 64)).astype(np.float32)}
            write_safetensors(workdir / "m.safetensors", t)
            sizes.append(repo.add([workdir / "m.safetensors"])[0].new_bytes)
    assert sizes[0] > frozen.nbytes * 0.7
    assert sizes[1] < 40_000 and sizes[2] < 40_000


def test_same_base_model_in_two_runs_is_stored_once(workdir):
    series = training_series(1, scale=8)
    write_safetensors(workdir / "run-a.safetensors", series[0])
    write_safetensors(workdir / "run-b.safetensors", series[0], {"run": "b"})
    with Repo.open(workdir) as repo:
        a = repo.add([workdir / "run-a.safetensors"])[0]
        b = repo.add([workdir / "run-b.safetensors"])[0]
    assert b.new_bytes < a.new_bytes * 0.02


def test_series_is_stored_smaller_than_standalone_and_latest_is_standalone(workdir):
    series = training_series(5, scale=8)
    with Repo.open(workdir) as repo:
        raw = 0
        for t in series:
            write_safetensors(workdir / "m.safetensors", t)
            raw += (workdir / "m.safetensors").stat().st_size
            repo.add([workdir / "m.safetensors"])
            repo.commit("step")
        db = ObjectDB(repo.cache)
        latest = db.get_manifest(repo.pointers_at("HEAD")["m.safetensors"].manifest)
        assert all(db.info(c.id).base is None for c in latest.files[0].chunks)
        oldest = db.get_manifest(repo.pointers_at("HEAD~4")["m.safetensors"].manifest)
        assert sum(db.info(c.id).base is not None for c in oldest.files[0].chunks) >= 2  # weights, exp_avg_sq
    stored = sum(p.stat().st_size for p in (workdir / ".ckptvc/cache/objects").rglob("*") if p.is_file())
    assert stored < 0.8 * raw


def test_a_wrong_split_delta_is_refused_and_the_parent_kept(workdir, monkeypatch):
    """Re-coding a parent checks the part it codes anew: an encoder that gets the
    HI part wrong stops the add, and the parent version still restores."""
    from ckptvc.errors import CkptvcError
    from ckptvc.objects import codecs

    series = training_series(2, scale=8)
    write_safetensors(workdir / "m.safetensors", series[0])
    v1 = (workdir / "m.safetensors").read_bytes()
    with Repo.open(workdir) as repo:
        repo.add([workdir / "m.safetensors"])
        repo.commit("v1")
    real = codecs.encode_split

    def off_by_one(lo_part, raw, own_top, base_top, *rest):
        return real(lo_part, raw, own_top + np.uint16(1), base_top, *rest)

    write_safetensors(workdir / "m.safetensors", series[1])
    with monkeypatch.context() as patched:
        patched.setattr(codecs, "encode_split", off_by_one)
        with Repo.open(workdir) as repo, pytest.raises(CkptvcError, match="failed its check"):
            repo.add([workdir / "m.safetensors"])
    (workdir / "m.safetensors").write_bytes(v1)
    _restore_and_compare(workdir, "m.safetensors", v1)


def _max_chain(db: ObjectDB, oid: str) -> int:
    n = 0
    while (base := db.info(oid).base) is not None:
        oid = base
        n += 1
    return n


@pytest.mark.parametrize("bound", [0, 1, 3])
def test_delta_chain_bound_holds(workdir, bound):
    _set_chain(workdir, bound)
    series = training_series(9)
    with Repo.open(workdir) as repo:
        for t in series:
            write_safetensors(workdir / "m.safetensors", t)
            repo.add([workdir / "m.safetensors"])
            repo.commit("step")
        db = ObjectDB(repo.cache)
        worst = 0
        for k in range(len(series)):
            m = db.get_manifest(repo.pointers_at(f"HEAD~{k}")["m.safetensors"].manifest)
            worst = max([worst] + [_max_chain(db, c.id) for c in m.files[0].chunks])
    assert worst <= bound
    if bound:
        assert worst == bound  # deltas are actually used up to the bound


def test_add_prefetches_the_parent_chunks_it_recodes(workdir, monkeypatch):
    series = training_series(2)
    path = workdir / "model.safetensors"
    write_safetensors(path, series[0])
    with Repo.open(workdir) as repo:
        repo.add([path])
        parent_ids = {c.id for c in repo.objectdb().get_manifest(repo.tracked()[0].pointer.manifest).files[0].chunks}
    prefetched: list[str] = []
    real = ObjectDB.prefetch
    monkeypatch.setattr(ObjectDB, "prefetch", lambda self, oid: prefetched.append(oid) or real(self, oid))
    write_safetensors(path, series[1])
    with Repo.open(workdir) as repo:
        repo.add([path])
    assert prefetched and set(prefetched) <= parent_ids


def _small_step_series(n: int, seed: int = 5) -> list[dict[str, np.ndarray]]:
    """Checkpoints a few steps apart: every value moves by about 1e-4 of itself."""
    rng = np.random.default_rng(seed)
    cur = {f"layer{i}.weight": (rng.standard_normal(1 << 18) * 0.02).astype(np.float32) for i in range(3)}
    out = []
    for _ in range(n):
        out.append(dict(cur))
        cur = {k: (v * (1 + rng.standard_normal(v.size) * 1e-4)).astype(np.float32) for k, v in cur.items()}
    return out


@pytest.mark.parametrize("layout", ["beside", "folders", "one_add"])
def test_checkpoints_at_new_paths_are_deltas_against_a_neighbour(workdir, layout):
    """A run that writes each checkpoint under its own name gets deltas too: the new
    path has no previous version, so a neighbour with the same tensors is the base.
    Lineage is not claimed: no parent is recorded."""
    series = _small_step_series(3)
    names = {"beside": [f"run/step-{k}.safetensors" for k in range(3)],
             "folders": [f"run/checkpoint-{k}/model.safetensors" for k in range(3)],
             "one_add": [f"run/step-{k}.safetensors" for k in range(3)]}[layout]
    for name, tensors in zip(names, series, strict=True):
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(workdir / name, tensors)
    want = {name: (workdir / name).read_bytes() for name in names}
    with Repo.open(workdir) as repo:
        if layout == "one_add":
            new_bytes = [a.new_bytes for a in repo.add([workdir / n for n in names])]
        else:
            new_bytes = [repo.add([workdir / n])[0].new_bytes for n in names]
        assert all("parent" not in t.pointer.meta for t in repo.tracked())
    first, *later = new_bytes
    assert all(b < first * 0.75 for b in later), new_bytes  # each older one became a delta
    for name in names:
        _restore_and_compare(workdir, name, want[name])


def test_sharded_checkpoint_folders_at_new_paths_are_deltas_against_a_neighbour(workdir):
    """checkpoint-N/ folders, each one artifact of two shards: the shards pair with the
    same-named shards of the previous folder."""
    series = _small_step_series(2)
    dirs = ["run/checkpoint-0", "run/checkpoint-1"]
    for d, tensors in zip(dirs, series, strict=True):
        names = sorted(tensors)
        (workdir / d).mkdir(parents=True)
        write_safetensors(workdir / d / "model-00001-of-00002.safetensors", {n: tensors[n] for n in names[:2]})
        write_safetensors(workdir / d / "model-00002-of-00002.safetensors", {n: tensors[n] for n in names[2:]})
    want = {p: p.read_bytes() for d in dirs for p in sorted((workdir / d).iterdir())}
    with Repo.open(workdir) as repo:
        first = repo.add([workdir / dirs[0]])[0].new_bytes
        second = repo.add([workdir / dirs[1]])[0].new_bytes
    assert second < first * 0.75, (first, second)
    for d in dirs:
        shutil.rmtree(workdir / d)
    with Repo.open(workdir) as repo:
        repo.checkout(paths=dirs)
    assert all(p.read_bytes() == data for p, data in want.items())


@pytest.mark.parametrize("how", ["one_add", "folder_grows"])
def test_a_folder_of_checkpoints_codes_each_against_the_one_before(workdir, how):
    """outputs/ tracked as one artifact (a DVC habit): checkpoint-N/ folders inside it,
    all added at once or one more each time. A new file with no file at its own path
    in the previous version takes the newest older file of the same name (numbers
    aside) as its delta base; every version of the folder restores byte for byte. The
    shards of one checkpoint share a name but not their tensors: none is coded
    against another."""
    series = _small_step_series(3)
    out = workdir / "outputs"
    versions = []
    sizes = []
    with Repo.open(workdir) as repo:
        for k, tensors in enumerate(series):
            names = sorted(tensors)
            d = out / f"checkpoint-{(k + 1) * 500}"
            d.mkdir(parents=True)
            write_safetensors(d / "model-00001-of-00002.safetensors", {n: tensors[n] for n in names[:2]})
            write_safetensors(d / "model-00002-of-00002.safetensors", {n: tensors[n] for n in names[2:]})
            os.utime(d / "model-00001-of-00002.safetensors", ns=(k * 10**9, k * 10**9))
            os.utime(d / "model-00002-of-00002.safetensors", ns=(k * 10**9 + 1, k * 10**9 + 1))
            if how == "folder_grows" or k == len(series) - 1:
                repo.add([out])
                repo.commit(f"up to checkpoint {k}")
                versions.append({p: p.read_bytes() for p in sorted(out.rglob("*.safetensors"))})
            sizes.append(cache_bytes(workdir))
        fe = {f.path: f for f in repo.objectdb().get_manifest(repo.tracked()[0].pointer.manifest).files}
        log = repo.log("outputs")
    raw = sum(len(data) for data in versions[-1].values())
    # one checkpoint whole and two as deltas: 0.62x raw here; three wholes took 0.84x
    assert sizes[-1] < 0.7 * raw, (sizes[-1], raw)
    assert fe["checkpoint-1500/model-00001-of-00002.safetensors"].delta_run == 2
    assert fe["checkpoint-1000/model-00002-of-00002.safetensors"].delta_run == 1
    assert fe["checkpoint-500/model-00002-of-00002.safetensors"].delta_run == 0
    if how == "folder_grows":
        grew = [b - a for a, b in zip([0, *sizes[:-1]], sizes, strict=True)]
        assert grew[1] < 0.75 * grew[0] and grew[2] < 0.75 * grew[0], grew
    for entry, want in zip(reversed(log), versions, strict=True):
        shutil.rmtree(out)
        with Repo.open(workdir) as repo:
            repo.checkout(entry.commit, ["outputs"])
        assert {p: p.read_bytes() for p in sorted(out.rglob("*.safetensors"))} == want


def test_a_rank_file_takes_the_same_rank_of_the_previous_step_as_its_base(tmp_path):
    """ZeRO-style folders: every rank's file has the same layout. The base of
    global_step2/rank_1 is global_step1/rank_1 (same name, another folder), not the
    newer global_step2/rank_0 beside it (same step, another rank)."""
    from ckptvc.delta_base import sibling_file_base
    from ckptvc.objects.chunking import plan_tensor_chunks
    from ckptvc.objects.manifest import ChunkRef, FileEntry

    tensors = _small_step_series(1)[0]
    new = tmp_path / "rank_1.safetensors"
    write_safetensors(new, tensors)
    size = new.stat().st_size
    chunks = [ChunkRef("0" * 64, c.length, c.label) for c in plan_tensor_chunks(detect_layout(new, size), size)]

    def entry(path: str) -> FileEntry:
        return FileEntry(path, size, "0" * 64, chunks, format="safetensors")

    known = [(p, entry(p), when) for when, p in enumerate(
        ["global_step1/rank_0.safetensors", "global_step1/rank_1.safetensors", "global_step2/rank_0.safetensors"])]
    base = sibling_file_base(new, "global_step2/rank_1.safetensors", 10, known)
    assert base is not None and base.path == "global_step1/rank_1.safetensors"
    # flat: step-N files side by side, the newest older one
    flat = [(p, entry(p), when) for when, p in enumerate(["run/step-1.safetensors", "run/step-2.safetensors"])]
    assert sibling_file_base(new, "run/step-3.safetensors", 10, flat).path == "run/step-2.safetensors"
    # nothing written after the new file is a base
    assert sibling_file_base(new, "run/step-3.safetensors", 0, flat).path == "run/step-1.safetensors"


def test_a_rank_checkpoint_at_a_new_path_pairs_with_its_own_rank(workdir):
    """global_stepN/rank_R.safetensors, each its own artifact: every rank has the same
    layout, but only the same rank of the previous step is close in content. Its
    re-coding as a delta is what shrinks the store; rank 0 of the same step, beside
    the new file and written just before it, would not."""
    ranks = [_small_step_series(2, seed=5), _small_step_series(2, seed=6)]
    added = {}
    with Repo.open(workdir) as repo:
        for step in range(2):
            for rank in range(2):
                path = workdir / f"global_step{step}" / f"rank_{rank}.safetensors"
                path.parent.mkdir(exist_ok=True)
                write_safetensors(path, ranks[rank][step])
                added[step, rank] = repo.add([path])[0].new_bytes
    assert added[1, 1] < 0.75 * added[0, 1], added
    assert added[1, 0] < 0.75 * added[0, 0], added
    for step in range(2):
        for rank in range(2):
            name = f"global_step{step}/rank_{rank}.safetensors"
            _restore_and_compare(workdir, name, (workdir / name).read_bytes())


def test_a_neighbour_with_other_tensors_is_no_base(workdir):
    series = _small_step_series(1)
    write_safetensors(workdir / "a.safetensors", series[0])
    other = {f"other{i}": v for i, v in enumerate(series[0].values())}  # same bytes, other names
    write_safetensors(workdir / "b.safetensors", {k: (v + np.float32(1e-6)) for k, v in other.items()})
    with Repo.open(workdir) as repo:
        first = repo.add([workdir / "a.safetensors"])[0].new_bytes
        before = cache_bytes(workdir)
        second = repo.add([workdir / "b.safetensors"])[0].new_bytes
    assert second > first * 0.9 and cache_bytes(workdir) > before + first * 0.9  # stored on its own
    for name in ("a.safetensors", "b.safetensors"):
        _restore_and_compare(workdir, name, (workdir / name).read_bytes())


def test_sparse_update_is_coded_as_a_whole_element_delta(workdir):
    """When a step changes only some elements (a sparse update: embedding rows of the
    tokens seen), the rest are bit-identical: the old version becomes a small XOR
    delta, not a split delta that keeps every low half."""
    rng = np.random.default_rng(11)
    v1 = {f"emb{i}": (rng.standard_normal((1024, 256)) * 0.02).astype(np.float32) for i in range(3)}
    v2 = {}
    for name, a in v1.items():
        b = a.copy()
        rows = rng.choice(a.shape[0], a.shape[0] // 50, replace=False)  # 2% of the rows move
        b[rows] += (rng.standard_normal((len(rows), a.shape[1])) * 1e-4).astype(np.float32)
        v2[name] = b
    p = workdir / "m.safetensors"
    write_safetensors(p, v1)
    want_v1 = p.read_bytes()
    with Repo.open(workdir) as repo:
        first = repo.add([p])[0].new_bytes
        repo.commit("v1")
        write_safetensors(p, v2)
        second = repo.add([p])[0].new_bytes
    assert second < first * 0.2, (first, second)
    _restore_and_compare(workdir, "m.safetensors", p.read_bytes())
    with Repo.open(workdir) as repo:
        repo.checkout("HEAD", force=True)
    assert p.read_bytes() == want_v1  # the old version, decoded from its XOR delta


def _depths(repo, name: str) -> set[int]:
    db = repo.objectdb(False)
    (art,) = [t for t in repo.tracked() if t.path == name]
    # the tensors' chunks (the header's is the same in every version)
    return {db.info(c.id).depth for c in db.get_manifest(art.pointer.manifest).files[0].chunks if c.size >= 1 << 20}


@pytest.mark.parametrize("how", ["one_add_in_any_order", "newest_added_first"])
def test_the_newest_checkpoint_never_becomes_a_delta_of_an_older_one(workdir, how):
    """Deltas point backwards: whatever order paths are given or added in, the
    checkpoint written last (by mtime) stays standalone, quick to restore."""
    series = _small_step_series(3)
    names = [f"run/step-{k}.safetensors" for k in range(3)]
    (workdir / "run").mkdir()
    for k, (name, tensors) in enumerate(zip(names, series, strict=True)):
        write_safetensors(workdir / name, tensors)
        os.utime(workdir / name, ns=(1_700_000_000_000_000_000 + k * 10**9,) * 2)
    with Repo.open(workdir) as repo:
        if how == "one_add_in_any_order":
            repo.add([workdir / n for n in (names[2], names[0], names[1])])
            assert _depths(repo, names[0]) == {1} and _depths(repo, names[1]) == {1}  # older: deltas
        else:
            for n in reversed(names):
                repo.add([workdir / n])
            assert _depths(repo, names[0]) == {0} and _depths(repo, names[1]) == {0}  # no newer base
        assert _depths(repo, names[2]) == {0}


def test_a_broken_neighbour_pointer_does_not_stop_an_add(workdir):
    series = _small_step_series(2)
    (workdir / "run").mkdir()
    write_safetensors(workdir / "run/step-0.safetensors", series[0])
    (workdir / "run/notes.bin.ckpt").write_text("<<<<<<< HEAD\nnot a pointer\n")
    (workdir / "run/gone.safetensors.ckpt").write_bytes((workdir / "run/step-0.safetensors").read_bytes()[:100])
    with Repo.open(workdir) as repo:
        repo.add([workdir / "run/step-0.safetensors"])
        write_safetensors(workdir / "run/step-1.safetensors", series[1])
        (added,) = repo.add([workdir / "run/step-1.safetensors"])
    assert added.new_bytes > 0
    _restore_and_compare(workdir, "run/step-1.safetensors", (workdir / "run/step-1.safetensors").read_bytes())


@pytest.mark.parametrize("lost", ["manifest", "chunks"])
def test_a_neighbour_missing_from_the_cache_is_no_base(workdir, lost):
    """A fresh clone has its neighbours' pointers but not their objects until a pull:
    the add stores the new checkpoint whole and changes nothing of the neighbour."""
    from ckptvc.objects.objectdb import object_key

    series = _small_step_series(2)
    (workdir / "run").mkdir()
    write_safetensors(workdir / "run/step-0.safetensors", series[0])
    with Repo.open(workdir) as repo:
        repo.add([workdir / "run/step-0.safetensors"])
        (art,) = repo.tracked()
        db = repo.objectdb(False)
        chunks = [c.id for c in db.get_manifest(art.pointer.manifest).files[0].chunks]
    gone = [art.pointer.manifest] if lost == "manifest" else chunks
    for oid in gone:
        (workdir / ".ckptvc" / "cache" / object_key(oid)).unlink()
    write_safetensors(workdir / "run/step-1.safetensors", series[1])
    with Repo.open(workdir) as repo:
        (added,) = repo.add([workdir / "run/step-1.safetensors"])
        db = repo.objectdb(False)
        kept = [oid for oid in chunks if oid not in gone]
        assert all(db.info(oid).depth == 0 for oid in kept)  # the neighbour was not re-coded
    assert added.new_bytes > 0
    _restore_and_compare(workdir, "run/step-1.safetensors", (workdir / "run/step-1.safetensors").read_bytes())
