"""Atomic file writes: the new content appears whole, or the old file stays as it was.

The text goes to a temporary file in the destination's directory (same filesystem), is
flushed and ``fsync``-ed, and is then moved into place in one step: ``os.replace`` when
overwriting is allowed, a hard link (which fails if the name exists, so a file created
meanwhile is never clobbered) when it is not. The directory is ``fsync``-ed afterwards so
the new name survives a crash. Whatever fails, the temporary file is removed.

Nothing here imports torch or nnU-Net.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import typing as t

__all__ = ["atomic_write", "atomic_write_text"]

_DEFAULT_MODE = 0o644


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False,
                      check: t.Callable[[str], None] | None = None) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the absolute path written.

    ``check`` as for :func:`atomic_write`: it reads the complete temporary file back and
    raises to keep it from taking the name.

    Raises :class:`FileExistsError` when ``path`` exists and ``overwrite`` is false, and
    the underlying :class:`OSError` for anything else; in both cases nothing at ``path``
    changes and no temporary file is left behind.
    """
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data), overwrite=overwrite, check=check)


def atomic_write(path: str | os.PathLike[str], write: t.Callable[[t.BinaryIO], None], *,
                 overwrite: bool = False, check: t.Callable[[str], None] | None = None) -> str:
    """Like :func:`atomic_write_text`, for content that ``write(fileobj)`` produces (``torch.save``, ...).

    ``check(temporary_path)`` runs on the complete file before it takes its name; if it
    raises, the temporary file is removed and whatever was at ``path`` stays as it was.
    """
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "file exists", target)
    mode = _mode_for(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        if check is not None:
            check(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_no_clobber(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return target


def _link_no_clobber(tmp: str, target: str) -> None:
    """Give ``tmp`` the name ``target`` only if that name is free, then drop ``tmp``."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this filesystem: check, then rename (a small window, but never a partial file).
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "file exists", target) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _mode_for(target: str) -> int:
    """Keep an overwritten file's permissions; new files get 0644 (mkstemp would give 0600)."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        return _DEFAULT_MODE


def _fsync_directory(directory: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - e.g. a directory we may not open for reading
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
