"""Maintenance commands: fsck, du, install-hooks, and the pre-push hook entry point."""

from __future__ import annotations

import sys

import click

from ckptvc.cli.main import handle_errors, main, open_repo
from ckptvc.cli.output import err, human, out, print_json


@main.command()
@click.option("-r", "--remote", "remote_name", help="Check this remote instead of the local cache.")
@click.option("--read-data", is_flag=True, help="Read every object: checksum and content against its id.")
@click.option("--sample", "sample_pct", type=click.FloatRange(0.01, 100), default=100.0,
              help="With --read-data, check this percentage of objects, chosen at random.")
@click.option("--repair", is_flag=True, help="Replace missing or corrupt objects from another copy.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/cli.md).")
@handle_errors
def fsck(remote_name: str | None, read_data: bool, sample_pct: float, repair: bool, as_json: bool) -> None:
    """Check that every object any pointer in history references is present and right.

    \b
    Exit code 1 when anything is missing or corrupt (after --repair: what is left).
    Example:
      ckptvc fsck --read-data
      ckptvc fsck -r origin --read-data --sample 5 --repair
    """
    from ckptvc.fsck import fsck as run_fsck

    with open_repo() as repo:
        store = repo.remote_store(remote_name)[1] if remote_name else repo.cache
        report = run_fsck(repo, store, read_data, sample_pct, repair, max(repo.jobs * 2, 4), repo.progress)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(f"{report.store}: {report.versions} artifact versions, {report.objects} objects"
                  + (f", {report.checked_data} read and verified" if read_data else ""), markup=False)
        for p in report.repaired:
            out.print(f"repaired  {p.object[:12]}  ({p.needed_by}): was {p.problem}", markup=False)
        for p in report.missing:
            out.print(f"MISSING   {p.object[:12]}  needed by {p.needed_by}", markup=False)
        for p in report.corrupt:
            out.print(f"CORRUPT   {p.object[:12]}  needed by {p.needed_by}: {p.problem}", markup=False)
        for b in report.bad_pointers:
            out.print(f"BAD POINTER  {b}", markup=False)
        out.print("ok" if report.ok else f"{len(report.missing)} missing, {len(report.corrupt)} corrupt, "
                  f"{len(report.bad_pointers)} bad pointers")
    sys.exit(0 if report.ok else 1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/cli.md).")
@handle_errors
def du(as_json: bool) -> None:
    """Logical and stored bytes of every artifact version in history.

    \b
    stored: bytes of the version's own objects in the cache, as they are coded now
    (shared objects count in every version that has them); needs: with the delta
    bases a restore reads too; added: what the version added when it was stored.
    Example:
      ckptvc du --json
    """
    from ckptvc.usage import disk_usage

    with open_repo(progress=False) as repo:
        rows, totals = disk_usage(repo)
    if as_json:
        print_json({"versions": rows, "totals": totals})
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("artifact", "commit", "logical", "stored", "needs", "added", "ratio"):
        table.add_column(col, justify="left" if col in ("artifact", "commit") else "right")
    for r in rows:
        ratio = f"{r['logical'] / r['stored']:.2f}x" if r["stored"] else "-"
        table.add_row(r["path"], r["commit"][:10], human(r["logical"]), human(r["stored"]) if r["in_cache"] else "?",
                      human(r["needs"]) if r["in_cache"] else "?", human(r["added"]), ratio)
    out.print(table)
    out.print(f"cache: {human(totals['cache_bytes'])} for {human(totals['logical'])} of artifact versions "
              f"({totals['logical'] / max(totals['cache_bytes'], 1):.2f}x)")


@main.command("install-hooks")
@handle_errors
def install_hooks() -> None:
    """Install the pre-push hook (an existing hook is kept and runs first).

    \b
    Example:
      ckptvc install-hooks
    """
    from pathlib import Path

    from ckptvc.hooks import install_pre_push

    with open_repo(progress=False) as repo:
        action = install_pre_push(Path(repo.git.repo.controldir()))
    out.print(f"pre-push hook {action}")


@main.command("hook-pre-push", hidden=True)
@click.argument("git_remote", required=False)
@click.argument("git_url", required=False)
@handle_errors
def hook_pre_push(git_remote: str | None, git_url: str | None) -> None:
    """Run by git's pre-push hook with the refs being pushed on stdin.

    \b
    Example (what git runs):
      echo "refs/heads/main <sha> refs/heads/main <sha>" | ckptvc hook-pre-push origin URL
    """
    from ckptvc.hooks import check_pre_push, parse_pre_push_input

    refs = parse_pre_push_input(sys.stdin.read())
    with open_repo() as repo:
        result = check_pre_push(repo, refs)
    if result.problems:
        err.print(f"ckptvc: refusing the push: {len(result.problems)} problem(s) with checkpoint data:", markup=False)
        for p in result.problems:
            err.print(f"  - {p}", markup=False)
        err.print("ckptvc: fix them (ckptvc push, ckptvc fsck) or bypass with CKPTVC_SKIP_HOOK=1", markup=False)
        sys.exit(1)
    if result.no_remote:
        err.print("ckptvc: no default remote: checkpoint data was not checked (ckptvc remote add ... --default)")
    elif result.checked_versions:
        err.print(f"ckptvc: {result.checked_versions} artifact version(s) verified on the remote"
                  + (f" ({result.uploaded_objects} objects uploaded)" if result.uploaded_objects else ""))
