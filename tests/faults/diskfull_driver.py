"""Disk-full rounds for tests/faults/test_disk_full.py, run in a private mount namespace with a small tmpfs
(`unshare -rm`, so no privileges are needed), or, where namespaces are not allowed, with a file-size limit
(RLIMIT_FSIZE: every write past the limit fails, in DuckDB, Lucene and FAISS alike).

Usage: python -m tests.faults.diskfull_driver SPEC.json

For each operation (a `vfr` command line) the driver first runs it once with room to spare on a scratch copy and
measures the most space it ever used (tmpfs) or the largest file it grew (rlimit). Then for each round it copies
the base into the tmpfs, leaves only a fraction of that room free (remounting the tmpfs smaller), and runs the
command: it must fail with one clean line, or succeed. It then gives the room back and runs the same command
again (the recovery), while a reader process (tests/fault_reader.py) searches the copy throughout. Each round's
files are copied out for the test to check; a summary goes to OUT/result.json.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.faults.helpers import ENV, REPO, Reader

PAGE = 4096


def _used(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _resize(mnt: Path, size: int) -> None:
    size = max(PAGE, -(-size // PAGE) * PAGE)
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


def _largest_file(folder: Path) -> int:
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return max(sizes, default=0)


def _run(argv: list[str], db: Path, limit: int | None = None, sample=None) -> dict:
    """Run `vfr ARGV` ({db} replaced); with `limit`, under RLIMIT_FSIZE; `sample()` is polled while it runs."""
    args = [a.replace("{db}", str(db)).replace("{dir}", str(db.parent)) for a in argv]

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen([sys.executable, "-m", "vfr", *args], cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**ENV, "PYTHONDONTWRITEBYTECODE": "1"},
                            preexec_fn=limited if limit else None)
    peak = [0]
    if sample is not None:
        def poll() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], sample())
                time.sleep(0.005)
        t = threading.Thread(target=poll, daemon=True)
        t.start()
    out, err = proc.communicate(timeout=600)
    if sample is not None:
        t.join()
        peak[0] = max(peak[0], sample())
    return {"rc": proc.returncode, "stdout": out[-4000:], "stderr": err[-4000:], "peak": peak[0]}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    mode, mnt, base, out = spec["mode"], Path(spec["mnt"]), Path(spec["base"]), Path(spec["out"])
    reader = Reader(Path(spec["control"]))
    result: dict = {"mode": mode, "ops": {}}
    try:
        for name, op in spec["ops"].items():
            result["ops"][name] = _op(name, op, mode, mnt, base, out, reader, op["forbidden"])
    finally:
        reader.stop()
    (out / "result.json").write_text(json.dumps(result, indent=1))


def _op(name: str, op: dict, mode: str, mnt: Path, base: Path, out: Path, reader: Reader, forbidden) -> dict:
    src = base / op["base"]
    scratch = mnt / f"{name}-measure"
    shutil.copytree(src, scratch)
    if mode == "tmpfs":
        before = _used(mnt)
        measured = _run(op["argv"], scratch / "s.duckdb", sample=lambda: _used(mnt))
        need = measured["peak"] - before
    else:
        measured = _run(op["argv"], scratch / "s.duckdb", sample=lambda: _largest_file(scratch))
        need = measured["peak"]
    assert measured["rc"] == 0, f"{name} fails even with room to spare: {measured['stderr']}"
    shutil.rmtree(scratch)
    rounds = []
    for k, fraction in enumerate(op["fractions"]):
        work = mnt / f"{name}-{k}"
        shutil.copytree(src, work)
        db = work / "s.duckdb"
        case = f"diskfull-{name}-{k}"
        reader.watch(case, db, forbidden)
        room = int(fraction * need)
        if mode == "tmpfs":
            _resize(mnt, _used(mnt) + room)
            failed = _run(op["argv"], db)
            _resize(mnt, _used(mnt) + 256 * 2**20)  # room again
        else:
            failed = _run(op["argv"], db, limit=max(PAGE, room))
        recovered = _run(op["argv"], db)
        seen = reader.finish(case)
        shutil.copytree(work, out / case, ignore=shutil.ignore_patterns("leases", "LOCK"))
        shutil.rmtree(work)
        rounds.append({"fraction": fraction, "room": room, "failed": failed, "recovered": recovered, "reader": seen})
    return {"need": need, "rounds": rounds}


if __name__ == "__main__":
    main()
