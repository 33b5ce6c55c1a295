"""How long-running jobs (describe, ingest) share the DuckDB store with every other process.

DuckDB lets one process write a database file and no other process read it meanwhile. A job that kept
its connection for hours would lock out search, import, delete and index updates for hours, so jobs
open the store for each batch's transaction only (`open_for_job`) and wait patiently for another
process's lock: a job that has spent an hour on a GPU must not die because someone ran `vfr import`.

One job of a kind per store (`JobLock`, a lock file next to the database, released by the operating
system even after `kill -9`). Holding it is what lets a starting job mark job rows left `running` by
a killed process as `interrupted`: no job of that kind can be running without the lock.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from vfr.store.store import Store, StoreBusy, StoreError, lock_timeout_s

DEFAULT_JOB_LOCK_TIMEOUT_S = 3600.0


class JobLockError(StoreError):
    """Another job of the same kind is running on this store (or its lock file cannot be made)."""


def job_lock_timeout() -> float:
    """How long a job waits for another process's database lock (env VFR_JOB_LOCK_TIMEOUT, seconds)."""
    from vfr.store.env import EnvError, env_number

    try:
        return env_number("VFR_JOB_LOCK_TIMEOUT", DEFAULT_JOB_LOCK_TIMEOUT_S, minimum=0.0)
    except EnvError as e:
        raise StoreError(f"{e} (seconds a job waits for the database)") from None


def open_for_job(path: Path, timeout: float, note: Callable[[str], None] = lambda msg: None) -> Store:
    """Open the store for one short transaction; if another process holds it past the usual wait
    (VFR_LOCK_TIMEOUT), say so once through `note` and keep waiting up to `timeout` seconds in all."""
    short = min(lock_timeout_s(), timeout)
    try:
        return Store(path, lock_timeout=short)
    except StoreBusy:
        if timeout <= short:
            raise
    note(f"{path} is in use by another process; the job waits up to {timeout:g}s for it "
         "(VFR_JOB_LOCK_TIMEOUT) and goes on by itself")
    return Store(path, lock_timeout=timeout - short)


class JobLock:
    """`<database>.<kind>.lock`: held by the one running job of this kind on this store."""

    def __init__(self, db: str | Path, kind: str) -> None:
        from filelock import FileLock

        self.db = Path(db)
        self.kind = kind
        self.path = self.db.with_name(f"{self.db.name}.{kind}.lock")
        self._lock = FileLock(str(self.path), thread_local=False)

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise JobLockError(
                f"another {self.kind} job is running on {self.db} (it holds {self.path}); wait for it to "
                f"finish (`vfr jobs --db {self.db}`), or use another --db") from None
        except OSError as e:
            raise JobLockError(f"cannot create the job lock file {self.path} ({e.strerror or e}); the folder "
                               f"of {self.db} must be writable") from None

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def check(self) -> None:
        """Fail now, before anything heavy, if a job of this kind is running on the store."""
        self.acquire()
        self.release()

    def __enter__(self) -> "JobLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_store(db: Path) -> None:
    """Before anything heavy: the database opens for writing (created and migrated if new) and no other
    describe job is running on it."""
    db = Path(db)
    if db.is_dir():
        raise StoreError(f"--db {db} is a folder; pass a database file, e.g. --db {db / 'vfr.duckdb'}")
    if not db.absolute().parent.is_dir():
        raise StoreError(f"the folder for --db {db} does not exist ({db.absolute().parent}); create it or pass "
                         "another --db")
    JobLock(db, "describe").check()
    Store(db).close()
