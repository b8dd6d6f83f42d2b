"""fsck finds missing and corrupt objects and heals them from another copy; the
pre-push hook uploads and verifies, refuses when it cannot, and keeps an existing hook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import training_series, write_safetensors

from ckptvc.hooks import hook_template, install_pre_push
from ckptvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


def _series_repo(workdir, cli, n=3):
    for k, t in enumerate(training_series(n)):
        write_safetensors(workdir / "m.safetensors", t)
        cli("add", "m.safetensors")
        cli("commit", "-m", f"step {k}")
    cli("push", "--all-commits")


def test_fsck_clean_then_finds_corruption_and_repairs_from_cache(workdir, cli):
    _series_repo(workdir, cli)
    remote = workdir.parent / "remote"
    doc = json.loads(cli("fsck", "-r", "origin", "--read-data", "--json").output)
    assert doc["ok"] and doc["versions"] == 3 and doc["checked_data"] == doc["objects"] > 5
    victims = _objects(remote)[:3]
    data = bytearray(victims[0].read_bytes())
    data[-3] ^= 0x20
    victims[0].write_bytes(bytes(data))
    victims[1].unlink()
    r = cli("fsck", "-r", "origin", "--json", ok=False)  # without --read-data: the missing one only
    assert r.exit_code == 1
    r = cli("fsck", "-r", "origin", "--read-data", "--json", ok=False)
    doc = json.loads(r.output)
    assert r.exit_code == 1 and len(doc["missing"]) == 1 and len(doc["corrupt"]) == 1
    r = cli("fsck", "-r", "origin", "--read-data", "--repair", "--json")
    assert len(json.loads(r.output)["repaired"]) == 2
    assert json.loads(cli("fsck", "-r", "origin", "--read-data", "--json").output)["ok"]


def test_fsck_of_cache_with_sampling_and_missing_manifest(workdir, cli):
    _series_repo(workdir, cli, n=2)
    doc = json.loads(cli("fsck", "--read-data", "--sample", "50", "--json").output)
    assert doc["ok"] and 0 < doc["checked_data"] < doc["objects"]
    shutil.rmtree(workdir / ".ckptvc" / "cache")
    r = cli("fsck", "--json", ok=False)
    assert r.exit_code == 1 and len(json.loads(r.output)["missing"]) == 2
    cli("fsck", "--repair")  # heals the cache from the remote
    assert json.loads(cli("fsck", "--read-data", "--json").output)["ok"]


def test_du_reports_logical_and_stored(workdir, cli):
    _series_repo(workdir, cli, n=3)
    doc = json.loads(cli("du", "--json").output)
    assert len(doc["versions"]) == 3
    for v in doc["versions"]:
        assert v["logical"] > 0 and 0 < v["stored"] <= v["needs"]
    assert doc["totals"]["cache_bytes"] < doc["totals"]["logical"]


def test_hook_template_is_the_shipped_script():
    assert (ROOT / "hooks" / "pre-push").read_text() == hook_template()


def test_install_keeps_existing_hook(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-push").write_text("#!/bin/sh\necho mine\n")
    assert "pre-push.local" in install_pre_push(tmp_path)
    assert (hooks / "pre-push.local").read_text() == "#!/bin/sh\necho mine\n"
    assert install_pre_push(tmp_path) == "already installed"
    (hooks / "pre-push").write_text("#!/bin/sh\necho another\n")
    with pytest.raises(Exception, match="merge them by hand"):
        install_pre_push(tmp_path)


GIT = shutil.which("git")


def _git(cwd, *args, env=None, check=True):
    return subprocess.run([GIT, *args], cwd=cwd, capture_output=True, text=True, env=env, check=check)


@pytest.mark.skipif(GIT is None, reason="the git binary is needed to run a real pre-push hook")
def test_git_push_runs_hook_uploads_verifies_and_refuses(workdir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@e")
    bare = tmp_path / "origin.git"
    _git(tmp_path, "init", "-q", "--bare", str(bare))
    _git(workdir, "remote", "add", "origin", str(bare))
    hooks = workdir / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-push").write_text(f"#!/bin/sh\ncat > /dev/null\necho ran > {tmp_path}/old-hook-ran\n")
    os.chmod(hooks / "pre-push", 0o755)
    with Repo.open(workdir) as repo:
        install_pre_push(Path(repo.git.repo.controldir()))
        write_safetensors(workdir / "m.safetensors", training_series(1)[0])
        repo.add([workdir / "m.safetensors"])
        repo.commit("one")
    remote_objects = workdir.parent / "remote"
    assert not remote_objects.exists()
    r = _git(workdir, "push", "-q", "origin", "HEAD:refs/heads/main", env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "old-hook-ran").exists()
    assert "verified on the remote" in r.stderr
    assert len(_objects(remote_objects)) > 3  # the hook uploaded the data

    # a commit whose data is nowhere: refused, with the artifact named
    write_safetensors(workdir / "m.safetensors", training_series(2)[1])
    with Repo.open(workdir) as repo:
        repo.add([workdir / "m.safetensors"])
        repo.commit("two")
    shutil.rmtree(workdir / ".ckptvc" / "cache")
    r = _git(workdir, "push", "-q", "origin", "HEAD:refs/heads/main", env=env, check=False)
    assert r.returncode != 0 and "m.safetensors@" in r.stderr and "refusing the push" in r.stderr
    r = _git(workdir, "push", "-q", "origin", "HEAD:refs/heads/main",
             env=dict(env, CKPTVC_SKIP_HOOK="1"), check=False)
    assert r.returncode == 0 and "NOT checking" in r.stderr


@pytest.mark.skipif(GIT is None, reason="the git binary is needed to run a real pre-push hook")
def test_git_push_refuses_a_moved_ckptvc_tag(workdir, cli, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@e")
    bare = tmp_path / "origin.git"
    _git(tmp_path, "init", "-q", "--bare", str(bare))
    _git(workdir, "remote", "add", "origin", str(bare))
    (workdir / "m.bin").write_bytes(b"v1" * 1000)
    cli("add", "m.bin")
    cli("commit", "-m", "one")
    cli("tag", "baseline")
    r = _git(workdir, "push", "-q", "origin", "HEAD:refs/heads/main", "--tags", env=env, check=False)
    assert r.returncode == 0, r.stderr
    (workdir / "m.bin").write_bytes(b"v2" * 1000)
    cli("add", "m.bin")
    cli("commit", "-m", "two")
    # move the tag behind ckptvc's back, as `git tag -f` would
    _git(workdir, "tag", "-f", "ckpt/baseline", "HEAD", env=env)
    r = _git(workdir, "push", "-q", "-f", "origin", "refs/tags/ckpt/baseline", env=env, check=False)
    assert r.returncode != 0 and "refusing to move ckptvc tag baseline" in r.stderr
    r = _git(workdir, "push", "-q", "origin", ":refs/tags/ckpt/baseline", env=env, check=False)
    assert r.returncode != 0 and "refusing to delete ckptvc tag baseline" in r.stderr


def test_hook_verification_catches_a_push_that_did_not_land(workdir, cli, monkeypatch):
    """The hook trusts nothing: if the upload silently lost objects (or a remote copy
    is damaged), the verification after it refuses the push."""
    from ckptvc import hooks, transfer
    from ckptvc.stores.local import LocalStore

    (workdir / "m.bin").write_bytes(os.urandom(400_000))
    cli("add", "m.bin")
    sha = cli("commit", "-m", "one").output.strip()
    refs = [hooks.PushedRef("refs/heads/main", sha, "refs/heads/main", hooks.ZERO_SHA)]
    real_push = transfer.push
    monkeypatch.setattr(transfer, "push", lambda *a, **k: transfer.TransferStats())
    with Repo.open(workdir) as repo:
        LocalStore(workdir.parent / "remote").ensure()
        result = hooks.check_pre_push(repo, refs)
    assert any("missing on remote origin after push" in p for p in result.problems)
    monkeypatch.setattr(transfer, "push", real_push)
    with Repo.open(workdir) as repo:
        assert hooks.check_pre_push(repo, refs).problems == []
        victim = next(p for p in (workdir.parent / "remote" / "objects").rglob("*") if p.is_file())
        victim.write_bytes(victim.read_bytes() + b"junk")  # another size: the hook reads and checks it
        result = hooks.check_pre_push(repo, refs)
    assert any("corrupt" in p or "checksum" in p for p in result.problems)
