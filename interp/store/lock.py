"""One writer per output: an exclusive ``flock`` on ``FILE.lock`` beside the output, taken before anything of ``FILE``
or ``FILE.partial`` is written, released (and the lock file removed) when the writer finishes or closes.

The lock file holds its owner (pid, host, start time, command line) so that a second run is told who writes the
output. The kernel releases a ``flock`` when its process dies, so a lock file left by a killed run is stale and the
next run takes it over (and resumes the partial file, as before).

The two errors here (:class:`OutputBusy`, :class:`IncompleteFileError`) are also click exceptions with exit code 2:
a verb that does not catch them still ends in one short message, not a traceback.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path


def _cli_error() -> type:
    """The ClickException that the CLI's typer handles (typer >= 0.23 vendors its own click): an exception of this
    class that a verb does not catch is printed as one message with its exit code; Exception without typer."""
    try:
        import typer

        return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    except (ImportError, StopIteration):  # pragma: no cover
        return Exception


_CliError = _cli_error()

PARTIAL = ".partial"
LOCK = ".lock"


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + PARTIAL)


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of output ``path`` (of ``path`` itself, when given its ``.partial``)."""
    path = Path(path)
    name = path.name.removesuffix(PARTIAL)
    return path.with_name(name + LOCK)


def read_owner(path: str | os.PathLike) -> dict | None:
    """The owner recorded in the lock file of output ``path`` (None when there is none or it is unreadable)."""
    try:
        return json.loads(lock_path(path).read_text() or "null")
    except (OSError, ValueError):
        return None


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a live process holds the lock of output ``path``."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def describe_owner(owner: dict | None) -> str:
    if not owner:
        return "another process"
    text = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
    if owner.get("started"):
        text += f", started {owner['started']}"
    if owner.get("command"):
        text += f" ({owner['command']})"
    return text


class OutputBusy(FileExistsError, _CliError):
    """Another live run writes this output."""

    exit_code = 2

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)  # not OSError's (errno, strerror, filename) reading of the arguments

    def __init__(self, path: str | os.PathLike, owner: dict | None = None, detail: str = ""):
        self.path, self.owner = Path(path), owner
        _CliError.__init__(self, f"{self.path} is being written by another run ({describe_owner(owner)}){detail}; "
                                 "wait for it to finish, or write to another output")  # fmt: skip
        self.args = (self.message,)
        self.filename = str(self.path)

    def __str__(self) -> str:
        return self.message


class IncompleteFileError(ValueError, _CliError):
    """A reader was given a ``.partial`` or ``complete=False`` file (or an output that only has its ``.partial``)."""

    exit_code = 2

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = Path(path)
        _CliError.__init__(self, message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.message


def _owner_record() -> dict:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv and sys.argv[0] else ""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"), "command": command}  # fmt: skip


class OutputLock:
    """The exclusive lock of one output: :meth:`acquire` raises :class:`OutputBusy` naming the owner when a live
    process holds it; a lock file whose owner died is taken over (:attr:`stale` is that owner's record)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = lock_path(self.path)
        self.stale: dict | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        if self._fd is not None:
            return self
        self.file.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputBusy(self.path, read_owner(self.path)) from None
            try:  # the owner we waited on may have removed the file between our open and our flock: take a new one
                same = os.fstat(fd).st_ino == os.stat(self.file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            old = os.read(fd, 4096)
            self.stale = json.loads(old) if old.strip() else None
        except (OSError, ValueError):
            self.stale = None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_owner_record()).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.file.unlink(missing_ok=True)  # while still holding it: a waiter that opened it retries (acquire)
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
