"""ckptvc: Git-style version control for large ML model checkpoints."""

from __future__ import annotations

__version__ = "0.1.0"

from ckptvc.errors import CkptvcError  # noqa: E402
from ckptvc.repo import Repo  # noqa: E402

__all__ = ["CkptvcError", "Repo", "__version__"]
