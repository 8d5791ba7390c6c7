"""The open-file limit: every socket is a file, and the usual soft limit (1,024) is a wall.

A worker at its soft ``RLIMIT_NOFILE`` refuses new connections (``accept`` fails with
EMFILE), while the hard limit a process may raise itself to is usually far higher.
``fasterapi run`` and ``deploy/gunicorn.conf.py`` (in the master, so every worker inherits
it) raise the soft limit to the hard one at start with :func:`raise_open_file_limit`, and
log both numbers. :func:`open_file_limit` and :func:`open_files` tell a worker where it
stands (:mod:`.admission` keeps a reserve below the limit).
"""

from __future__ import annotations

import dataclasses
import os

try:
    import resource
except ImportError:  # Windows: no rlimits
    resource = None  # type: ignore[assignment]

__all__ = ["FileLimit", "open_file_limit", "open_files", "raise_open_file_limit"]

#: Linux caps the soft limit at ``fs.nr_open`` even when the hard limit is unlimited.
_NR_OPEN = "/proc/sys/fs/nr_open"


@dataclasses.dataclass(frozen=True)
class FileLimit:
    """The soft limit before and after, the hard limit, and why it could not be raised."""

    before: int
    soft: int
    hard: int
    error: str = ""

    def __str__(self) -> str:
        hard = "unlimited" if self.hard < 0 else str(self.hard)
        if self.error:
            return f"open file limit: soft {self.soft}, hard {hard} (could not raise the soft limit: {self.error})"
        if self.before == self.soft:
            return f"open file limit: soft {self.soft}, hard {hard}"
        return f"open file limit: soft {self.before} raised to {self.soft}, hard {hard}"


def raise_open_file_limit() -> FileLimit | None:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; None where rlimits don't exist."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = _nr_open()
    if target == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft >= target):
        return FileLimit(soft, soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        return FileLimit(soft, soft, hard, error=str(error))
    return FileLimit(soft, target, hard)


def open_file_limit() -> int | None:
    """This process's soft ``RLIMIT_NOFILE``; None where there is none (Windows, unlimited)."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def open_files() -> int:
    """How many files this process has open (64, a guess, where the system does not say)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return 64


def _nr_open() -> int:
    try:
        with open(_NR_OPEN) as file:
            return int(file.read())
    except (OSError, ValueError):
        return 1024 * 1024
