"""Terminal output: rich progress bars and tables, plain when not a terminal."""

from __future__ import annotations

import json
import sys


class _LazyConsole:
    """A rich Console made on first use: importing rich costs ~0.1 s (more with a
    cold page cache), and most commands print one plain line."""

    def __init__(self, **kwargs: object):
        self._kwargs = kwargs
        self._console = None

    def __getattr__(self, name: str):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)

    def line(self, text: str, style: str | None = None) -> None:
        """One line, taken literally (no markup). Written without rich when the stream
        is not a terminal: the commands a training script runs in a loop (add, commit)
        then do not pay rich's import for one plain line."""
        stream = sys.stderr if self._kwargs.get("stderr") else sys.stdout
        if self._console is None and not stream.isatty():
            stream.write(text + "\n")
            stream.flush()
            return
        self.print(text, style=style, markup=False)

    @property
    def is_terminal(self) -> bool:
        stream = sys.stderr if self._kwargs.get("stderr") else sys.stdout
        return self._console.is_terminal if self._console is not None else stream.isatty()


out = _LazyConsole(highlight=False, soft_wrap=True)
err = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)


def human(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


class RichProgress:
    """Progress callbacks drawn as rich bars on stderr; silent when stderr is not a
    terminal. Tasks whose total is in bytes show rate and ETA."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = err.is_terminal if enabled is None else enabled
        self.bar = None
        self.tasks: dict[str, int] = {}

    def _ensure(self):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgressBar

        if self.bar is None:
            self.bar = RichProgressBar(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn(), console=err, transient=True)
            self.bar.start()
        return self.bar

    def start(self, task: str, total: int | None = None) -> None:
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = self._ensure()
        if task.startswith("fsck"):
            self.tasks[task] = bar.add_task(task, total=total)
            bar.columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn())
        else:
            bar.columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                           TransferSpeedColumn(), TimeRemainingColumn())
            self.tasks[task] = bar.add_task(task, total=total)

    def advance(self, task: str, amount: int) -> None:
        if self.bar is not None and task in self.tasks:
            self.bar.advance(self.tasks[task], amount)

    def finish(self, task: str) -> None:
        if self.bar is not None and task in self.tasks:
            self.bar.remove_task(self.tasks.pop(task))
            if not self.tasks:
                self.bar.stop()
                self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
