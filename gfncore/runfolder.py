"""A run folder has one writer, and what it holds is never torn.

Every command that writes a folder (`gfncore train`, `causal`, `bayes`, `design`) holds an
exclusive lock on ``<folder>/.gfncore.lock`` (``fcntl.flock``) from its first write to its last.
The kernel drops the lock when the process ends, however it ends, so a crashed run never leaves
the folder locked; a second writer is refused in one line naming the PID that holds it. Files
are written whole (temporary file in the same folder, fsync, rename), so a full disk, a
read-only folder or a crash leaves the previous file, never half of a new one; a write that
fails raises `WriteError`, an OSError whose message names the path and the OS error.
"""
from __future__ import annotations

import errno
import io
import os
import re
from contextlib import contextmanager

LOCK_NAME = ".gfncore.lock"
_TMP = re.compile(r"^\..+\.tmp-(\d+)$")  # atomic_write's temporary files: .<name>.tmp-<pid>


class FolderBusy(ValueError):
    """Another process holds the run folder's lock (bad input: the CLIs exit 2)."""


class WriteError(OSError):
    """A file could not be written (full disk, read-only folder, ...); the message names the path
    and the OS error, and the file's previous version is intact."""


def _describe(path: str, e: OSError) -> str:
    why = e.strerror or str(e) or type(e).__name__
    return f"cannot write {path}: {why}"


def atomic_write(path: str, write) -> None:
    """Calls write(f) on a temporary file in path's folder, fsyncs it and renames it over path,
    so a reader (or a crash) sees either the old file or the whole new one, never a torn one.
    An OSError (full disk, read-only folder) becomes a WriteError naming the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        if isinstance(e, WriteError):
            raise
        raise WriteError(e.errno, _describe(path, e)) from e
    except BaseException:
        _remove_quietly(tmp)
        raise
    try:  # the rename itself survives a power cut only once the folder is synced
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes) -> None:
    """The whole of `data` into path, atomically (see atomic_write)."""
    atomic_write(path, lambda f: f.write(data))


def write_text(path: str, text: str) -> None:
    """The whole of `text` (UTF-8) into path, atomically (see atomic_write)."""
    write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_open(path: str, mode: str = "w", **kw):
    """open(path, mode) for writing, with atomic_write's promise: the file appears whole when the
    block ends without an error, and path keeps its previous version otherwise."""
    if not any(c in mode for c in "wx"):
        raise ValueError(f"atomic_open writes a whole file (mode 'w' or 'wb'), got {mode!r}")
    binary = "b" in mode
    # written into memory, then the whole buffer at once (files here are summaries and tables)
    buf = io.BytesIO()
    out = buf if binary else io.TextIOWrapper(buf, encoding=kw.pop("encoding", "utf-8"), newline=kw.pop("newline", None),
                                              write_through=True)
    yield out
    out.flush()
    write_bytes(path, buf.getvalue())


def one_line(e: BaseException) -> str:
    """An OSError as one line naming the path and the OS error ("cannot write runs/x/summary.json:
    No space left on device"); other errors as their message."""
    if isinstance(e, WriteError):
        return e.strerror
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def holder(folder: str) -> int | None:
    """The PID of the process holding `folder`'s lock, or None when nobody holds it. Creates
    nothing (a folder without a lock file is free)."""
    import fcntl

    lock = os.path.join(folder, LOCK_NAME)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def busy_message(folder: str, pid: int | None, flag: str = "--out") -> str:
    who = f"process {pid}" if pid and pid > 0 else "another process"
    return (f"{flag} {folder} is in use by another gfncore run ({who} holds {os.path.join(folder, LOCK_NAME)}); "
            f"wait for it to end or choose another {flag}")


def check_free(folder: str, flag: str = "--out") -> None:
    """Raises FolderBusy when another process writes `folder` (a check before a run writes
    anything; RunFolder.acquire makes it certain)."""
    pid = holder(folder)
    if pid is not None:
        raise FolderBusy(busy_message(folder, pid, flag))


class RunFolder:
    """The exclusive lock of one run folder, held from acquire() to release() (or the process's
    end). Usable as a context manager around a whole run: ``with RunFolder() as rf: ...
    rf.acquire(out)`` once the input is checked, so nothing is created for a refused command."""

    def __init__(self, flag: str = "--out"):
        self.flag = flag
        self.folder: str | None = None
        self._fd: int | None = None

    def acquire(self, folder: str) -> "RunFolder":
        """Creates the folder if needed, takes its lock (FolderBusy if another process has it),
        records this PID in the lock file and removes temporary files that dead writers left."""
        import fcntl

        if self._fd is not None:
            raise RuntimeError(f"this RunFolder already holds {self.folder}")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(e.errno, _describe(os.path.join(folder, LOCK_NAME), e)) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(busy_message(folder, pid, self.flag)) from None
            raise WriteError(e.errno, _describe(os.path.join(folder, LOCK_NAME), e)) from e
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the lock holds without the PID; a refused writer then says "another process"
        self._fd, self.folder = fd, folder
        remove_stale_temporaries(folder)
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str) -> list[str]:
    """Removes the `.<name>.tmp-<pid>` files of writers that are no longer running (a killed run
    leaves its half-written checkpoint there); returns their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                os.remove(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed
