"""Writing pages into the www tree (the index's and the stats service's): every file by temp
file + rename, so no reader (pip, nginx, the web service) ever sees half a page."""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from piw_services.faults import crash_point

#: The temp file of a write in progress: ``.<name>.<12 hex digits>.tmp`` beside its file.
TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


class TreeWriter:
    """The www tree at *root*; paths are relative, '/'-separated, checked to stay inside."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def path(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"refusing a path outside the www tree: {relative!r}")
        return path

    def write(self, relative: str, data: str | bytes) -> bool:
        """Replace the file at *relative* with *data*; False when it already held exactly
        that (the file is then left alone, so its ETag and mtime stay valid for caches)."""
        path = self.path(relative)
        raw = data.encode() if isinstance(data, str) else data
        try:
            if path.stat().st_size == len(raw) and path.read_bytes() == raw:
                return False
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            tmp.write_bytes(raw)
            crash_point("tree.temp_written")  # killed here, the temp stays: see sweep_temps
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def sweep_temps(self, max_age: float, now: float | None = None) -> int:
        """Remove the temp files of writes that never finished (their process was killed
        between writing and renaming) untouched for *max_age* seconds; returns how many.

        A write's temp lives for milliseconds, so one older than *max_age* belongs to no
        process, even with several writers sharing the tree. Dot directories (file_manager's
        ``.uploads``, which it sweeps itself) are not entered."""
        limit = (time.time() if now is None else now) - max_age
        removed = 0
        for directory, subdirs, names in os.walk(self.root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            for name in names:
                if not TEMP.match(name):
                    continue
                path = Path(directory, name)
                try:
                    if path.lstat().st_mtime < limit:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:  # renamed or swept by another process meanwhile
                    continue
        return removed

    def remove(self, *relatives: str) -> None:
        """Delete these files (missing ones are fine) and then their emptied directories."""
        for relative in relatives:
            path = self.path(relative)
            path.unlink(missing_ok=True)
            parent = path.parent
            while parent != self.root:
                try:
                    parent.rmdir()
                except OSError:  # not empty (or gone)
                    break
                parent = parent.parent
