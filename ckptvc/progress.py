"""Progress reporting from the core: callbacks, never prints."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, task: str, total: int | None = None) -> None: ...
    def advance(self, task: str, amount: int) -> None: ...
    def finish(self, task: str) -> None: ...


class NullProgress:
    def start(self, task: str, total: int | None = None) -> None:
        pass

    def advance(self, task: str, amount: int) -> None:
        pass

    def finish(self, task: str) -> None:
        pass


NULL_PROGRESS = NullProgress()
