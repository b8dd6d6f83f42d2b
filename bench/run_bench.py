#!/usr/bin/env python3
"""ckptvc vs DVC 3.x, side by side, on the same files, in one run.

Each tool gets its own fresh git repository and its own local-directory remote
under a temp dir. Every measured step runs the tool as a subprocess; wall time
and the peak RSS of its process tree (ru_maxrss from os.wait4, which covers the
process and every descendant it reaped; KiB on Linux) are recorded.

Workloads (see bench/README.md):
  minilm  six MiniLM FP32 checkpoints with AdamW state written over one path,
          add+commit each, push --all-commits, then restores in a fresh clone
  big     a 2 GiB float32 file, v1 then v2 (10% of 4 MiB blocks changed)
  status  100 small tracked files: status on the unchanged tree (best of 3)

    python bench/run_bench.py --workload /path/to/workload [--only minilm,big,status]

Tables go to stdout; everything (every command, its time, RSS, exit code and
output tail) goes to bench/out/results-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
BIN = Path(sys.executable).parent  # the venv running this script: ckptvc and dvc live here
CKPTVC = str(BIN / "ckptvc")
DVC = str(BIN / "dvc")
GIT = shutil.which("git") or "git"
WORKLOADS = ("minilm", "big", "status")
MODEL = "model.safetensors"
MODEL_DIR = "model"  # a series of folder checkpoints (sharded) written over one path
BIG = "big.bin"

ENV = dict(os.environ)
ENV.update({
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
})
for _k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
    ENV.pop(_k, None)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    label: str
    cmd: list[str]
    cwd: str
    wall_s: float
    maxrss_kib: int
    user_s: float
    sys_s: float
    rc: int
    timed_out: bool = False
    other_cpu_s: float = 0.0  # CPU time the rest of the machine used meanwhile (noise indicator)
    stdout_tail: str = ""
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def busy_cpu_s() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat), or 0 when unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
        v = [int(x) for x in fields]
        # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class Runner:
    """Runs commands, measures each one, and keeps every record for the JSON."""

    def __init__(self, timeout: float, verbose: bool):
        self.timeout = timeout
        self.verbose = verbose
        self.log: list[Run] = []

    def run(self, cmd: list[str], cwd: str | Path, label: str = "", check: bool = True) -> Run:
        cmd = [str(c) for c in cmd]
        with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
            busy0 = busy_cpu_s()
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, cwd=str(cwd), env=ENV, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                 start_new_session=True)
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)  # the group of the process we started, by its id

            timer = threading.Timer(self.timeout, kill)
            timer.start()
            try:
                _, status, ru = os.wait4(p.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
            other = max(busy_cpu_s() - busy0 - ru.ru_utime - ru.ru_stime, 0.0)
            p.returncode = os.waitstatus_to_exitcode(status)
            fo.seek(0)
            fe.seek(0)
            out = fo.read().decode("utf-8", "replace")
            err = fe.read().decode("utf-8", "replace")
        r = Run(label or " ".join([Path(cmd[0]).name, *cmd[1:3]]), cmd, str(cwd), wall,
                int(ru.ru_maxrss), ru.ru_utime, ru.ru_stime, p.returncode, timed_out.is_set(),
                other, out[-2000:], err[-2000:])
        self.log.append(r)
        if self.verbose:
            print(f"    [{wall:8.2f} s {ru.ru_maxrss / 1024:7.0f} MiB rc={r.rc} others {other:5.1f} cpu-s] "
                  f"{' '.join(cmd)}", flush=True)
        if check and not r.ok:
            why = f"timed out after {self.timeout:.0f} s" if r.timed_out else f"exit {r.rc}"
            last = (err or out).strip().splitlines()
            short = " ".join([Path(cmd[0]).name, *cmd[1:]])
            short = short if len(short) < 100 else short[:97] + "..."
            raise BenchError(f"'{short}' (in {cwd}): {why}: {last[-1] if last else ''}")
        return r


class PageCache:
    """Drops the page cache (so restores read from disk) and remembers whether it worked."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.ok = 0
        self.failed = 0
        self.error = ""
        self.proof = ""

    @staticmethod
    def _cached_kib() -> int:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("Cached:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return -1

    def drop(self) -> bool:
        os.sync()
        if not self.enabled:
            return False
        before = self._cached_kib()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError as exc:
            self.failed += 1
            self.error = str(exc)
            return False
        self.ok += 1
        if not self.proof:
            self.proof = f"Cached: {before} KiB before, {self._cached_kib()} KiB after the first drop"
        return True

    def summary(self) -> str:
        if not self.enabled:
            return "disabled (--no-drop-caches)"
        if self.failed and not self.ok:
            return f"FAILED ({self.error}); restores may read from the page cache"
        if not self.ok and not self.failed:
            return "not attempted (no phase needed it)"
        if self.failed:
            return f"worked {self.ok} times, failed {self.failed} times ({self.error})"
        return f"worked ({self.ok} drops; {self.proof})"


def tree_bytes(path: Path) -> dict:
    """Apparent bytes (sum of st_size) and allocated bytes (st_blocks*512) of the regular
    files under path, each inode counted once."""
    apparent = allocated = files = 0
    seen: set[tuple[int, int]] = set()
    if not path.exists():
        return {"apparent": 0, "allocated": 0, "files": 0}
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            apparent += st.st_size
            allocated += st.st_blocks * 512
            files += 1
    return {"apparent": apparent, "allocated": allocated, "files": files}


_HASHES: dict[str, str] = {}


def sha256(path: Path, memo: bool = False) -> str:
    """A file's sha256; a folder's is that of its files' relative paths and sha256s.
    A missing path has none (""), so it never matches a source."""
    key = str(path)
    if memo and key in _HASHES:
        return _HASHES[key]
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}\0{sha256(f)}\n".encode())
        digest = h.hexdigest()
    elif path.is_file():
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    else:
        return ""
    if memo:
        _HASHES[key] = digest
    return digest


def write_over(src: Path, dst: Path) -> None:
    """What a trainer does: write the new checkpoint over the same path (a file over the
    same inode; a folder's files each over its namesake, files it no longer has removed),
    then sync so write-back is not charged to the tool measured next."""
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        keep = {f.relative_to(src) for f in src.rglob("*") if f.is_file()}
        for f in sorted(dst.rglob("*")):
            if f.is_file() and f.relative_to(dst) not in keep:
                f.unlink()
        for rel in sorted(keep):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dst / rel)
    else:
        shutil.copyfile(src, dst)
    os.sync()


# --------------------------------------------------------------------------- tools


class Tool:
    name = ""
    label = ""

    def __init__(self, runner: Runner):
        self.r = runner

    def git_init(self, repo: Path) -> None:
        repo.mkdir(parents=True)
        self.r.run([GIT, "init", "-q", "-b", "main"], repo, "git init")
        self.r.run([GIT, "config", "user.name", "bench"], repo, "git config")
        self.r.run([GIT, "config", "user.email", "bench@example.invalid"], repo, "git config")

    def head(self, repo: Path) -> str:
        return self.r.run([GIT, "rev-parse", "HEAD"], repo, "git rev-parse").stdout_tail.strip()

    def git_checkout(self, repo: Path, rev: str) -> Run:
        return self.r.run([GIT, "checkout", "-q", rev], repo, f"git checkout {rev[:10]}")

    def clone(self, repo: Path, dest: Path) -> Run:
        r = self.r.run([GIT, "clone", "-q", str(repo), str(dest)], repo.parent, "git clone")
        self.r.run([GIT, "config", "user.name", "bench"], dest, "git config")
        self.r.run([GIT, "config", "user.email", "bench@example.invalid"], dest, "git config")
        return r

    # tool-specific
    def init(self, repo: Path, remote: Path) -> None: ...
    def track(self, repo: Path, paths: list[str], msg: str) -> list[Run]: ...
    def push(self, repo: Path) -> Run: ...
    def pull(self, repo: Path, force: bool = False, paths: tuple[str, ...] = ()) -> Run: ...
    def checkout(self, repo: Path, force: bool = False, paths: tuple[str, ...] = ()) -> Run: ...
    def status(self, repo: Path) -> Run: ...
    def status_clean(self, repo: Path, n: int) -> tuple[bool, str]: ...
    def cache_dir(self, repo: Path) -> Path: ...


class Ckptvc(Tool):
    name = "ckptvc"
    label = "ckptvc"

    def init(self, repo: Path, remote: Path) -> None:
        self.git_init(repo)
        self.r.run([CKPTVC, "init", "--remote", str(remote)], repo, "ckptvc init")

    def track(self, repo: Path, paths: list[str], msg: str) -> list[Run]:
        return [self.r.run([CKPTVC, "add", *paths], repo, "ckptvc add"),
                self.r.run([CKPTVC, "commit", "-m", msg], repo, "ckptvc commit")]

    def push(self, repo: Path) -> Run:
        return self.r.run([CKPTVC, "push", "--all-commits"], repo, "ckptvc push --all-commits")

    def pull(self, repo: Path, force: bool = False, paths: tuple[str, ...] = ()) -> Run:
        return self.r.run([CKPTVC, "pull", *(["--force"] if force else []), *paths], repo, "ckptvc pull",
                          check=False)

    def checkout(self, repo: Path, force: bool = False, paths: tuple[str, ...] = ()) -> Run:
        return self.r.run([CKPTVC, "checkout", *(["--force"] if force else []), *paths], repo, "ckptvc checkout",
                          check=False)

    def status(self, repo: Path) -> Run:
        return self.r.run([CKPTVC, "status"], repo, "ckptvc status")

    def status_clean(self, repo: Path, n: int) -> tuple[bool, str]:
        p = subprocess.run([CKPTVC, "status", "--json"], cwd=repo, env=ENV, capture_output=True, text=True,
                           timeout=self.r.timeout)
        if p.returncode != 0:
            return False, f"ckptvc status --json: exit {p.returncode}: {p.stderr.strip()[-300:]}"
        arts = json.loads(p.stdout)["artifacts"]
        clean = [a for a in arts if a["workspace"] == "clean" and a["in_cache"]]
        return len(arts) == n and len(clean) == n, f"{len(clean)}/{len(arts)} clean+cached (expected {n})"

    def cache_dir(self, repo: Path) -> Path:
        return repo / ".ckptvc" / "cache"


class Dvc(Tool):
    name = "dvc"
    label = "DVC"

    def init(self, repo: Path, remote: Path) -> None:
        self.git_init(repo)
        remote.mkdir(parents=True, exist_ok=True)
        self.r.run([DVC, "init", "-q"], repo, "dvc init")
        self.r.run([DVC, "config", "core.analytics", "false"], repo, "dvc config")
        self.r.run([DVC, "config", "core.autostage", "false"], repo, "dvc config")
        self.r.run([DVC, "remote", "add", "-d", "origin", str(remote)], repo, "dvc remote add")
        self.r.run([GIT, "add", ".dvc", ".dvcignore"], repo, "git add")
        self.r.run([GIT, "commit", "-q", "-m", "dvc init"], repo, "git commit")

    def track(self, repo: Path, paths: list[str], msg: str) -> list[Run]:
        runs = [self.r.run([DVC, "add", *paths], repo, "dvc add")]
        staged = [p + ".dvc" for p in paths]
        staged += sorted({str(Path(p).parent / ".gitignore") for p in paths})
        runs.append(self.r.run([GIT, "add", *staged], repo, "git add"))
        runs.append(self.r.run([GIT, "commit", "-q", "-m", msg], repo, "git commit"))
        return runs

    def push(self, repo: Path) -> Run:
        return self.r.run([DVC, "push", "--all-commits"], repo, "dvc push --all-commits")

    def pull(self, repo: Path, force: bool = False, paths: tuple[str, ...] = ()) -> Run:
        return self.r.run([DVC, "pull", *(["--force"] if force else []), *paths], repo, "dvc pull", check=False)

    def checkout(self, repo: Path, force: bool = False, paths: tuple[str, ...] = ()) -> Run:
        return self.r.run([DVC, "checkout", *(["--force"] if force else []), *paths], repo, "dvc checkout",
                          check=False)

    def status(self, repo: Path) -> Run:
        return self.r.run([DVC, "status"], repo, "dvc status")

    def status_clean(self, repo: Path, n: int) -> tuple[bool, str]:
        r = self.r.run([DVC, "status"], repo, "dvc status (check)")
        ok = "up to date" in r.stdout_tail
        return ok, r.stdout_tail.strip()[:200]

    def cache_dir(self, repo: Path) -> Path:
        return repo / ".dvc" / "cache"


# --------------------------------------------------------------------------- phases


@dataclass
class ToolResult:
    metrics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    refusals: dict = field(default_factory=dict)  # error text -> restores that needed --force
    restores: int = 0
    steps: list = field(default_factory=list)  # per measured step: label, wall, rss, ...
    error: str | None = None


def step_record(name: str, runs: list[Run], **extra) -> dict:
    return {"step": name, "wall_s": sum(r.wall_s for r in runs), "maxrss_kib": max(r.maxrss_kib for r in runs),
            "cpu_s": sum(r.user_s + r.sys_s for r in runs),
            "other_cpu_s": sum(r.other_cpu_s for r in runs),
            "commands": [{"cmd": " ".join([Path(r.cmd[0]).name, *r.cmd[1:]])[:300], "wall_s": r.wall_s,
                          "maxrss_kib": r.maxrss_kib, "rc": r.rc} for r in runs], **extra}


class Bench:
    def __init__(self, args: argparse.Namespace, runner: Runner, pc: PageCache, tmp: Path):
        self.a = args
        self.r = runner
        self.pc = pc
        self.tmp = tmp
        self.tools: list[Tool] = [Ckptvc(runner), Dvc(runner)]

    # restore with the tool's own command; if it refuses, record why and retry with --force
    def _restore(self, tool: Tool, repo: Path, how: str, res: ToolResult, what: str,
                 paths: tuple[str, ...] = ()) -> tuple[Run, bool]:
        fn = tool.pull if how == "pull" else tool.checkout
        res.restores += 1
        r = fn(repo, paths=paths)
        if r.ok:
            return r, False
        lines = (r.stderr_tail or r.stdout_tail).strip().splitlines()
        msg = (lines[-1] if lines else "").replace(str(self.tmp), "$TMP")
        msg = f"'{' '.join([Path(r.cmd[0]).name, *r.cmd[1:]])}' failed (rc={r.rc}" + \
              (", timed out" if r.timed_out else "") + f"): {msg}"
        res.refusals.setdefault(msg, []).append(what)
        r2 = fn(repo, force=True, paths=paths)
        if not r2.ok:
            raise BenchError(f"{what}: {' '.join(r2.cmd)} --force failed too (rc={r2.rc}): "
                             f"{(r2.stderr_tail or r2.stdout_tail)[-800:]}")
        return r2, True

    def _verify(self, path: Path, expected: str, res: ToolResult, what: str) -> bool:
        ok = sha256(path) == expected
        if not ok:
            res.notes.append(f"{what}: restored {path.name} is NOT byte-identical to the source")
        return ok

    def _sizes(self, tool: Tool, repo: Path, remote: Path, m: dict, prefix: str = "") -> None:
        c = tree_bytes(tool.cache_dir(repo))
        rm = tree_bytes(remote)
        m[prefix + "cache_bytes"] = c["apparent"]
        m[prefix + "cache_alloc_bytes"] = c["allocated"]
        m[prefix + "cache_files"] = c["files"]
        m[prefix + "remote_bytes"] = rm["apparent"]
        m[prefix + "remote_alloc_bytes"] = rm["allocated"]
        m[prefix + "remote_files"] = rm["files"]

    def _cleanup(self, d: Path) -> None:
        if not self.a.keep:
            shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ minilm

    def minilm(self, tool: Tool, srcs: list[Path], res: ToolResult) -> None:
        """The series, each checkpoint written over one path (MODEL, or MODEL_DIR for
        folder checkpoints), or with --new-paths each under its own name as runs that
        name their checkpoints save them (restores then pull that one path)."""
        m = res.metrics
        K = len(srcs)
        new_paths = getattr(self.a, "new_paths", False)
        names = [s.name if new_paths else (MODEL_DIR if s.is_dir() else MODEL) for s in srcs]
        d = self.tmp / "minilm" / tool.name
        repo, remote = d / "repo", d / "remote"
        tool.init(repo, remote)
        self.pc.drop()
        commits, per = [], []
        for k, src in enumerate(srcs):
            write_over(src, repo / names[k])
            runs = tool.track(repo, [names[k]], f"step{k}")
            commits.append(tool.head(repo))
            rec = step_record(f"add+commit step{k}", runs)
            res.steps.append(rec)
            per.append(rec)
        m["add_commit_s"] = sum(p["wall_s"] for p in per)
        m["add_commit_first_s"] = per[0]["wall_s"]
        m["add_commit_later_mean_s"] = (sum(p["wall_s"] for p in per[1:]) / (K - 1)) if K > 1 else None
        m["add_commit_rss_kib"] = max(p["maxrss_kib"] for p in per)
        m["add_commit_cpu_s"] = sum(p["cpu_s"] for p in per)
        m["add_commit_per_step_s"] = [p["wall_s"] for p in per]
        m["commits"] = commits
        m["workspace_verified"] = self._verify(repo / names[-1], sha256(srcs[-1], True), res, "workspace after add")
        clone, forced = self._push_then_pull_latest(tool, d, res, names[-1], srcs[-1], f"step{K - 1}",
                                                    (names[-1],) if new_paths else ())
        m["restore_latest_verified"] = m.pop("restore_verified")
        order = [k for k in (2, 0) if k < K - 1] + [k for k in range(K - 1) if k not in (0, 2)]
        restore_rss, ok_all, forced_any = [], m["restore_latest_verified"], forced
        m["restore_older_s"] = {}
        for k in order:
            how = f"pull {names[k]}" if new_paths else f"git checkout step{k} + pull"
            if not new_paths:
                tool.git_checkout(clone, commits[k])
            self.pc.drop()
            r, forced = self._restore(tool, clone, "pull", res, how, (names[k],) if new_paths else ())
            forced_any |= forced
            res.steps.append(step_record(how, [r], forced=forced))
            m["restore_older_s"][f"step{k}"] = r.wall_s
            restore_rss.append(r.maxrss_kib)
            ok_all &= self._verify(clone / names[k], sha256(srcs[k], True), res, f"pull step{k}")
        m["restore_step2_s"] = m["restore_older_s"].get("step2")
        m["restore_step0_s"] = m["restore_older_s"].get("step0")
        others = [v for s, v in m["restore_older_s"].items() if s not in ("step0", "step2")]
        m["restore_others_mean_s"] = sum(others) / len(others) if others else None
        m["restore_older_rss_kib"] = max(restore_rss) if restore_rss else None
        # every version is in the clone's cache now: switching versions is a local checkout
        # (with --new-paths: the workspace copy is deleted and checked out again)
        co_times, co_rss = [], []
        for k in [K - 1, *range(K - 1)]:
            if new_paths:
                target = clone / names[k]
                shutil.rmtree(target) if target.is_dir() else target.unlink()
                how = f"rm {names[k]} + checkout {names[k]}"
            else:
                tool.git_checkout(clone, commits[k])
                how = f"git checkout step{k} + checkout"
            self.pc.drop()
            r, forced = self._restore(tool, clone, "checkout", res, how, (names[k],) if new_paths else ())
            forced_any |= forced
            res.steps.append(step_record(f"{how} (cache has all)", [r], forced=forced))
            co_times.append(r.wall_s)
            co_rss.append(r.maxrss_kib)
            ok_all &= self._verify(clone / names[k], sha256(srcs[k], True), res, f"checkout step{k}")
        m["local_checkout_mean_s"] = sum(co_times) / len(co_times)
        m["local_checkout_per_step_s"] = co_times
        m["local_checkout_rss_kib"] = max(co_rss)
        m["restores_verified"] = bool(ok_all)
        m["restore_needed_force"] = bool(forced_any)
        c = tree_bytes(tool.cache_dir(clone))
        m["clone_cache_bytes"] = c["apparent"]
        self._cleanup(d)

    # ------------------------------------------------------------------ big

    def _push_then_pull_latest(self, tool: Tool, d: Path, res: ToolResult, name: str, want: Path,
                               label: str, paths: tuple[str, ...] = ()) -> tuple[Path, bool]:
        """Push everything (sizes before and after), then pull the latest version in a
        fresh clone and verify it. Returns (clone, whether the pull needed --force)."""
        m = res.metrics
        repo, remote = d / "repo", d / "remote"
        self._sizes(tool, repo, remote, m, "pre_push_")
        self.pc.drop()
        r = tool.push(repo)
        res.steps.append(step_record("push --all-commits", [r]))
        m["push_s"], m["push_rss_kib"] = r.wall_s, r.maxrss_kib
        self._sizes(tool, repo, remote, m)
        clone = d / "clone"
        tool.clone(repo, clone)
        self.pc.drop()
        r, forced = self._restore(tool, clone, "pull", res, f"pull {label} in fresh clone", paths)
        res.steps.append(step_record(f"fresh clone: pull ({label})", [r], forced=forced))
        m["restore_latest_s"], m["restore_latest_rss_kib"] = r.wall_s, r.maxrss_kib
        m["restore_latest_cpu_s"] = r.user_s + r.sys_s
        m["restore_verified"] = self._verify(clone / name, sha256(want, True), res, f"pull {label}")
        return clone, forced

    def big(self, tool: Tool, v1: Path, v2: Path, res: ToolResult) -> None:
        m = res.metrics
        d = self.tmp / "big" / tool.name
        repo, remote = d / "repo", d / "remote"
        tool.init(repo, remote)
        self.pc.drop()
        per = []
        commits = []
        for name, src in (("v1", v1), ("v2", v2)):
            write_over(src, repo / BIG)
            rec = step_record(f"add+commit {name}", tool.track(repo, [BIG], name))
            res.steps.append(rec)
            per.append(rec)
            commits.append(tool.head(repo))
        m["add_commit_s"] = per[0]["wall_s"] + per[1]["wall_s"]
        m["add_commit_v1_s"] = per[0]["wall_s"]
        m["add_commit_v2_s"] = per[1]["wall_s"]
        m["add_commit_rss_kib"] = max(p["maxrss_kib"] for p in per)
        m["add_commit_cpu_s"] = sum(p["cpu_s"] for p in per)
        clone, forced = self._push_then_pull_latest(tool, d, res, BIG, v2, "v2")
        ok = m.pop("restore_verified")
        tool.git_checkout(clone, commits[0])
        self.pc.drop()
        r, forced2 = self._restore(tool, clone, "pull", res, "git checkout v1 + pull")
        res.steps.append(step_record("git checkout v1; pull", [r], forced=forced2))
        m["restore_v1_s"], m["restore_v1_rss_kib"] = r.wall_s, r.maxrss_kib
        ok &= self._verify(clone / BIG, sha256(v1, True), res, "pull v1")
        m["restores_verified"] = bool(ok)
        m["restore_needed_force"] = bool(forced or forced2)
        self._cleanup(d)

    # ------------------------------------------------------------------ status

    def status(self, tool: Tool, res: ToolResult) -> None:
        import random

        m = res.metrics
        n, size = self.a.status_files, self.a.status_kib << 10
        d = self.tmp / "status" / tool.name
        repo, remote = d / "repo", d / "remote"
        tool.init(repo, remote)
        rnd = random.Random(4321)
        (repo / "data").mkdir()
        paths = []
        for i in range(n):
            p = f"data/f{i:03d}.bin"
            (repo / p).write_bytes(rnd.randbytes(size))
            paths.append(p)
        os.sync()
        rec = step_record(f"add {n} files (one call) + commit", tool.track(repo, paths, f"{n} files"))
        res.steps.append(rec)
        m["add_commit_s"], m["add_commit_rss_kib"] = rec["wall_s"], rec["maxrss_kib"]
        runs = [tool.status(repo) for _ in range(self.a.status_reps)]
        res.steps.append(step_record(f"status x{len(runs)}", runs))
        m["status_first_s"] = runs[0].wall_s
        m["status_best_s"] = min(r.wall_s for r in runs)
        m["status_all_s"] = [r.wall_s for r in runs]
        m["status_rss_kib"] = max(r.maxrss_kib for r in runs)
        ok, detail = tool.status_clean(repo, n)
        m["status_reports_clean"] = ok
        if not ok:
            res.notes.append(f"status on the unchanged tree does not report it clean: {detail}")
        self._cleanup(d)


# --------------------------------------------------------------------------- report

ROWS = {
    "minilm": [
        ("add_commit_s", "add+commit, whole series (sum)", "s"),
        ("add_commit_first_s", "  add+commit first ckpt", "s"),
        ("add_commit_later_mean_s", "  add+commit later ckpts (mean)", "s"),
        ("add_commit_cpu_s", "  CPU time add/commit (user+sys)", "s"),
        ("add_commit_rss_kib", "  peak RSS add/commit", "rss"),
        ("pre_push_cache_bytes", "cache bytes (apparent)", "bytes"),
        ("push_s", "push --all-commits", "s"),
        ("push_rss_kib", "  peak RSS push", "rss"),
        ("remote_bytes", "remote bytes (apparent)", "bytes"),
        ("restore_latest_s", "fresh clone: pull latest", "s"),
        ("restore_latest_cpu_s", "  CPU time pull latest", "s"),
        ("restore_latest_rss_kib", "  peak RSS pull latest", "rss"),
        ("restore_step2_s", "git checkout step2 + pull", "s"),
        ("restore_step0_s", "git checkout step0 + pull", "s"),
        ("restore_others_mean_s", "git checkout other step + pull (mean)", "s"),
        ("restore_older_rss_kib", "  peak RSS older pulls", "rss"),
        ("local_checkout_mean_s", "git checkout + checkout, cache has all (mean)", "s"),
        ("local_checkout_rss_kib", "  peak RSS checkout", "rss"),
        ("clone_cache_bytes", "clone cache after all versions", "bytes"),
        ("restores_verified", "all restores byte-identical", "bool"),
        ("restore_needed_force", "restore needed --force", "bool"),
    ],
    "big": [
        ("add_commit_s", "add+commit v1 + v2 (sum)", "s"),
        ("add_commit_v1_s", "  add+commit v1", "s"),
        ("add_commit_v2_s", "  add+commit v2", "s"),
        ("add_commit_cpu_s", "  CPU time add/commit (user+sys)", "s"),
        ("add_commit_rss_kib", "  peak RSS add/commit", "rss"),
        ("pre_push_cache_bytes", "cache bytes (apparent)", "bytes"),
        ("push_s", "push --all-commits", "s"),
        ("push_rss_kib", "  peak RSS push", "rss"),
        ("remote_bytes", "remote bytes (apparent)", "bytes"),
        ("restore_latest_s", "fresh clone: pull v2", "s"),
        ("restore_latest_cpu_s", "  CPU time pull v2", "s"),
        ("restore_latest_rss_kib", "  peak RSS pull v2", "rss"),
        ("restore_v1_s", "git checkout v1 + pull", "s"),
        ("restore_v1_rss_kib", "  peak RSS pull v1", "rss"),
        ("restores_verified", "all restores byte-identical", "bool"),
        ("restore_needed_force", "restore needed --force", "bool"),
    ],
    "status": [
        ("add_commit_s", "add (one call) + commit", "s"),
        ("add_commit_rss_kib", "  peak RSS add/commit", "rss"),
        ("status_best_s", "status, unchanged tree (best of N)", "s"),
        ("status_first_s", "  status, first run", "s"),
        ("status_rss_kib", "  peak RSS status", "rss"),
        ("status_reports_clean", "status reports all clean", "bool"),
    ],
}


def fmt(v, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "s":
        return f"{v:.2f} s"
    if kind == "rss":
        return f"{v / 1024:.0f} MiB"
    if kind == "bytes":
        return f"{v / 2**20:.1f} MiB"
    if kind == "bool":
        return "yes" if v else "no"
    return str(v)


NOISE_ROWS = [
    ("measured_s", "total measured wall time", "s"),
    ("other_cpu_s", "  CPU used by other processes meanwhile", "s"),
]


# --new-paths: each version is its own path, restored by pulling or checking out that path
NEW_PATH_LABELS = {
    "restore_latest_s": "fresh clone: pull latest's path",
    "restore_step2_s": "pull step2's path",
    "restore_step0_s": "pull step0's path",
    "restore_others_mean_s": "pull another step's path (mean)",
    "local_checkout_mean_s": "rm + checkout a step's path, cache has all (mean)",
}


def table(title: str, wl: str, res: dict[str, ToolResult], new_paths: bool = False) -> str:
    c, dv = res.get("ckptvc"), res.get("dvc")
    lines = [f"== {title} ==", f"{'metric':<48}{'ckptvc':>13}{'DVC':>13}{'ckptvc/DVC':>12}"]
    for key, label, kind in ROWS[wl] + NOISE_ROWS:
        if new_paths:
            label = NEW_PATH_LABELS.get(key, label)
        a = c.metrics.get(key) if c else None
        b = dv.metrics.get(key) if dv else None
        ratio = "-"
        if kind != "bool" and key != "other_cpu_s" and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            ratio = f"{a / b:.2f}"
        lines.append(f"{label:<48}{fmt(a, kind):>13}{fmt(b, kind):>13}{ratio:>12}")
    for name, r in (("ckptvc", c), ("DVC", dv)):
        if r is None:
            continue
        if r.error:
            lines.append(f"  {name} ERROR: {r.error.splitlines()[0][:300]}")
        for msg, whats in r.refusals.items():
            lines.append(f"  {name}: {len(whats)} of {r.restores} restores refused without --force, timed with it "
                         f"({', '.join(whats)}): {msg[:300]}")
        for note in r.notes:
            lines.append(f"  {name} note: {note[:400]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def tool_version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
        return (p.stdout or p.stderr).strip().splitlines()[-1] if (p.stdout or p.stderr).strip() else "?"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"? ({exc})"


def export_ckptvc(rev: str, dest: Path) -> Path:
    """`git archive REV ckptvc/` into dest: the package as committed, whatever the work tree holds."""
    dest.mkdir(parents=True)
    arch = subprocess.run([GIT, "archive", "--format=tar", rev, "ckptvc"], cwd=PROJECT, capture_output=True)
    if arch.returncode != 0:
        raise BenchError(f"git archive {rev}: {arch.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch.stdout, check=True)
    build_c_kernels(rev, dest)
    return dest


def build_c_kernels(rev: str, dest: Path) -> None:
    """Build the optional C module of an exported tree in place, as `pip install` does (a
    plain export would measure the numpy fallback). Revisions before it had no setup.py."""
    if subprocess.run([GIT, "cat-file", "-e", f"{rev}:setup.py"], cwd=PROJECT, capture_output=True).returncode:
        return
    setup = subprocess.run([GIT, "show", f"{rev}:setup.py"], cwd=PROJECT, capture_output=True, check=True).stdout
    (dest / "setup.py").write_bytes(setup)
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--build-temp",
                            str(dest / "build")], cwd=dest, capture_output=True, text=True)
    if built.returncode != 0:
        raise BenchError(f"building the C kernels of {rev}: {built.stderr.strip()[-400:]}")


def c_kernels(cwd: Path) -> str:
    """Whether the measured ckptvc runs its byte-plane loops in C ("yes", "no", or "n/a"
    for a revision without them)."""
    probe = subprocess.run([sys.executable, "-c", "from ckptvc.objects import planes_kernels as k; print(k.HAVE_C)"],
                           env=ENV, cwd=cwd, capture_output=True, text=True)
    return {"True": "yes", "False": "no"}.get(probe.stdout.strip(), "n/a")


def compile_ckptvc(cwd: Path) -> None:
    """Byte-compile the ckptvc package that will be measured, as `pip install` does for
    DVC and for a regular ckptvc install: an editable install or an exported tree has
    no .pyc files, and with PYTHONDONTWRITEBYTECODE set every run would compile the
    sources again (~80 ms per command here), which a user never pays."""
    env = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    where = subprocess.run([sys.executable, "-c", "import ckptvc, os; print(os.path.dirname(ckptvc.__file__))"],
                           env=env, cwd=cwd, capture_output=True, text=True).stdout.strip()
    if where:
        subprocess.run([sys.executable, "-m", "compileall", "-q", where], env=env, capture_output=True)


def project_rev(rev: str | None = None) -> str:
    try:
        if rev:
            full = subprocess.run([GIT, "rev-parse", rev], cwd=PROJECT, capture_output=True, text=True).stdout
            return full.strip() + " (exported with --ckptvc-rev)"
        rev = subprocess.run([GIT, "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([GIT, "status", "--porcelain", "--", "ckptvc"], cwd=PROJECT, capture_output=True,
                               text=True).stdout.strip()
        return rev + (" + UNCOMMITTED changes in ckptvc/ (use --ckptvc-rev HEAD to measure a commit)"
                      if dirty else "")
    except OSError:
        return "?"


def _series(wdir: Path) -> list[Path]:
    """finetune/ckpt-*.safetensors files, or finetune/ckpt-*/ folders (bench/make_variants.py)."""
    return sorted(p for p in (wdir / "finetune").glob("ckpt-*") if p.suffix == ".safetensors" or p.is_dir())


def find_workload(wdir: Path, only: set[str], k: int | None, generate: bool) -> tuple[list[Path], Path, Path]:
    ft = _series(wdir)
    v1, v2 = wdir / "big" / "v1.bin", wdir / "big" / "v2.bin"
    need = []
    if "minilm" in only and len(ft) < 2:
        need.append("finetune")
    if "big" in only and not (v1.is_file() and v2.is_file()):
        need.append("big")
    if need:
        if not generate:
            raise BenchError(f"{wdir}: workload missing ({', '.join(need)}); run bench/make_workload.py "
                             f"--out {wdir} or drop --no-generate")
        print(f"generating workload ({', '.join(need)}) into {wdir} ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "make_workload.py"), "--out", str(wdir), "--only",
                        ",".join(need)], check=True)
        ft = _series(wdir)
    if k is not None:
        ft = ft[:k]
    return ft, v1, v2


def add_common_arguments(ap: argparse.ArgumentParser, workloads, results_name: str) -> None:
    """Options shared by run_bench.py and run_s3_bench.py."""
    ap.add_argument("--workload", type=Path, default=HERE / "workload",
                    help="directory with finetune/ckpt-*.safetensors and big/v1.bin, v2.bin "
                         "(default bench/workload; generated there when missing)")
    ap.add_argument("--only", default=",".join(workloads), help=f"comma list of: {','.join(workloads)} (default all)")
    ap.add_argument("--tools", default="ckptvc,dvc", help="comma list of: ckptvc,dvc (default both)")
    ap.add_argument("--tmp", type=Path, default=None,
                    help="parent of the temp dir holding repos, remotes, clones and servers (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("-K", type=int, default=None, help="use only the first K checkpoints of the series")
    ap.add_argument("--timeout", type=float, default=600, help="kill any one command after this many s (600)")
    ap.add_argument("--no-drop-caches", action="store_true", help="do not drop the page cache between phases")
    ap.add_argument("--no-generate", action="store_true", help="fail instead of generating a missing workload")
    ap.add_argument("--out", type=Path, default=HERE / "out", help=f"directory for {results_name}")
    ap.add_argument("--ckptvc-rev", metavar="REV", default=None,
                    help="measure the ckptvc package as committed at git revision REV of this repository "
                         "(exported to the temp dir and put first on PYTHONPATH) instead of the installed, "
                         "possibly edited, work tree")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every command with its time and RSS")


def parse_common_arguments(ap: argparse.ArgumentParser, workloads, install_hint: str):
    """Parse and check the shared options: (args, workloads wanted, tools wanted)."""
    a = ap.parse_args()
    only = [w for w in a.only.split(",") if w]
    if not only or set(only) - set(workloads):
        ap.error(f"--only: expected a comma list of {','.join(workloads)}")
    tools_wanted = [t for t in a.tools.split(",") if t]
    if not tools_wanted or set(tools_wanted) - {"ckptvc", "dvc"}:
        ap.error("--tools: expected a comma list of ckptvc,dvc")
    for exe in ([CKPTVC] if "ckptvc" in tools_wanted else []) + ([DVC] if "dvc" in tools_wanted else []):
        if not os.access(exe, os.X_OK):
            ap.error(f"{exe} not found: run this with the python of a venv that has ckptvc and dvc ({install_hint})")
    if a.K is not None and a.K < 2:
        ap.error("-K must be at least 2")
    return a, only, tools_wanted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(ap, WORKLOADS, "results-<timestamp>.json")
    ap.add_argument("--new-paths", action="store_true",
                    help="minilm: add each checkpoint under its own name (ckpt-000, ...) instead of over one "
                         "path; restores pull that one path")
    ap.add_argument("--status-files", type=int, default=100)
    ap.add_argument("--status-kib", type=int, default=64)
    ap.add_argument("--status-reps", type=int, default=3)
    a, only, tools_wanted = parse_common_arguments(ap, WORKLOADS, "pip install -e '.[bench]'")

    srcs, v1, v2 = find_workload(a.workload.resolve(), set(only), a.K, not a.no_generate)
    if a.tmp:
        a.tmp.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ckptvc-bench-", dir=str(a.tmp) if a.tmp else None)).resolve()
    if a.ckptvc_rev:
        src = export_ckptvc(a.ckptvc_rev, tmp / "ckptvc-src")
        ENV["PYTHONPATH"] = str(src) + (os.pathsep + ENV["PYTHONPATH"] if ENV.get("PYTHONPATH") else "")
    runner = Runner(a.timeout, a.verbose)
    pc = PageCache(not a.no_drop_caches)
    bench = Bench(a, runner, pc, tmp)
    bench.tools = [t for t in bench.tools if t.name in tools_wanted]
    compile_ckptvc(tmp)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = {
        "timestamp": stamp,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": sys.executable,
        "ckptvc_version": tool_version([CKPTVC, "--version"]),
        "ckptvc_project_rev": project_rev(a.ckptvc_rev),
        "ckptvc_imported_from": subprocess.run(
            [sys.executable, "-c", "import ckptvc; print(ckptvc.__file__)"], env=ENV, cwd=tmp, capture_output=True,
            text=True).stdout.strip(),
        "ckptvc_c_kernels": c_kernels(tmp),
        "dvc_version": tool_version([DVC, "--version"]),
        "git_version": tool_version([GIT, "--version"]),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "tmp": str(tmp),
        "tmp_fs": subprocess.run(["stat", "-f", "-c", "%T", str(tmp)], capture_output=True, text=True).stdout.strip(),
        "workload": str(a.workload.resolve()),
        "loadavg_start": os.getloadavg(),
        "rss_note": "peak RSS = ru_maxrss of the process from os.wait4 (includes descendants it reaped), KiB",
        "bytes_note": "bytes = apparent sizes (sum of st_size) of regular files, each inode once; "
                      "*_alloc_bytes = st_blocks*512",
    }
    print(f"ckptvc: {meta['ckptvc_version']} at {meta['ckptvc_project_rev']}\n"
          f"        imported from {meta['ckptvc_imported_from']} (C kernels: {meta['ckptvc_c_kernels']})")
    print(f"dvc {meta['dvc_version']}, "
          f"{meta['cpus']} CPUs, {meta['mem_gib']} GiB, temp dir {tmp} ({meta['tmp_fs']})", flush=True)

    results: dict[str, dict[str, ToolResult]] = {}
    titles = {}
    t_start = time.time()
    try:
        for wl in only:
            results[wl] = {}
            if wl == "minilm":
                if srcs[0].is_dir() or a.new_paths:
                    size = sum(f.stat().st_size for f in [srcs[0], *srcs[0].rglob("*")] if f.is_file())
                    kind = f"folders of {len(list(srcs[0].iterdir()))} files" if srcs[0].is_dir() else "files"
                    where = ("each added under its own name" if a.new_paths
                             else f"written over {MODEL_DIR if srcs[0].is_dir() else MODEL}")
                    titles[wl] = (f"checkpoint series {a.workload.name}: {len(srcs)} x {size / 2**20:.0f} MiB "
                                  f"{kind}, {where}")
                else:
                    size = srcs[0].stat().st_size
                    titles[wl] = (f"MiniLM series: {len(srcs)} x {size / 2**20:.0f} MiB safetensors (FP32 weights "
                                  f"+ AdamW state) written over {MODEL}")
            elif wl == "big":
                titles[wl] = f"2 GiB pair: {BIG} = v1, then v2 ({v1.stat().st_size / 2**30:.2f} GiB each)"
            else:
                titles[wl] = f"status: {a.status_files} tracked files of {a.status_kib} KiB, unchanged tree"
            for tool in bench.tools:
                res = ToolResult()
                res.metrics["loadavg_1min_at_start"] = os.getloadavg()[0]
                results[wl][tool.name] = res
                t0 = time.time()
                print(f"[{time.time() - t_start:7.0f} s] {wl} / {tool.label} ...", flush=True)
                try:
                    if wl == "minilm":
                        bench.minilm(tool, srcs, res)
                    elif wl == "big":
                        bench.big(tool, v1, v2, res)
                    else:
                        bench.status(tool, res)
                    res.metrics["other_cpu_s"] = sum(st["other_cpu_s"] for st in res.steps)
                    res.metrics["measured_s"] = sum(st["wall_s"] for st in res.steps)
                except (BenchError, OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
                    res.error = f"{type(exc).__name__}: {exc}"
                    res.notes.append("traceback: " + traceback.format_exc(limit=3).replace("\n", " | ")[-600:])
                    print(f"    ERROR: {res.error[:1000]}", flush=True)
                print(f"           {wl} / {tool.label} done in {time.time() - t0:.0f} s", flush=True)
    finally:
        meta["page_cache_drop"] = pc.summary()
        meta["total_s"] = time.time() - t_start
        meta["loadavg_end"] = os.getloadavg()
        doc = {"meta": meta,
               "workloads": {wl: {t: asdict(r) for t, r in rs.items()} for wl, rs in results.items()},
               "commands": [asdict(r) for r in runner.log]}
        a.out.mkdir(parents=True, exist_ok=True)
        out_path = a.out / f"results-{stamp}.json"
        out_path.write_text(json.dumps(doc, indent=1))
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"ckptvc {meta['ckptvc_project_rev']}; dvc {meta['dvc_version']}; {meta['cpus']} CPUs; "
          f"temp dir on {meta['tmp_fs']}")
    print(f"page cache drop between phases: {meta['page_cache_drop']}")
    print(f"load average at start {meta['loadavg_start'][0]:.2f}, at end {meta['loadavg_end'][0]:.2f} "
          f"(other work on the machine disturbs the times)")
    print("times: wall clock of the tool's process(es); RSS: peak of the process tree; "
          "bytes: apparent file sizes summed")
    print()
    for wl in only:
        print(table(titles[wl], wl, results[wl], a.new_paths and wl == "minilm"))
        print()
    print(f"results: {out_path}" + (f"; repos kept in {tmp}" if a.keep else ""))
    print(f"total {meta['total_s']:.0f} s")
    failed = any(r.error for rs in results.values() for r in rs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
