"""`ckptvc` commands. Each is a thin wrapper over ckptvc.Repo; errors become one
line on stderr and an exit code (1 failure, 2 bad input; docs/cli.md)."""

from __future__ import annotations

import functools
import sys
import time

import click

from ckptvc import __version__
from ckptvc.cli.output import RichProgress, err, human, out, print_json
from ckptvc.errors import CkptvcError


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CkptvcError as exc:
            err.line(f"ckptvc: error: {exc}")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.line("ckptvc: interrupted; nothing partial was left behind (run the command again to resume)")
            sys.exit(130)
        except OSError as exc:
            # disk full, permission denied, a file vanishing: the system's one line, no
            # traceback. Writes are atomic, so nothing half-written was left in place.
            where = exc.filename if exc.filename else "ckptvc"
            err.line(f"ckptvc: error: {where}: {exc.strerror or exc}")
            sys.exit(1)

    return wrapper


def open_repo(progress: bool = True):
    from ckptvc.repo import Repo

    return Repo.open(".", RichProgress(enabled=None if progress else False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckptvc")
def main() -> None:
    """Version control for large ML checkpoints, next to git.

    \b
    Example:
      git init && ckptvc init --remote /mnt/nvme/ckpt-remote
      ckptvc add runs/r7/step-4000.safetensors
      ckptvc commit -m "r7 step 4000" && ckptvc push
    """


@main.command()
@click.option("--remote", "remote_url", metavar="URL", help="Also add URL as the default remote 'origin'.")
@handle_errors
def init(remote_url: str | None) -> None:
    """Make this git work tree a ckptvc repository (idempotent).

    \b
    Example:
      git init && ckptvc init --remote /mnt/shared/ckpt-store
    """
    from ckptvc.repo import Repo

    repo = Repo.init(".", remote_url)
    out.line(f"Initialized ckptvc in {repo.dir}")
    if repo.config.default_remote:
        rc = repo.config.remotes[repo.config.default_remote]
        out.line(f"default remote: {rc.name} -> {rc.url}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--parent", metavar="PATH[@REV]",
              help="The version this one was trained from (lineage edge and delta base). "
                   "Default: the previous version at the same path. At a new path, a neighbour "
                   "with the same tensors is coded as a delta against it (no lineage claimed).")
@click.option("--dataset", metavar="PATH|URI@DIGEST",
              help="Training data: a tracked path (added if needed) or URI@DIGEST (s3://b/train@sha256:...).")
@click.option("--tokenizer", metavar="PATH", help="Tokenizer file or directory (added if needed).")
@click.option("--config", "config_file", metavar="FILE", help="Training config, stored and versioned with it.")
@click.option("--metrics", metavar="FILE.json", help="Metrics (a JSON object) to record, e.g. eval results.")
@click.option("--meta", "meta_items", metavar="KEY=VALUE", multiple=True, help="A label to record (repeatable).")
@click.option("--seed", type=int, help="The random seed of the run.")
@handle_errors
def add(paths: tuple[str, ...], parent: str | None, dataset: str | None, tokenizer: str | None,
        config_file: str | None, metrics: str | None, meta_items: tuple[str, ...], seed: int | None) -> None:
    """Track files or directories: store their content, write PATH.ckpt pointers
    with metadata (code commit, environment, tensor summary, lineage).

    \b
    Example:
      ckptvc add runs/r7/step-4000.safetensors
      ckptvc add tokenizer/            # a directory is one artifact
      ckptvc add runs/r7/step-4000.safetensors --parent base/model.safetensors \\
          --dataset data/train.jsonl --tokenizer tok/ --config train.yaml \\
          --metrics eval.json --meta lr=3e-4 --seed 1234
    """
    with open_repo() as repo:
        t0 = time.perf_counter()
        results = repo.add(list(paths), parent=parent, dataset=dataset, tokenizer=tokenizer, config=config_file,
                           metrics=metrics, labels=list(meta_items) or None, seed=seed)
        dt = time.perf_counter() - t0
    for r in results:
        if r.unchanged:
            out.line(f"unchanged  {r.path}")
        else:
            out.line(f"added      {r.path}  ({human(r.size)}, {human(r.new_bytes)} new in cache) -> {r.pointer_path}")
    if results and not all(r.unchanged for r in results):
        out.line(f"{dt:.1f}s; next: ckptvc commit -m MSG", style="dim")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/cli.md).")
@handle_errors
def status(paths: tuple[str, ...], as_json: bool) -> None:
    """Show each tracked artifact: workspace, cache and remote state.

    \b
    Example:
      ckptvc status
      ckptvc status --json runs/
    """
    with open_repo(progress=False) as repo:
        remote, rows = repo.status(list(paths) or None)
    if as_json:
        print_json({"remote": remote, "artifacts": [r.to_dict() for r in rows]})
        return
    if not rows:
        out.line("no tracked artifacts")
        return
    header = ("artifact", "workspace", "cache", f"remote ({remote})" if remote else "remote")
    cells = [(r.path, r.workspace, "yes" if r.in_cache else "missing",
              "-" if r.on_remote is None else ("yes" if r.on_remote else "not pushed")) for r in rows]
    if not out.is_terminal:
        # piped: plain aligned columns (rendering a rich table costs more than computing the status)
        widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
        for row in [header, *cells]:
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        return
    from rich.table import Table

    color = {"clean": "green", "modified": "yellow", "missing": "red", "not pushed": "yellow"}
    table = Table(box=None, header_style="bold")
    for col in header:
        table.add_column(col)
    for row in cells:
        table.add_row(*(f"[{color[c]}]{c}[/]" if c in color and i else c for i, c in enumerate(row)))
    out.print(table)


@main.command()
@click.option("-m", "--message", required=True, help="Commit message.")
@handle_errors
def commit(message: str) -> None:
    """Commit pointer files, .gitignore entries and the config to git.

    \b
    Example:
      ckptvc commit -m "r7 step 4000"
    """
    with open_repo() as repo:
        sha = repo.commit(message)
    out.line(sha)


@main.command()
@click.argument("args", nargs=-1)
@click.option("--rev", help="Force the revision (when a path has the same name).")
@click.option("-f", "--force", is_flag=True, help="Overwrite files with changes that are not added.")
@click.option("-r", "--remote", help="Remote to fetch missing objects from (default: the default remote).")
@click.option("-o", "--output", type=click.Path(), help="Restore under this directory instead of the work tree.")
@click.option("--with-code", is_flag=True,
              help="Also check out the code commit the version recorded (refused over uncommitted changes).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def checkout(args: tuple[str, ...], rev: str | None, force: bool, remote: str | None, output: str | None,
             with_code: bool, as_json: bool) -> None:
    """Make workspace files match their pointers, as of now or of any git revision.

    \b
    ARGS is [REV] [PATH...]. A first argument that names a tracked path is a path;
    otherwise it is a revision (branch, tag, ckptvc tag, commit). --rev forces it.
    With a revision or tag, the inputs each version names (tokenizer, config,
    tracked dataset, base model) are restored too, and a reproduction summary ends it.
    Example:
      ckptvc checkout                         # every artifact, current pointers
      ckptvc checkout model.safetensors       # one artifact
      ckptvc checkout v1.2 runs/r7            # as of tag v1.2
      ckptvc checkout baseline-q4 --with-code # a baseline and the code that made it
    """
    with open_repo() as repo:
        if rev is not None:
            paths = list(args)
        else:
            rev, paths = repo.resolve_target(list(args))
        t0 = time.perf_counter()
        res = repo.checkout(rev, paths or None, force=force, remote=remote, output=output, with_code=with_code)
        dt = time.perf_counter() - t0
    if as_json:
        print_json({"rev": rev, "restored": res.restored, "unchanged": res.unchanged, "inputs": res.inputs,
                    "configs": res.configs, "missing_inputs": res.missing_inputs, "code": res.code,
                    "reproduction": res.summary})
        return
    if res.code:
        out.line(f"code       {res.code[:10]} checked out" + (f" under {output}" if output else " (detached HEAD)"))
    for p in res.restored:
        out.line(f"restored   {p}  (blake3 verified)" + ("  [input]" if p in res.inputs else ""))
    for p in res.configs:
        out.line(f"config     {p}  (blake3 verified)")
    for m in res.missing_inputs:
        err.line(f"ckptvc: warning: input {m} is not in this repository's history; not restored")
    out.line(f"{len(res.restored)} restored, {len(res.unchanged)} already up to date"
             + (f" (as of {rev})" if rev else "") + f" in {dt:.1f}s")
    from ckptvc.cli.lineage_cmds import print_reproduction

    print_reproduction(res.summary)


@main.command()
@click.argument("path", required=False, type=click.Path())
@click.option("--where", metavar="EXPR", help='Filter, e.g. "loss < 0.5 and labels.lr >= 1e-4", \'"ft" in path\'.')
@click.option("--sort", metavar="METRIC", help="Order by a metric (ascending; -METRIC for descending).")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Show at most N versions.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/cli.md).")
@handle_errors
def log(path: str | None, where: str | None, sort: str | None, limit: int | None, as_json: bool) -> None:
    """History of each artifact: commit, date, size, metrics, message. Reads git only.

    \b
    Example:
      ckptvc log runs/r7/step.safetensors
      ckptvc log --where "eval_loss < 2.1" --sort eval_loss
      ckptvc log --where 'metrics["eval/acc"] > 0.8 and seed == 1' --json
    """
    with open_repo(progress=False) as repo:
        entries = repo.log(path, where=where, sort=sort)
    if limit is not None:
        entries = entries[:limit]
    if as_json:
        print_json({"versions": [e.to_dict() for e in entries]})
        return
    from ckptvc.cli.lineage_cmds import fmt_value, metric_columns, print_rows
    from ckptvc.lineage import lookup

    cols = metric_columns([e.meta.get("metrics") for e in entries], sort)
    rows = []
    for e in entries:
        rec = {"metrics": e.meta.get("metrics") or {}}
        rows.append([e.commit[:10], time.strftime("%Y-%m-%d %H:%M", time.localtime(e.date)), e.path,
                     human(e.size), human(e.stored_bytes), *[fmt_value(lookup(rec, c)) for c in cols],
                     e.message.splitlines()[0] if e.message else ""])
    if not rows:
        out.line("no artifact versions" + (" match" if where else ""))
        return
    print_rows(["commit", "date", "artifact", "size", "stored", *cols, "message"], rows,
               right={3, 4, *range(5, 5 + len(cols))})


@main.group()
def remote() -> None:
    """Manage remotes (kept in the committed .ckptvc/config.toml).

    \b
    Example:
      ckptvc remote add origin /mnt/nvme/ckpt --default
    """


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--default", "make_default", is_flag=True, help="Make it the default remote.")
@click.option("--endpoint-url", help="S3-compatible endpoint (MinIO, Ceph, SeaweedFS).")
@click.option("--region", help="S3 region.")
@click.option("--profile", help="AWS profile name (credentials stay in the AWS chain, never in the repo).")
@click.option("--jobs", type=int, help="Parallel transfers for this remote.")
@handle_errors
def remote_add(name: str, url: str, make_default: bool, endpoint_url: str | None, region: str | None,
               profile: str | None, jobs: int | None) -> None:
    """Add a remote: a local path, file:// URL, or s3://bucket/prefix.

    \b
    Example:
      ckptvc remote add origin /mnt/nvme/ckpt --default
      ckptvc remote add s3 s3://team-ckpts/llm --endpoint-url http://minio:9000 --default
    """
    options = {k: v for k, v in {"endpoint_url": endpoint_url, "region": region, "profile": profile,
                                 "jobs": jobs}.items() if v is not None}
    with open_repo() as repo:
        repo.remote_add(name, url, default=make_default, options=options)
        default = repo.config.default_remote
    out.line(f"remote {name} -> {url}" + (" (default)" if default == name else ""))


@remote.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def remote_list(as_json: bool) -> None:
    """List remotes.

    \b
    Example:
      ckptvc remote list --json
    """
    with open_repo(progress=False) as repo:
        cfg = repo.config
    rows = [{"name": r.name, "url": r.url, "default": r.name == cfg.default_remote} for r in cfg.remotes.values()]
    if as_json:
        print_json({"remotes": rows})
        return
    for r in rows:
        out.line(f"{r['name']}\t{r['url']}" + ("\t(default)" if r["default"] else ""))


@remote.command("remove")
@click.argument("name")
@handle_errors
def remote_remove(name: str) -> None:
    """Remove a remote from the config (its data is not touched).

    \b
    Example:
      ckptvc remote remove old-nfs
    """
    with open_repo() as repo:
        repo.remote_remove(name)
    out.line(f"removed remote {name}")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("-r", "--remote", "remote_name", help="Remote name (default: the default remote).")
@click.option("--all-commits", is_flag=True, help="Every version reachable in git history, not only the workspace.")
@handle_errors
def push(paths: tuple[str, ...], remote_name: str | None, all_commits: bool) -> None:
    """Upload the objects of tracked artifacts that the remote lacks.

    \b
    PATHS limits it to those artifacts (files or folders; default: every one).
    Example:
      ckptvc push
      ckptvc push runs/checkpoint-500
      ckptvc push -r backup --all-commits
    """
    with open_repo() as repo:
        t0 = time.perf_counter()
        name, stats = repo.push(remote_name, all_commits=all_commits, paths=list(paths) or None)
        dt = time.perf_counter() - t0
    out.line(f"pushed {stats.objects} objects ({human(stats.bytes)}) to {name} in {dt:.1f}s"
             + (f"; {stats.skipped} artifact versions already there" if stats.skipped else ""))


def _rev_and_paths(repo, args: tuple[str, ...], rev: str | None) -> tuple[str | None, list[str] | None]:
    """[REV] [PATH...] as checkout reads them: a first argument that names a tracked
    path is a path, else a revision; --rev forces the revision."""
    if rev is not None:
        return rev, list(args) or None
    rev, paths = repo.resolve_target(list(args))
    return rev, paths or None


@main.command()
@click.argument("args", nargs=-1)
@click.option("--rev", help="Force the revision (when a path has the same name).")
@click.option("-r", "--remote", "remote_name", help="Remote name (default: the default remote).")
@click.option("--all-commits", is_flag=True, help="Every version reachable in git history.")
@handle_errors
def fetch(args: tuple[str, ...], rev: str | None, remote_name: str | None, all_commits: bool) -> None:
    """Download missing objects into the cache (workspace untouched).

    \b
    ARGS is [REV] [PATH...], read as checkout reads them.
    Example:
      ckptvc fetch                      # what the workspace pointers need
      ckptvc fetch v1.2                 # what tag v1.2 needs
      ckptvc fetch runs/checkpoint-500  # one artifact
    """
    with open_repo() as repo:
        rev, paths = _rev_and_paths(repo, args, rev)
        t0 = time.perf_counter()
        name, stats = repo.fetch(remote_name, rev, paths, all_commits=all_commits)
        dt = time.perf_counter() - t0
    out.line(f"fetched {stats.objects} objects ({human(stats.bytes)}) from {name} in {dt:.1f}s")


@main.command()
@click.argument("args", nargs=-1)
@click.option("--rev", help="Force the revision (when a path has the same name).")
@click.option("-r", "--remote", "remote_name", help="Remote name (default: the default remote).")
@click.option("-f", "--force", is_flag=True, help="Overwrite files with changes that are not added.")
@handle_errors
def pull(args: tuple[str, ...], rev: str | None, remote_name: str | None, force: bool) -> None:
    """Fetch, then checkout.

    \b
    ARGS is [REV] [PATH...], read as checkout reads them: only those artifacts'
    objects are downloaded.
    Example:
      git clone ... && cd repo && ckptvc pull
      ckptvc pull runs/checkpoint-500
      ckptvc pull v1.2
    """
    with open_repo() as repo:
        rev, paths = _rev_and_paths(repo, args, rev)
        t0 = time.perf_counter()
        res = repo.pull(remote_name, rev, paths, force=force)
        dt = time.perf_counter() - t0
    for p in res.restored:
        out.line(f"restored   {p}  (blake3 verified)")
    out.line(f"{len(res.restored)} restored, {len(res.unchanged)} already up to date in {dt:.1f}s")


@main.command()
@click.option("--dir", "workdir", type=click.Path(), help="Work here instead of a temp folder (kept).")
@click.option("--keep", is_flag=True, help="Keep the temp folder.")
def demo(workdir: str | None, keep: bool) -> None:
    """Run the main job end to end in a temp folder: init, add a checkpoint series,
    commit, push to a local remote, clone fresh, pull, check out an old version, verify.

    \b
    Example:
      ckptvc demo --keep
    """
    from pathlib import Path

    from ckptvc.demo import run_demo

    sys.exit(run_demo(Path(workdir) if workdir else None, keep))


def _register_command_modules() -> None:
    """Commands that live in their own modules (one module per concern) attach
    themselves to `main` when imported."""
    import importlib

    for module in ("ckptvc.cli.maintenance_cmds", "ckptvc.cli.lineage_cmds"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


_register_command_modules()


def run() -> None:
    """The console script: run a command, then leave without the interpreter's
    teardown (freeing every module and buffer one by one: ~0.1 s per command, paid
    by every add and commit of a training loop) once nothing is left to finish:
    background deletes done, no other non-daemon thread alive, output flushed.
    Otherwise it exits the normal way."""
    import os
    import threading

    if "numpy" not in sys.modules:
        # ckptvc calls no BLAS routine, but OpenBLAS starts a thread per core when
        # numpy loads and spins it for a while: ~0.1 CPU-s taken from the coders per
        # command on 2 cores. Only the command line does this; a training script
        # that imports ckptvc keeps its own BLAS settings.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    restore = sys.modules.get("ckptvc.restore")  # only a command that restored has deletes pending
    if restore is not None:
        restore.wait_for_discards()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass  # a reader that went away (ckptvc log | head), or a closed stream
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    # run the module under its real name, so commands registered on it are there
    from ckptvc.cli.main import run as _run

    _run()
