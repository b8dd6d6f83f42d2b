"""Metadata with every artifact version: captured at add (code, environment, tensors
from the header), supplied by the user (lineage inputs, metrics, labels, seed), kept
apart from the data (pointer + metadata objects in git), bad input refused."""

from __future__ import annotations

import json
import platform
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import clone, torch_like_zip, training_series, write_safetensors
from dulwich import porcelain

import ckptvc
from ckptvc import metadata as md
from ckptvc.ids import hash_bytes
from ckptvc.pointer import Pointer
from ckptvc.repo import Repo


def _ptr(root: Path, path: str) -> Pointer:
    return Pointer.from_bytes((root / (path + ".ckpt")).read_bytes(), path)


def _commit_code(root: Path, text: str = "print(1)\n") -> str:
    (root / "train.py").write_text(text)
    porcelain.add(str(root), [str(root / "train.py")])
    return porcelain.commit(str(root), message=b"code", author=b"T <t@e>", committer=b"T <t@e>").decode()


def _meta_object(root: Path, oid: str) -> bytes:
    data = (root / md.meta_object_relpath(oid)).read_bytes()
    assert hash_bytes(data) == oid
    return data


def test_add_captures_code_environment_and_tensors(workdir, cli):
    code = _commit_code(workdir)
    tensors = training_series(1)[0]
    write_safetensors(workdir / "m.safetensors", tensors, {"step": "40", "arch": "tiny"})
    cli("add", "m.safetensors")
    raw = (workdir / "m.safetensors.ckpt").read_bytes()
    assert len(raw) < 4096  # small: read whole by every query
    meta = Pointer.from_bytes(raw, "m").meta
    assert meta["schema"] == 1 and meta["created"].endswith("Z")
    assert meta["code"] == {"commit": code, "dirty": False, "branch": "master"}
    env = meta["env"]
    assert env["python"] == platform.python_version() and env["platform"] == platform.platform()
    assert env["user"] and env["host"] and "torch" not in env
    assert env["packages"] == hash_bytes(md.package_list().encode()) and env["packages_count"] > 10
    assert _meta_object(workdir, env["packages"]).decode() == md.package_list()
    assert "numpy==" in md.package_list()
    t = meta["tensors"]
    assert t["count"] == 6 and t["dtypes"] == {"F32": 5, "I64": 1} and t["format"] == "safetensors"
    assert t["params"] == sum(a.size for a in tensors.values())
    assert t["bytes"] == sum(a.nbytes for a in tensors.values())
    assert meta["header"] == {"step": "40", "arch": "tiny"}
    table = md.parse_tensor_table(_meta_object(workdir, t["table"]))
    assert set(table) == set(tensors)
    assert table["model.w"][:3] == ["F32", [256, 256], 256 * 256 * 4]
    assert table["model.bias"][3] == hash_bytes(tensors["model.bias"].tobytes())[:32]
    # the metadata objects are committed with the pointers: a fresh clone has them
    cli("commit", "-m", "m")
    with Repo.open(workdir) as repo:
        blobs = {e.path.decode() for e in repo.git.repo.object_store.iter_tree_contents(repo.git.head().tree)}
    assert md.meta_object_relpath(t["table"]) in blobs and md.meta_object_relpath(env["packages"]) in blobs


def test_dirty_code_is_recorded_but_ckptvc_files_do_not_count(workdir, cli):
    _commit_code(workdir)
    (workdir / "a.bin").write_bytes(b"a" * 1000)
    cli("add", "a.bin")  # writes a.bin.ckpt and .gitignore: not code
    (workdir / "b.bin").write_bytes(b"b" * 1000)
    cli("add", "b.bin")
    assert _ptr(workdir, "b.bin").meta["code"]["dirty"] is False
    (workdir / "train.py").write_text("print(2)\n")
    (workdir / "c.bin").write_bytes(b"c" * 1000)
    cli("add", "c.bin")
    assert _ptr(workdir, "c.bin").meta["code"]["dirty"] is True


def test_changed_paths_match_porcelain_status(workdir):
    """The index walk that replaced porcelain.status (for speed) reports the same
    tracked changes: staged adds, deletes and edits, unstaged edits; untracked files
    never count."""
    _commit_code(workdir)
    (workdir / "lib.py").write_text("x = 1\n")
    porcelain.add(str(workdir), paths=[str(workdir / "lib.py")])
    porcelain.commit(str(workdir), message=b"lib", author=b"T <t@e>", committer=b"T <t@e>")
    steps = [
        lambda: None,
        lambda: (workdir / "train.py").write_text("print(3)\n"),  # unstaged edit
        lambda: porcelain.add(str(workdir), paths=[str(workdir / "train.py")]),  # staged edit
        lambda: (workdir / "new.py").write_text("y = 2\n"),  # untracked: not a change
        lambda: porcelain.add(str(workdir), paths=[str(workdir / "new.py")]),  # staged add
        lambda: porcelain.remove(str(workdir), paths=[str(workdir / "lib.py")]),  # staged delete
    ]
    with ckptvc.Repo.open(workdir) as repo:
        for step in steps:
            step()
            fast = md._changed_paths_from_index(repo.git)
            assert fast == md._changed_paths_porcelain(repo.git)
        assert {"train.py", "new.py", "lib.py"} <= set(md.changed_paths(repo.git))


def test_gpu_and_cuda_facts_when_torch_is_loaded(workdir, monkeypatch):
    props = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85 << 30, major=9, minor=0)
    fake = types.SimpleNamespace(
        __version__="2.3.1", version=types.SimpleNamespace(cuda="12.1"),
        backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(is_available=lambda: True, version=lambda: 8902)),
        cuda=types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 2,
                                   get_device_properties=lambda i: props))
    monkeypatch.setitem(sys.modules, "torch", fake)
    (workdir / "x.bin").write_bytes(b"x" * 100)
    vid = ckptvc.log_checkpoint(workdir / "x.bin")
    torch = _ptr(workdir, "x.bin").meta["env"]["torch"]
    assert torch == {"version": "2.3.1", "cuda": "12.1", "cudnn": 8902,
                     "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory": 85 << 30, "capability": "9.0"}] * 2}
    assert vid == f"ckpt:x.bin@{_ptr(workdir, 'x.bin').blake3[:12]}"


def test_user_supplied_metadata(workdir, cli):
    code = _commit_code(workdir)
    series = training_series(3)
    write_safetensors(workdir / "base.safetensors", series[0])
    cli("add", "base.safetensors")
    cli("commit", "-m", "base")
    base = _ptr(workdir, "base.safetensors")
    (workdir / "tok").mkdir()
    (workdir / "tok" / "vocab.txt").write_text("a b c")
    (workdir / "cfg.yaml").write_text("lr: 3e-4\n")
    (workdir / "eval.json").write_text(json.dumps({"loss": 1.25, "eval": {"acc": 0.71}, "tag": "x"}))
    write_safetensors(workdir / "ft.safetensors", series[1])
    r = cli("add", "ft.safetensors", "--parent", "base.safetensors@HEAD", "--dataset", "s3://bkt/train@sha256:00ff",
            "--tokenizer", "tok/", "--config", "cfg.yaml", "--metrics", "eval.json",
            "--meta", "lr=3e-4", "--meta", "warmup=100", "--meta", "note=first try", "--meta", "ema=true",
            "--seed", "1234")
    assert "added      tok" in r.output  # the tokenizer was not tracked: it is added first
    meta = _ptr(workdir, "ft.safetensors").meta
    head = _commit_sha(workdir)
    assert meta["parent"] == {"path": "base.safetensors", "blake3": base.blake3, "manifest": base.manifest,
                              "commit": head}
    assert meta["dataset"] == {"path": "s3://bkt/train", "digest": "sha256:00ff"}
    tok = _ptr(workdir, "tok")
    assert meta["tokenizer"] == {"path": "tok", "blake3": tok.blake3, "manifest": tok.manifest}
    cfg = (workdir / "cfg.yaml").read_bytes()
    assert meta["config"] == {"path": "cfg.yaml", "blake3": hash_bytes(cfg), "size": len(cfg)}
    assert _meta_object(workdir, meta["config"]["blake3"]) == cfg
    assert meta["metrics"] == {"loss": 1.25, "eval": {"acc": 0.71}, "tag": "x"}
    assert meta["labels"] == {"lr": 0.0003, "warmup": 100, "note": "first try", "ema": True}
    assert meta["seed"] == 1234 and meta["code"]["commit"] == head != code
    # a config tracked as an artifact is referenced as one
    cli("add", "cfg.yaml")
    write_safetensors(workdir / "ft.safetensors", series[2])
    cli("add", "ft.safetensors", "--config", "cfg.yaml.ckpt", "--dataset", "tok")
    meta = _ptr(workdir, "ft.safetensors").meta
    assert meta["config"]["manifest"] == _ptr(workdir, "cfg.yaml").manifest
    assert meta["dataset"]["path"] == "tok"
    assert meta["parent"]["implicit"] is True  # no --parent: the previous version at the path


def _commit_sha(root: Path) -> str:
    with Repo.open(root) as repo:
        return repo.git.head().id.decode()


def test_reannotating_keeps_captured_facts(workdir, cli):
    write_safetensors(workdir / "m.safetensors", training_series(1)[0])
    cli("add", "m.safetensors")
    first = _ptr(workdir, "m.safetensors")
    assert "unchanged" in cli("add", "m.safetensors").output
    (workdir / "e.json").write_text('{"loss": 0.5}')
    r = cli("add", "m.safetensors", "--metrics", "e.json")
    assert "added" in r.output
    again = _ptr(workdir, "m.safetensors")
    assert again.blake3 == first.blake3 and again.meta["metrics"] == {"loss": 0.5}
    assert {k: v for k, v in again.meta.items() if k != "metrics"} == first.meta
    assert "parent" not in again.meta  # never its own parent


@pytest.mark.parametrize("args, problem", [
    (["--metrics", "nope.json"], "nope.json: cannot read metrics"),
    (["--metrics", "list.json"], "must be a JSON object"),
    (["--metrics", "bad.json"], "bad.json: not valid JSON"),
    (["--meta", "novalue"], "expected KEY=VALUE"),
    (["--meta", "bad key=1"], "keys are letters"),
    (["--dataset", "s3://bkt/train"], "needs a digest"),
    (["--dataset", "s3://bkt/train@no spaces"], "not a content digest"),
    (["--dataset", "missing/data"], "--dataset missing/data: no such file"),
    (["--tokenizer", "missing_tok"], "--tokenizer missing_tok: no such file"),
    (["--parent", "m.safetensors@nosuchrev"], "unknown revision"),
    (["--parent", "untracked.bin"], "not a tracked artifact"),
    (["--parent", "../../etc/passwd"], "outside the repository"),
    (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["--config", "tokdir"], "--config tokdir: not a file"),
])
def test_bad_metadata_input_is_one_line_exit_2_and_changes_nothing(workdir, cli, args, problem):
    write_safetensors(workdir / "m.safetensors", training_series(1)[0])
    cli("add", "m.safetensors")
    cli("commit", "-m", "m")
    (workdir / "list.json").write_text("[1, 2]")
    (workdir / "bad.json").write_text("{nope")
    (workdir / "untracked.bin").write_bytes(b"u")
    (workdir / "tokdir").mkdir()
    write_safetensors(workdir / "m.safetensors", training_series(2)[1])
    before = _snapshot(workdir)
    r = cli("add", "m.safetensors", *args, ok=False)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and problem in lines[0] and "Traceback" not in r.output, r.output
    assert _snapshot(workdir) == before


def _snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts
            and "state" not in p.parts}


def test_large_safetensors_header_goes_to_a_metadata_object(workdir, cli):
    big = {f"k{i}": "v" * 100 for i in range(200)}
    write_safetensors(workdir / "m.safetensors", {"w": np.zeros(4, np.float32)}, big)
    cli("add", "m.safetensors")
    meta = _ptr(workdir, "m.safetensors").meta
    assert "header" not in meta
    assert json.loads(_meta_object(workdir, meta["header_object"])) == big
    assert len((workdir / "m.safetensors.ckpt").read_bytes()) < 4096


def test_torch_zip_storages_get_a_table_and_diff(workdir, cli):
    rng = np.random.default_rng(1)
    a = {"0": rng.standard_normal(70_000).astype(np.float32).tobytes(), "1": b"\x01" * 4000}
    torch_like_zip(workdir / "m.pt", a)
    cli("add", "m.pt")
    cli("commit", "-m", "a")
    t = _ptr(workdir, "m.pt").meta["tensors"]
    assert t["format"] == "torch" and t["storages"] == 2 and t["bytes"] == 284_000
    b = dict(a, **{"1": b"\x02" * 4000, "2": b"\x03" * 8})
    torch_like_zip(workdir / "m.pt", b, root="step-2")  # torch names the folder after the file
    cli("add", "m.pt")
    doc = json.loads(cli("diff", "m.pt@HEAD", "m.pt", "--json").output)["tensors"]
    assert [e["name"] for e in doc["added"]] == ["data/2"]
    assert [e["name"] for e in doc["changed"]] == ["data/1"] and doc["unchanged"] == 1


def test_log_checkpoint_api_for_training_loops(workdir, monkeypatch):
    (workdir / "tok").mkdir()
    (workdir / "tok" / "v.txt").write_text("v")
    run = workdir / "runs" / "r1"
    ids = []
    for step, tensors in enumerate(training_series(3)):
        write_safetensors(run / "model.safetensors", tensors, {"step": str(step)})
        ids.append(ckptvc.log_checkpoint(run / "model.safetensors", dataset="s3://d/train@sha256:1234",
                                         tokenizer=workdir / "tok", metrics={"loss": 3.0 - step},
                                         meta={"run": "r1"}, seed=7, commit=f"step {step}"))
    assert len(set(ids)) == 3
    with Repo.open(workdir) as repo:
        entries = repo.log(where="loss <= 2 and labels.run == 'r1'", sort="loss")
        assert [e.id for e in entries] == [ids[2], ids[1]]
        assert f"Ckptvc-Version: {ids[2]}" in repo.git.head().message.decode()
    meta = _ptr(workdir, "runs/r1/model.safetensors").meta
    assert meta["parent"]["implicit"] and ids[1] == f"ckpt:runs/r1/model.safetensors@{meta['parent']['blake3'][:12]}"


def test_environment_differences_name_what_changed():
    recorded = {"python": "3.9.1", "platform": platform.platform(), "packages": "0" * 64,
                "torch": {"version": "1.13.0"}}
    lines = md.package_list().splitlines()
    old = "\n".join(lines[1:] + ["zzz-gone==1.0", lines[2].split("==")[0] + "==0.0.1"]) + "\n"
    diffs = md.environment_differences(recorded, old)
    assert diffs["python"] == ["3.9.1", platform.python_version()] and "platform" not in diffs
    assert diffs["torch"][0] == "1.13.0"
    pk = diffs["packages"]
    assert pk["added"] == [lines[0]] and pk["removed"] == ["zzz-gone==1.0"]
    assert pk["changed"] and "0.0.1 ->" in pk["changed"][0]
    same = {"python": platform.python_version(), "platform": platform.platform(), "packages": md.packages_digest()}
    assert md.environment_differences(same, None) == {}


def test_metadata_is_read_from_git_in_a_fresh_clone(workdir, cli, tmp_path, monkeypatch):
    write_safetensors(workdir / "m.safetensors", training_series(1)[0], {"step": "1"})
    cli("add", "m.safetensors", "--seed", "5")
    cli("commit", "-m", "m")
    dest = clone(workdir, tmp_path / "c")
    monkeypatch.chdir(dest)
    assert not (dest / ".ckptvc" / "cache").exists() or not any((dest / ".ckptvc" / "cache").rglob("*"))
    doc = json.loads(cli("show", "m.safetensors", "--json").output)
    assert doc["meta"]["seed"] == 5 and doc["meta"]["tensors"]["count"] == 6
    assert doc["meta"]["env"]["packages"] == md.packages_digest()


def test_formats_doc_describes_metadata_schema():
    text = (Path(__file__).parent.parent / "docs" / "formats.md").read_text()
    assert "## Metadata (schema 1)" in text
    for key in ("schema", "created", "env", "code", "tensors", "header", "parent", "dataset", "tokenizer",
                "config", "metrics", "labels", "seed", ".ckptvc/meta/", "Ckptvc-Version", "tags/NAME"):
        assert key in text, key
