"""Pointers and config: canonical bytes, unknown keys kept, bad input refused with
one line naming the file, exit code 2, and nothing changed."""

from __future__ import annotations

import json

import pytest

from ckptvc.errors import MalformedPointerError
from ckptvc.pointer import Pointer

GOOD = Pointer("file", 10, "a" * 64, "b" * 64, 5, {"seed": 1, "note": "x"}, {"zz_future": {"b": 1, "a": 2}})


def test_pointer_is_canonical_and_keeps_unknown_keys():
    data = GOOD.to_bytes()
    assert data.startswith(b'{\n  "ckptvc": 1,')
    again = Pointer.from_bytes(data, "p")
    assert again.extra == {"zz_future": {"a": 2, "b": 1}}
    assert again.to_bytes() == data
    # key order in the input does not matter: same content, same bytes
    shuffled = json.dumps(dict(reversed(list(json.loads(data).items())))).encode()
    assert Pointer.from_bytes(shuffled, "p").to_bytes() == data


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: d.replace(b'"kind": "file"', b'"kind": "blob"'), "kind"),
    (lambda d: d.replace(b'"ckptvc": 1', b'"ckptvc": 9'), "unknown pointer version"),
    (lambda d: b"<<<<<<< HEAD\n" + d + b"=======\n" + d + b">>>>>>> other\n", "merge-conflict"),
    (lambda d: d[:-10], "not valid JSON"),
    (lambda d: d.replace(b'"size": 10', b'"size": -1'), "size"),
    (lambda d: d.replace(b"a" * 64, b"A" * 64), "blake3"),
    (lambda d: d.replace(b'"note": "x"', b'"parent": {"path": "../../etc/passwd"}'), "parent"),
    (lambda d: d.replace(b'"note": "x"', b'"config": {"path": "/etc/passwd"}'), "config"),
    (lambda d: b"\xff\xfe" + d, "UTF-8"),
])
def test_malformed_pointers_are_refused(mutate, problem):
    with pytest.raises(MalformedPointerError, match=problem) as info:
        Pointer.from_bytes(mutate(GOOD.to_bytes()), "runs/x.ckpt")
    assert str(info.value).startswith("runs/x.ckpt: malformed pointer")
    assert info.value.exit_code == 2


def _snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts
            and "state" not in p.parts}


def test_cli_malformed_pointer_one_line_exit_2_nothing_changed(workdir, cli):
    (workdir / "m.bin").write_bytes(b"hello world" * 100)
    cli("add", "m.bin")
    pf = workdir / "m.bin.ckpt"
    pf.write_bytes(pf.read_bytes().replace(b'"kind": "file"', b'"kind": 7'))
    before = _snapshot(workdir)
    for args in (["status"], ["checkout"], ["push"], ["commit", "-m", "x"], ["add", "m.bin"]):
        r = cli(*args, ok=False)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "m.bin.ckpt" in lines[0] and "Traceback" not in r.output
    assert _snapshot(workdir) == before


@pytest.mark.parametrize("text, problem", [
    ("[core]\nversion = 1\nbogus = 3\n", "unknown key core.bogus"),
    ("[core]\nversion = 1\nmax_delta_chain = \"8\"\n", "core.max_delta_chain must be int"),
    ("[core]\nversion = 1\n[remote.origin]\nurl = 5\n", "remote.origin.url must be str"),
    ("[core\nversion = 1\n", "not valid TOML"),
    ("[core]\nversion = 1\n[surprise]\n", "unknown section"),
    ("[core]\nversion = 1\ndefault_remote = \"nope\"\n", "unknown remote"),
    ("[core]\nversion = 1\n[remote.origin]\nurl = \"ftp://x\"\n", "unsupported scheme"),
])
def test_cli_bad_config_one_line_exit_2(workdir, cli, text, problem):
    (workdir / ".ckptvc" / "config.toml").write_text(text)
    before = _snapshot(workdir)
    r = cli("status", ok=False)
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "config.toml" in lines[0] and problem in lines[0], r.output
    assert _snapshot(workdir) == before


def test_outside_git_work_tree_is_a_clear_error(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    r = cli("init", ok=False)
    assert r.exit_code == 2 and "not inside a git work tree" in r.output
    assert not (tmp_path / ".ckptvc").exists()


def test_init_is_idempotent(workdir, cli):
    cfg = (workdir / ".ckptvc" / "config.toml").read_bytes()
    cli("init")
    cli("init")
    assert (workdir / ".ckptvc" / "config.toml").read_bytes() == cfg


def test_every_command_help_has_an_example(cli):
    from ckptvc.cli.main import main

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            yield prefix + [name], cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + [name])

    for path, _ in walk(main, []):
        r = cli(*path, "--help")
        assert "Example" in r.output, path
