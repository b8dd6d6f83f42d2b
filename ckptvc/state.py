"""The local state table: what ckptvc already knows about workspace files.

(path, inode, mtime_ns, size) -> the file's blake3 and its manifest entry, so an
unchanged file is never read or hashed again. Kept in `.ckptvc/state/state.db`
(SQLite, WAL): safe for two processes at once, and losing it only costs a rehash.

A stamp is only as good as the file system's clock. A file rewritten within the
same clock tick as the write that was recorded (same size, same inode: a trainer
saving over one path) keeps its mtime, and would look unchanged. So, as git does
with "racily clean" index entries, a stamp whose mtime is not older than the file
system's clock at the time it is recorded is kept as racy: it never matches, and the
file is hashed again the next time (then, the clock having moved on, it is trusted).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, ino INTEGER, mtime_ns INTEGER, size INTEGER,
    blake3 TEXT, entry TEXT);
CREATE TABLE IF NOT EXISTS pushed (remote TEXT, manifest TEXT, PRIMARY KEY (remote, manifest));
CREATE TABLE IF NOT EXISTS recoded (object TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS saved (path TEXT, blake3 TEXT, manifest TEXT, PRIMARY KEY (path, blake3));
"""


@dataclass(frozen=True)
class FileStamp:
    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_ino, st.st_mtime_ns, st.st_size)


_RACY_INO = -1  # stored instead of the inode: the stamp never matches


def fs_clock_ns(path: Path) -> int:
    """The file system's clock at its own granularity: the mtime a write now would
    give, read by setting `path`'s times to now (creating it when missing)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()
    return os.stat(path).st_mtime_ns


class StateDB:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # touched to read the file system's clock at its own granularity
        self._clock = path.parent / "clock"
        self._clock_ns = 0  # the clock's last reading: it only moves forward
        self.db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        # Switching to WAL and creating tables take locks that SQLite's busy timeout
        # does not cover when two processes open a new database at once: retry.
        for attempt in range(200):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 199:
                    raise
                time.sleep(0.01 + 0.002 * attempt)

    def close(self) -> None:
        self.db.close()

    def lookup(self, path: str, stamp: FileStamp) -> tuple[str, dict] | None:
        row = self.db.execute(
            "SELECT ino, mtime_ns, size, blake3, entry FROM files WHERE path = ?", (path,)
        ).fetchone()
        if row is None or (row[0], row[1], row[2]) != (stamp.ino, stamp.mtime_ns, stamp.size):
            return None
        return row[3], (json.loads(row[4]) if row[4] else {})

    def _racy(self, mtime_ns: int) -> bool:
        """Whether a file with this mtime may still be written within the same clock
        tick: its mtime is not older than the file system's clock now."""
        if mtime_ns < self._clock_ns:
            return False
        try:
            self._clock_ns = fs_clock_ns(self._clock)
        except OSError:
            return True  # no clock to read: trust nothing
        return mtime_ns >= self._clock_ns

    def record(self, path: str, stamp: FileStamp, digest: str, entry: dict | None = None) -> None:
        ino = _RACY_INO if self._racy(stamp.mtime_ns) else stamp.ino
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (path, ino, stamp.mtime_ns, stamp.size, digest, json.dumps(entry) if entry else None),
        )

    def mark_saved(self, path: str, digest: str, manifest: str) -> None:
        """This content at this path is (part of) the stored artifact version `manifest`:
        overwriting it loses nothing while that version is kept."""
        self.db.execute("INSERT OR REPLACE INTO saved VALUES (?, ?, ?)", (path, digest, manifest))

    def saved_manifest(self, path: str, digest: str) -> str | None:
        row = self.db.execute("SELECT manifest FROM saved WHERE path = ? AND blake3 = ?", (path, digest)).fetchone()
        return row[0] if row else None

    def mark_recoded(self, objects: list[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO recoded VALUES (?)", [(o,) for o in objects])

    def recoded(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT object FROM recoded")}

    def mark_pushed(self, remote: str, manifests: list[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO pushed VALUES (?, ?)", [(remote, m) for m in manifests])

    def pushed(self, remote: str, manifests: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(manifests), 500):
            part = manifests[i : i + 500]
            q = f"SELECT manifest FROM pushed WHERE remote = ? AND manifest IN ({','.join('?' * len(part))})"
            found.update(r[0] for r in self.db.execute(q, [remote, *part]))
        return found
