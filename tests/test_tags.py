"""Immutable baseline tags: a name is taken once, by one client, ever; tags are never
moved or deleted through ckptvc and a moved one is refused at push; what they name is
pinned; `checkout TAG --with-code` in a fresh clone reproduces files and code."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import clone, training_series, write_safetensors
from dulwich import porcelain
from dulwich.objects import Commit, Tag

from ckptvc import tags
from ckptvc.errors import CkptvcError, RemoteError, UserInputError
from ckptvc.pointer import Pointer
from ckptvc.repo import Repo

ZERO = "0" * 40


def _ptr(root: Path, path: str) -> Pointer:
    return Pointer.from_bytes((root / (path + ".ckpt")).read_bytes(), path)


def _head(root: Path) -> str:
    with Repo.open(root) as repo:
        return repo.git.head().id.decode()


def _one_line(r) -> str:
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


@pytest.fixture
def baseline(workdir, cli):
    """Code v1; a checkpoint with a tokenizer, an untracked config and a dataset, tagged
    candidates; then code v2 and a newer checkpoint, so HEAD differs from the baseline."""
    root = workdir
    (root / "train.py").write_text("print('train v1')\n")
    porcelain.add(str(root), [str(root / "train.py")])
    porcelain.commit(str(root), message=b"code v1", author=b"T <t@e>", committer=b"T <t@e>")
    code1 = _head(root)
    (root / "tok").mkdir()
    (root / "tok" / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    (root / "data").mkdir()
    (root / "data" / "train.jsonl").write_text('{"x": 1}\n' * 40)
    (root / "train.yaml").write_text("lr: 0.001\n")  # never committed to git: kept as a metadata object
    series = training_series(3)
    write_safetensors(root / "model.safetensors", series[0], {"step": "1"})
    cli("add", "model.safetensors", "--tokenizer", "tok", "--dataset", "data/train.jsonl", "--config", "train.yaml",
        "--seed", "1234", "--meta", "note=baseline")
    cli("commit", "-m", "model v1")
    cli("push")
    want = {p: (root / p).read_bytes() for p in ("model.safetensors", "tok/vocab.json", "data/train.jsonl",
                                                  "train.yaml")}
    v1 = _ptr(root, "model.safetensors")
    # later work: new code, new config, new checkpoint
    (root / "train.py").write_text("print('train v2')\n")
    porcelain.add(str(root), [str(root / "train.py")])
    porcelain.commit(str(root), message=b"code v2", author=b"T <t@e>", committer=b"T <t@e>")
    (root / "train.yaml").write_text("lr: 0.002\n")
    write_safetensors(root / "model.safetensors", series[1], {"step": "2"})
    cli("add", "model.safetensors", "--config", "train.yaml", "--tokenizer", "tok")
    cli("commit", "-m", "model v2")
    cli("push")
    return root, {"code1": code1, "want": want, "v1": v1}


def test_tag_pins_the_version_and_its_inputs(baseline, cli):
    root, info = baseline
    r = cli("tag", "base-v1", "model.safetensors@HEAD~1", "-m", "the first baseline")
    assert "tagged" in r.output
    with Repo.open(root) as repo:
        [rec] = tags.list_tags(repo)
        ref = repo.git.repo.refs[b"refs/tags/ckpt/base-v1"]
        assert isinstance(repo.git.repo[ref], Tag)  # annotated: `git push --tags` carries it
        remote = tags.remote_tag_records(repo)
        pins = tags.pinned_manifests(repo)
        history_at = repo.pointers_at("HEAD~1")
    with Repo.open(root) as repo:
        assert rec.message == "the first baseline" and rec.commit == repo.git.resolve("HEAD~1").id.decode()
    assert [r.to_bytes() for r in remote] == [rec.to_bytes()]
    roles = {a["path"]: a["role"] for a in rec.artifacts}
    assert roles == {"model.safetensors": "target", "tok": "tokenizer", "data/train.jsonl": "dataset"}
    assert pins == {history_at[p].manifest for p in roles}
    doc = json.loads(cli("tags", "--json").output)
    assert [t["name"] for t in doc["tags"]] == ["base-v1"]
    assert json.loads(cli("tags", "-r", "origin", "--json").output) == doc
    shown = json.loads(cli("show", "base-v1", "--json").output)
    assert shown["blake3"] == info["v1"].blake3 and shown["tags"] == ["base-v1"]


def test_tag_name_is_taken_once_locally_and_across_clones(baseline, cli, tmp_path, monkeypatch):
    root, _ = baseline
    cli("tag", "best")
    r = cli("tag", "best", "model.safetensors@HEAD~1", ok=False)
    assert r.exit_code == 2 and "tag best already exists" in _one_line(r)
    other = clone(root, tmp_path / "other")
    with Repo.open(other) as repo:  # the clone did not fetch the tag: only the remote record knows
        repo.git.repo.refs.remove_if_equals(b"refs/tags/ckpt/best", None)
    monkeypatch.chdir(other)
    r = cli("tag", "best", ok=False)
    line = _one_line(r)
    assert r.exit_code == 2 and "tag best already taken on remote origin" in line and "immutable" in line
    with Repo.open(other) as repo:
        assert b"refs/tags/ckpt/best" not in repo.git.repo.refs
        [remote] = tags.remote_tag_records(repo)
    with Repo.open(root) as repo:
        assert remote.to_bytes() == tags.list_tags(repo)[0].to_bytes()  # the first record stands
    cli("tag", "best-2")  # another name is fine


def test_two_clients_racing_for_one_name(baseline, tmp_path):
    root, _ = baseline
    clones = [clone(root, tmp_path / f"c{i}") for i in range(4)]
    barrier = threading.Barrier(len(clones))
    outcomes: list[str] = []

    def attempt(path: Path) -> None:
        with Repo.open(path) as repo:
            barrier.wait()
            try:
                tags.create_tag(repo, "race", None, f"from {path.name}")
                outcomes.append("ok")
            except UserInputError as exc:
                outcomes.append(str(exc))

    threads = [threading.Thread(target=attempt, args=(c,)) for c in clones]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1
    assert all("already taken on remote origin" in o for o in outcomes if o != "ok")


@pytest.mark.parametrize("name", ["../x", "a/../../b", "a/b", "two words", "a..b", "x.lock", "x.", "-x", ".x",
                                  "a~1", "a^", "a:b", "a?", "a*", "a[1]", "a\\b", "a@{1}", "", "é", "x" * 101])
def test_bad_tag_names_are_refused_and_change_nothing(baseline, cli, name):
    root, _ = baseline
    r = cli("tag", "--", name, ok=False)
    assert r.exit_code == 2 and "tag name" in _one_line(r)
    with Repo.open(root) as repo:
        assert not [k for k in repo.git.repo.get_refs() if k.startswith(b"refs/tags/")]
    assert not (root.parent / "remote" / "tags").exists()


def test_moving_or_deleting_a_tag_is_refused(baseline, cli):
    root, _ = baseline
    cli("tag", "keep", "model.safetensors@HEAD~1")
    with Repo.open(root) as repo:
        before = repo.git.repo.refs[b"refs/tags/ckpt/keep"]
    for args in (["tag", "-d", "keep"], ["tag", "-f", "keep", "model.safetensors"], ["tag", "keep", "model.safetensors"]):
        r = cli(*args, ok=False)
        assert r.exit_code == 2 and "immutable" in _one_line(r)
    with Repo.open(root) as repo:
        assert repo.git.repo.refs[b"refs/tags/ckpt/keep"] == before


def test_uncommitted_version_cannot_be_tagged(baseline, cli):
    root, _ = baseline
    write_safetensors(root / "model.safetensors", training_series(3)[2])
    cli("add", "model.safetensors")
    r = cli("tag", "wip", "model.safetensors", ok=False)
    assert r.exit_code == 2 and "commit first" in _one_line(r)


def _move_tag(root: Path, name: str, to_rev: str) -> tuple[str, str]:
    """Move a ckptvc tag behind ckptvc's back (as `git tag -f` would)."""
    with Repo.open(root) as repo:
        refs = repo.git.repo.refs
        old = refs[f"refs/tags/ckpt/{name}".encode()]
        t = Tag()
        t.name = f"ckpt/{name}".encode()
        t.object = (Commit, repo.git.resolve(to_rev).id)
        t.tagger = b"Mallory <m@example.com>"
        t.tag_time, t.tag_timezone = 1_800_000_000, 0
        t.message = b"moved\n"
        repo.git.repo.object_store.add_object(t)
        refs[f"refs/tags/ckpt/{name}".encode()] = t.id
        return old.decode(), t.id.decode()


def test_pre_push_refuses_a_moved_or_deleted_tag(baseline, cli, tmp_path):
    root, _ = baseline
    cli("tag", "gold", "model.safetensors@HEAD~1")
    ref = "refs/tags/ckpt/gold"
    with Repo.open(root) as repo:
        sha = repo.git.repo.refs[ref.encode()].decode()
        head = repo.git.head().id.decode()
        # pushing it the first time, and pushing branches, is fine
        assert tags.check_pushed_refs(repo, [f"{ref} {sha} {ref} {ZERO}",
                                             f"refs/heads/master {head} refs/heads/master {ZERO}"]) == []
        assert tags.check_pushed_refs(repo, [f"{ref} {sha} {ref} {sha}"]) == []
        [err] = tags.check_pushed_refs(repo, [f"(delete) {ZERO} {ref} {sha}"])
        assert "refusing to delete ckptvc tag gold" in err
    old, new = _move_tag(root, "gold", "HEAD")
    with Repo.open(root) as repo:
        [err] = tags.check_pushed_refs(repo, [f"{ref} {new} {ref} {old}"])
        assert "refusing to move ckptvc tag gold" in err
        # to a git remote that never saw it: the tag record on the ckptvc remote says where it belongs
        [err] = tags.check_pushed_refs(repo, [f"{ref} {new} {ref} {ZERO}"])
        assert "record on remote origin" in err and "moved" in err


def test_pinned_manifests_include_other_clients_tags(baseline, cli, tmp_path, monkeypatch):
    root, _ = baseline
    other = clone(root, tmp_path / "other")
    monkeypatch.chdir(other)
    cli("tag", "theirs", "model.safetensors")
    monkeypatch.chdir(root)
    with Repo.open(root) as repo:
        assert tags.list_tags(repo) == []
        head_manifest = repo.pointers_at("HEAD")["model.safetensors"].manifest
        assert head_manifest in tags.pinned_manifests(repo)
        assert tags.pinned_manifests(repo, remotes=False) == set()
    # a remote that cannot be read: no answer rather than a wrong one (gc must not run)
    monkeypatch.setattr("ckptvc.repo.open_store", _unreachable)
    with Repo.open(root) as repo, pytest.raises(CkptvcError):
        tags.pinned_manifests(repo)


def _unreachable(*a, **k):
    raise RemoteError("remote unreachable (test)")


def test_unreachable_remote_creates_no_tag_and_a_retry_succeeds(baseline, cli, monkeypatch):
    root, _ = baseline
    with monkeypatch.context() as m:
        m.setattr("ckptvc.repo.open_store", _unreachable)
        r = cli("tag", "later", ok=False)
        assert r.exit_code == 1 and "cannot record tag later" in _one_line(r)
    with Repo.open(root) as repo:
        assert b"refs/tags/ckpt/later" not in repo.git.repo.refs
    cli("tag", "later")
    with Repo.open(root) as repo:
        assert [r.to_bytes() for r in tags.remote_tag_records(repo)] == [tags.list_tags(repo)[0].to_bytes()]


def test_checkout_tag_with_code_in_fresh_clone_reproduces(baseline, cli, tmp_path, monkeypatch):
    root, info = baseline
    cli("tag", "repro", "model.safetensors@HEAD~1", "-m", "paper results")
    dest = clone(root, tmp_path / "fresh")
    assert not (dest / "model.safetensors").exists() and not (dest / "train.yaml").exists()
    assert (dest / "train.py").read_text() == "print('train v2')\n"
    monkeypatch.chdir(dest)
    r = cli("checkout", "repro", "--with-code")
    for path, data in info["want"].items():
        assert (dest / path).read_bytes() == data, path
    assert _head(dest) == info["code1"]
    assert (dest / "train.py").read_text() == "print('train v1')\n"
    assert "reproduce" in r.output and "seed     1234" in r.output and "train.yaml" in r.output
    assert "nothing: same Python" in r.output
    doc = json.loads(cli("checkout", "repro", "--json").output)
    [summary] = doc["reproduction"]
    assert summary["code"]["commit"] == info["code1"] and summary["seed"] == 1234 and summary["differs"] == {}
    assert summary["config"]["path"] == "train.yaml"
    assert sorted(doc["unchanged"]) == ["data/train.jsonl", "model.safetensors", "tok"]


def test_with_code_refuses_a_dirty_tree_and_changes_nothing(baseline, cli):
    root, _ = baseline
    cli("tag", "t1", "model.safetensors@HEAD~1")
    (root / "train.py").write_text("print('local edit')\n")
    head = _head(root)
    model = (root / "model.safetensors").read_bytes()
    r = cli("checkout", "t1", "--with-code", ok=False)
    assert r.exit_code == 1 and "uncommitted changes" in _one_line(r) and "train.py" in r.output
    assert _head(root) == head and (root / "model.safetensors").read_bytes() == model
    assert (root / "train.py").read_text() == "print('local edit')\n"


def test_checkout_tag_with_code_into_a_directory(baseline, cli, tmp_path):
    root, info = baseline
    cli("tag", "t2", "model.safetensors@HEAD~1")
    (root / "train.py").write_text("print('local edit')\n")  # -o DIR leaves the work tree alone
    out = tmp_path / "export"
    cli("checkout", "t2", "--with-code", "-o", str(out))
    for path, data in info["want"].items():
        assert (out / path).read_bytes() == data, path
    assert (out / "train.py").read_text() == "print('train v1')\n"
    assert (root / "train.py").read_text() == "print('local edit')\n"
    assert Pointer.from_bytes((out / "model.safetensors.ckpt").read_bytes(), "x").blake3 == info["v1"].blake3


def test_checkout_of_a_revision_brings_inputs_named_at_other_versions(baseline, cli):
    root, info = baseline
    tok_v1 = _ptr(root, "tok")
    # the tokenizer changes and is re-added; the checkpoint at HEAD still names the old one
    (root / "tok" / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "c": 2}))
    cli("add", "tok")
    cli("commit", "-m", "tok v2")
    model = (root / "model.safetensors").read_bytes()
    r = cli("checkout", "--rev", "HEAD", "model.safetensors")
    assert "[input]" in r.output
    assert (root / "model.safetensors").read_bytes() == model
    assert (root / "tok" / "vocab.json").read_bytes() == info["want"]["tok/vocab.json"]
    assert _ptr(root, "tok").blake3 == tok_v1.blake3
