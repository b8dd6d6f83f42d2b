"""Lineage, metadata and tag commands: show, lineage, diff, tag, tags.

Thin: each opens the repository, asks ckptvc.lineage / ckptvc.tags, and draws the
answer (rich) or prints it (--json). None of them reads the cache or a remote,
except `tag` (which reserves the name on every remote) and `tags --remote`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ckptvc.cli.main import handle_errors, main, open_repo
from ckptvc.cli.output import err, human, out, print_json

# ------------------------------------------------------------ helpers (shared with main.py)


def fmt_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def metric_columns(metrics: list[dict | None], sort: str | None = None, limit: int = 6) -> list[str]:
    """The metric names worth a column: the most common scalar ones (the sort key first)."""
    from ckptvc.metadata import flatten

    counts: dict[str, int] = {}
    for m in metrics:
        if not isinstance(m, dict):
            continue
        for k, v in flatten(m).items():
            if isinstance(v, (int, float, str, bool)) and k:
                counts[k] = counts.get(k, 0) + 1
    cols = sorted(counts, key=lambda k: (-counts[k], k))[:limit]
    if sort:
        name = sort.lstrip("-")
        name = name[len("metrics."):] if name.startswith("metrics.") else name
        if name in counts:
            cols = [name] + [c for c in cols if c != name][: limit - 1]
    return cols


def print_rows(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> None:
    """A plain aligned table: rich tables cost a millisecond a row, and `log` over
    thousands of versions must answer at once."""
    right = right or set()
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells: list) -> str:
        parts = []
        for i, c in enumerate(cells):
            c = str(c)
            last = i == len(cells) - 1
            parts.append(c.rjust(widths[i]) if i in right else (c if last else c.ljust(widths[i])))
        return "  ".join(parts).rstrip()

    out.print(fmt(headers), style="bold", markup=False, highlight=False)
    click.echo("\n".join(fmt(r) for r in rows))


def print_reproduction(summary: list[dict]) -> None:
    for r in summary[:5]:
        from rich.markup import escape

        out.print(f"[bold]reproduce[/] {escape(r['artifact'])}")
        code = r.get("code") or {}
        if code.get("commit"):
            flags = []
            if code.get("dirty"):
                flags.append("[yellow]tree was dirty: uncommitted changes are not in git[/]")
            if code.get("checked_out"):
                flags.append("checked out")
            out.print(f"  code     {code['commit'][:10]}" + (f"  ({'; '.join(flags)})" if flags else ""))
        if r.get("config"):
            out.print(f"  config   {r['config'].get('path')} @ {str(r['config'].get('blake3', ''))[:12]}",
                      markup=False)
        if r.get("seed") is not None:
            out.print(f"  seed     {r['seed']}")
        env = r.get("env") or {}
        if env:
            out.print(f"  env      python {env.get('python', '?')}, {env.get('platform', '?')}, packages "
                      f"{str(env.get('packages', '?'))[:12]}", markup=False)
        differs = r.get("differs") or {}
        if not differs:
            out.print("  differs  [green]nothing: same Python, platform and packages[/]")
            continue
        parts = []
        for key in ("python", "implementation", "platform", "torch"):
            if key in differs:
                parts.append(f"{key} {differs[key][0]} -> {differs[key][1]}")
        pk = differs.get("packages")
        if pk:
            if "added" in pk:
                changed = pk.get("changed", [])
                example = f" (e.g. {changed[0]})" if changed else ""
                parts.append(f"packages +{len(pk['added'])} -{len(pk['removed'])} ~{len(changed)}{example}")
            else:
                parts.append("packages differ (the recorded list is not in this clone)")
        out.print("  differs  [yellow]" + "; ".join(parts).replace("[", "\\[") + "[/]")


def _history(repo):
    from ckptvc.lineage import History

    return History.load(repo)


# ------------------------------------------------------------ show


@main.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def show(ref: str, as_json: bool) -> None:
    """One artifact version: metadata, lineage and tags, from git alone.

    \b
    REF: PATH (the work tree's version), PATH@REV, a ckptvc tag, a version id
    (ckpt:PATH@BLAKE3) or a revision holding one artifact.
    Example:
      ckptvc show runs/r7/step-4000.safetensors
      ckptvc show runs/r7/step-4000.safetensors@HEAD~3 --json
    """
    from ckptvc import lineage

    with open_repo(progress=False) as repo:
        history = _history(repo)
        v = lineage.resolve_version(repo, history, ref)
        doc = lineage.show(repo, history, v)
    if as_json:
        print_json(doc)
        return
    _show_panel(doc)


def _show_panel(doc: dict) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    meta = doc.get("meta") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()

    def row(key: str, value: Any) -> None:
        if value not in (None, "", {}, []):
            grid.add_row(key, Text(str(value)))

    row("path", doc["path"])
    row("size", f"{human(doc['size'])} ({doc['kind']}), {human(doc['stored_bytes'])} stored when added")
    row("blake3", doc["blake3"])
    row("manifest", doc["manifest"])
    if doc.get("commit"):
        row("commit", f"{doc['commit'][:10]}  {doc.get('date') or ''}  {(doc.get('message') or '').splitlines()[0]}"
            if doc.get("message") else f"{doc['commit'][:10]}  {doc.get('date') or ''}")
    else:
        row("commit", "not committed yet")
    row("created", meta.get("created"))
    code = meta.get("code") or {}
    if code.get("commit"):
        row("code", f"{code['commit'][:10]}" + (f" on {code['branch']}" if code.get("branch") else "")
            + ("  (dirty tree)" if code.get("dirty") else ""))
    env = meta.get("env") or {}
    if env:
        row("by", f"{env.get('user', '?')}@{env.get('host', '?')}")
        row("python", f"{env.get('python', '?')} on {env.get('platform', '?')}")
        row("packages", f"{str(env.get('packages', ''))[:12]} ({env.get('packages_count', '?')} installed)")
        torch = env.get("torch") or {}
        if torch:
            gpus = ", ".join(g.get("name", "?") for g in torch.get("gpus", []))
            row("torch", f"{torch.get('version', '?')} CUDA {torch.get('cuda') or '-'}" + (f"  {gpus}" if gpus else ""))
    t = meta.get("tensors") or {}
    if t.get("count"):
        dtypes = ", ".join(f"{k} x{v}" for k, v in sorted((t.get("dtypes") or {}).items()))
        row("tensors", f"{t['count']} tensors, {t.get('params', 0):,} parameters, {human(t.get('bytes', 0))}; {dtypes}")
    elif t.get("storages"):
        row("tensors", f"{t['storages']} storages ({t.get('format')}), {human(t.get('bytes', 0))}")
    if meta.get("header"):
        row("header", json.dumps(meta["header"], sort_keys=True))
    if meta.get("metrics"):
        row("metrics", ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(_flat(meta["metrics"]).items())))
    if meta.get("labels"):
        row("labels", ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(meta["labels"].items())))
    row("seed", meta.get("seed"))
    for e in doc["lineage"]["inputs"]:
        row(e["rel"], e["id"])
    for e in doc["lineage"]["used_by"]:
        row(f"used by ({e['rel']})", e["id"])
    row("tags", ", ".join(doc.get("tags") or []))
    out.print(Panel(grid, title=doc["id"], title_align="left", expand=False))


def _flat(d: dict) -> dict:
    from ckptvc.metadata import flatten

    return flatten(d)


# ------------------------------------------------------------ lineage


@main.command("lineage")
@click.argument("ref")
@click.option("--ancestors", "direction", flag_value="ancestors", help="Only where it came from.")
@click.option("--descendants", "direction", flag_value="descendants", help="Only what was made from it.")
@click.option("--format", "fmt", type=click.Choice(["tree", "json", "dot", "graphml"]), default="tree",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@handle_errors
def lineage_cmd(ref: str, direction: str | None, fmt: str, as_json: bool) -> None:
    """Where a version came from and what was made from it, over all branches and
    tags: checkpoints, datasets, tokenizers, configs and code commits.

    \b
    Example:
      ckptvc lineage runs/ft-a/model.safetensors
      ckptvc lineage runs/ft-a/model.safetensors --ancestors --format dot | dot -Tsvg > l.svg
      ckptvc lineage base/model.safetensors --descendants --format json
    """
    from ckptvc import lineage

    with open_repo(progress=False) as repo:
        history = _history(repo)
        v = lineage.resolve_version(repo, history, ref)
        g = history.graph()
    root = v.id
    if root not in g:
        g.add_node(root, type="checkpoint", path=v.path)
    sub = lineage.lineage_subgraph(g, root, ancestors=direction in (None, "ancestors"),
                                   descendants=direction in (None, "descendants"))
    if as_json or fmt == "json":
        print_json(lineage.to_json(sub, root))
    elif fmt == "dot":
        click.echo(lineage.to_dot(sub, root), nl=False)
    elif fmt == "graphml":
        click.echo(lineage.to_graphml(sub), nl=False)
    else:
        _print_tree(sub, root, direction)


def _node_label(g, nid: str, rel: str | None) -> str:
    from rich.markup import escape

    from ckptvc.lineage import short_label

    d = g.nodes[nid]
    extra = []
    if d.get("date"):
        extra.append(d["date"][:10])
    if isinstance(d.get("metrics"), dict):
        flat = _flat(d["metrics"])
        extra.extend(f"{k}={fmt_value(v)}" for k, v in list(sorted(flat.items()))[:3])
    if d.get("known") is False:
        extra.append("not in history")
    label = (f"[cyan]{rel}[/] " if rel else "") + f"[bold]{escape(short_label(nid))}[/]"
    if extra:
        label += " [dim]" + escape("  ".join(extra)) + "[/]"
    return label


def _print_tree(g, root: str, direction: str | None) -> None:
    from rich.tree import Tree

    from ckptvc.lineage import tree

    def add(branch, node) -> None:
        for child in node["children"]:
            if child["id"] is None:  # a run of versions at one path, collapsed
                from rich.markup import escape

                label = (f"[dim]... {child['collapsed']} more versions of {escape(str(child['path']))} "
                         f"({escape(child['first'])} ... {escape(child['last'])})[/]")
                add(branch.add(label), child)
                continue
            label = _node_label(g, child["id"], child["rel"])
            if child["repeat"]:
                branch.add(label + " [dim](see above)[/]")
                continue
            add(branch.add(label), child)

    for d in ([direction] if direction else ["ancestors", "descendants"]):
        t = tree(g, root, d)
        if d == "descendants" and not t["children"] and direction is None:
            continue
        top = Tree(_node_label(g, root, None) + (" [dim]<- made from[/]" if d == "ancestors" else " [dim]-> used by[/]"))
        add(top, t)
        out.print(top)


# ------------------------------------------------------------ diff


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="List every changed tensor (default: the first 40).")
@handle_errors
def diff(a: str, b: str, as_json: bool, show_all: bool) -> None:
    """Compare two artifact versions: metadata, and tensors added, removed and changed
    (with their bytes), from metadata alone: no data is downloaded.

    \b
    Example:
      ckptvc diff runs/r7/model.safetensors@HEAD~1 runs/r7/model.safetensors
      ckptvc diff base/model.safetensors runs/ft-a/model.safetensors --json
    """
    from ckptvc import lineage

    with open_repo(progress=False) as repo:
        history = _history(repo)
        va = lineage.resolve_version(repo, history, a)
        vb = lineage.resolve_version(repo, history, b)
        doc = lineage.diff(repo, history, va, vb)
    if as_json:
        print_json(doc)
        return
    from rich.markup import escape

    out.print(f"[bold]{escape(doc['a'])}[/] -> [bold]{escape(doc['b'])}[/]"
              + ("  [green](identical content)[/]" if doc["identical"] else ""))
    for k, (x, y) in doc["fields"].items():
        out.print(f"  {k}: {fmt_value(x)} -> {fmt_value(y)}", markup=False)
    md = doc["meta"]
    skip = ("created", "env.packages_count")
    for k, (x, y) in md["changed"].items():
        if k not in skip:
            out.print(f"  ~ meta.{k}: {fmt_value(x)} -> {fmt_value(y)}", markup=False)
    for k, y in md["added"].items():
        out.print(f"  + meta.{k}: {fmt_value(y)}", markup=False)
    for k, x in md["removed"].items():
        out.print(f"  - meta.{k}: {fmt_value(x)}", markup=False)
    t = doc["tensors"]
    if t is None:
        out.print(f"  tensors: no tensor table for {'a' if doc['tensor_source'][0] == 'none' else 'b'} "
                  "(not a checkpoint, or added before metadata existed)")
        return
    nb = t["bytes"]
    out.print(f"  tensors: {len(t['added'])} added ({human(nb['added'])}), {len(t['removed'])} removed "
              f"({human(nb['removed'])}), {len(t['changed'])} changed ({human(nb['changed'])}), "
              f"{t['unchanged']} unchanged ({human(nb['unchanged'])})"
              + (f", {len(t['unknown'])} unknown" if t["unknown"] else ""))
    from rich.table import Table

    rows = [("+", e["name"], e["dtype"], e["shape"], e["bytes"], "") for e in t["added"]]
    rows += [("-", e["name"], e["dtype"], e["shape"], e["bytes"], "") for e in t["removed"]]
    for e in t["changed"]:
        what = [k for k in ("dtype", "shape") if k in e]
        if e.get("content"):
            what.append("values")
        rows.append(("~", e["name"], _pair(e.get("dtype")), _pair(e.get("shape")), e["bytes"], ", ".join(what)))
    if not rows:
        return
    table = Table(box=None, header_style="bold", padding=(0, 1))
    for col in ("", "tensor", "dtype", "shape", "bytes", "changed"):
        table.add_column(col)
    limit = None if show_all else 40
    for r in rows[:limit]:
        b = r[4]
        table.add_row(r[0], escape(r[1]), escape(fmt_value(r[2])), escape(fmt_value(r[3])),
                      " -> ".join(human(x) for x in b) if isinstance(b, list) else human(b), r[5])
    out.print(table)
    if limit is not None and len(rows) > limit:
        out.print(f"  ... {len(rows) - limit} more (--all)")


def _pair(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 2:
        return f"{fmt_value(v[0])} -> {fmt_value(v[1])}"
    return v if v is not None else ""


# ------------------------------------------------------------ tags


@main.command()
@click.argument("name")
@click.argument("ref", required=False)
@click.option("-m", "--message", help="What this baseline is.")
@click.option("-d", "--delete", is_flag=True, help="Refused: ckptvc tags are immutable.")
@click.option("-f", "--force", is_flag=True, help="Refused: ckptvc tags are immutable.")
@handle_errors
def tag(name: str, ref: str | None, message: str | None, delete: bool, force: bool) -> None:
    """Mark a baseline: an immutable tag on an artifact version (default: every
    artifact at HEAD). The name is reserved on every remote first, so it can be
    taken once, by one client, ever; its objects are pinned against gc.

    \b
    REF: PATH (committed), PATH@REV, a version id, or a revision.
    Example:
      ckptvc tag baseline-2026q4 runs/r7/step-4000.safetensors -m "r7, eval 71.3"
      git push --tags        # carries refs/tags/ckpt/baseline-2026q4
    """
    from ckptvc import tags

    if delete or force:
        tags.validate_tag_name(name)
        tags.refuse_change(name, "delete" if delete else "move")
    with open_repo(progress=False) as repo:
        record = tags.create_tag(repo, name, ref, message)
        remotes = sorted(repo.config.remotes)
    targets = record.targets()
    out.print(f"tagged     {name} -> {record.commit[:10]}  (refs/tags/ckpt/{name})", markup=False)
    for a in record.to_dict()["artifacts"]:
        role = "" if a["role"] == "target" else f"  [{a['role']}]"
        out.print(f"  pinned   {a['path']} @ {a['blake3'][:12]}{role}", markup=False)
    if remotes:
        out.print(f"reserved on {', '.join(remotes)}; push git with: git push --tags", markup=False)
    else:
        err.print("ckptvc: warning: no remote configured; the name is reserved only in this clone", markup=False)
    if not targets:
        err.print("ckptvc: warning: the tag pins no artifact", markup=False)


@main.command("tags")
@click.option("-r", "--remote", "remote_name", help="List the tag records on this remote instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def tags_cmd(remote_name: str | None, as_json: bool) -> None:
    """List ckptvc tags (baselines) and what each pins.

    \b
    Example:
      ckptvc tags
      ckptvc tags -r origin --json
    """
    from ckptvc import tags

    with open_repo(progress=False) as repo:
        records = tags.remote_tag_records(repo, remote_name) if remote_name else tags.list_tags(repo)
    if as_json:
        print_json({"tags": [r.to_dict() for r in records]})
        return
    if not records:
        out.print("no ckptvc tags")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("tag", "commit", "date", "tagger", "artifacts", "message"):
        table.add_column(col)
    for r in records:
        targets = r.targets()
        arts = ", ".join(f"{a['path']}@{a['blake3'][:8]}" for a in targets[:2])
        if len(targets) > 2:
            arts += f" +{len(targets) - 2}"
        inputs = len(r.artifacts) - len(targets)
        if inputs:
            arts += f" (+{inputs} inputs)"
        table.add_row(escape(r.name), r.commit[:10],
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(r.time)) if r.time else "",
                      escape(r.tagger.split(" <")[0]), escape(arts), escape(r.message.splitlines()[0] if r.message else ""))
    out.print(table)
