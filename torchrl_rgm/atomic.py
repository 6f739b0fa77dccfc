"""The one way this package writes a file: to a temporary file beside it, then renamed over it, so a reader
(or a crash) never sees a half-written file and a failed write never destroys the previous one."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "DiskFullError"]

#: Less free space than this on the file system of a write that failed: the write failed for want of space.
_NEARLY_FULL = 1 << 20


class DiskFullError(OSError):
    """A write that failed because its file system is full (the previous file, if any, is intact)."""


def _disk_full(err: BaseException, directory: Path) -> bool:
    """Whether ``err`` is a full disk: ``ENOSPC`` (``OSError``), or a writer's own error (torch.save's
    ``RuntimeError: ... unexpected pos``) on a file system left with under a MiB."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(directory).free < _NEARLY_FULL
    except OSError:
        return False


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
    except (OSError, RuntimeError) as err:
        if os.path.exists(tmp):
            os.remove(tmp)  # before measuring what is free: the partial file is not ours to keep
        if not isinstance(err, DiskFullError) and _disk_full(err, path.parent):
            free = shutil.disk_usage(path.parent).free
            raise DiskFullError(errno.ENOSPC, f"No space left on the device of {path.parent} writing {path.name} "
                                f"({free:,} bytes free): free some space, or choose a directory on another disk"
                                + (f"; the previous {path.name} is intact" if path.exists() else "") + ".") from err
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
