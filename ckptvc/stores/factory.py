"""Open a store from a remote URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ckptvc.errors import UserInputError
from ckptvc.stores.base import Store
from ckptvc.stores.local import LocalStore


def local_path_of(url: str, base_dir: Path | None = None) -> Path | None:
    """The directory a local remote URL names, or None for other schemes.
    Relative paths are taken relative to `base_dir` (the work tree)."""
    if url.startswith("file://"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise UserInputError(f"remote URL {url!r}: file:// URLs must name a local path")
        return Path(parsed.path)
    if "://" in url:
        return None
    p = Path(url).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


def validate_remote_url(url: str) -> None:
    if not url or any(c in url for c in "\n\r\0"):
        raise UserInputError(f"remote URL {url!r} is empty or has control characters")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("", "file", "s3"):
        raise UserInputError(f"remote URL {url!r}: unsupported scheme {scheme!r} (use a path, file:// or s3://)")


def open_store(url: str, base_dir: Path | None = None, options: dict | None = None) -> Store:
    validate_remote_url(url)
    local = local_path_of(url, base_dir)
    if local is not None:
        return LocalStore(local)
    if url.startswith("s3://"):
        try:
            from ckptvc.stores.s3 import S3Store
        except ImportError as exc:  # pragma: no cover - s3 module lands with its own issue
            raise UserInputError(f"remote URL {url!r}: S3 support is not available") from exc
        return S3Store.from_url(url, **(options or {}))
    raise UserInputError(f"remote URL {url!r}: unsupported")
