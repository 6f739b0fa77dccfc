"""The one way this package writes a file: to a temporary file beside it, then renamed over it, so a reader
(or a crash) never sees a half-written file and a failed write never destroys the previous one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory (created if missing); on success it replaces ``path``,
    on an exception it is removed and ``path`` is left as it was.

    ``suffix`` (default: ``path``'s own) matters to writers that infer the format from the name (matplotlib).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
