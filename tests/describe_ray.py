"""Fixtures for the Ray describe tests: one real local Ray cluster per test session, on loopback.

The cluster is started with `ray start --head` (all its ports chosen free, its own temp folder), so it
never meets another Ray instance on the machine, and it is stopped by ending exactly the processes it
started (its daemons and their children, by pid): never `ray stop`, which ends every Ray on the machine.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from tests.describe_vllm import subprocess_env

PORT_OPTIONS = ("--port", "--node-manager-port", "--object-manager-port", "--ray-client-server-port",
                "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                "--runtime-env-agent-port", "--metrics-export-port")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# Token authentication with a token of this test session, given by environment to the cluster and to
# every driver: nothing else can join the cluster, and nothing is read from or written to ~/.ray
# (a token file there would switch on authentication for every later `ray start` on the machine).
AUTH_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def ray_env() -> dict[str, str]:
    """The cluster's (and so every worker's) and the drivers' environment: the vLLM test settings, this
    checkout first on the path (workers import `vfr` and the test engine factories from it), the
    session's auth token, no usage reports."""
    return {**subprocess_env(), **AUTH_ENV, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


def _cluster_processes(temp_dir: str) -> list[Any]:
    import psutil

    mark = f"{temp_dir}/session_"          # in every daemon's arguments (log and socket paths), not in ours
    mine = {os.getpid(), *(a.pid for a in psutil.Process().parents())}
    roots = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid not in mine and any(mark in a for a in (p.info["cmdline"] or [])):
            roots.append(p)
    procs = {p.pid: p for p in roots}
    for r in roots:
        try:
            procs.update({c.pid: c for c in r.children(recursive=True)})
        except psutil.Error:
            continue
    return list(procs.values())


def stop_cluster(temp_dir: str) -> None:
    """End exactly this cluster's processes (by pid), then remove its temp folder."""
    import psutil

    procs = _cluster_processes(temp_dir)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=8)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


def start_cluster(env: dict[str, str], num_cpus: int = 2) -> tuple[str, str]:
    """`ray start --head` on 127.0.0.1 (free ports, its own temp folder, no dashboard); returns its
    address and temp folder (for `stop_cluster`)."""
    temp_dir = tempfile.mkdtemp(prefix="vfr-ray-", dir="/tmp")   # short: Ray's socket paths must stay < 108 chars
    ports = dict(zip(PORT_OPTIONS, free_ports(len(PORT_OPTIONS))))
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address=127.0.0.1",
           f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir={temp_dir}", *(f"{k}={v}" for k, v in ports.items())]
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        stop_cluster(temp_dir)
        raise RuntimeError(f"ray start failed:\n{started.stdout[-2000:]}\n{started.stderr[-3000:]}")
    return f"127.0.0.1:{ports['--port']}", temp_dir


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """One local cluster for the whole test session: 2 CPUs, loopback; yields its address."""
    saved = {k: os.environ.get(k) for k in AUTH_ENV}
    os.environ.update(AUTH_ENV)              # for tests that drive the job from this process
    try:
        from ray._raylet import Config
    except ImportError:
        pytest.fail("Ray is not installed: pip install 'ray[data]==2.60.0' (the [ray] extra); tests never skip it")
    Config.initialize("")                    # Ray reads RAY_AUTH_MODE when imported: refresh it
    address, temp_dir = start_cluster(ray_env())
    try:
        yield address
    finally:
        stop_cluster(temp_dir)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        Config.initialize("")


def describe_cmd(images: Path, db: Path, model: Path, *extra: str, address: str | None = None) -> list[str]:
    """The real CLI, with the Ray executor when `address` is given."""
    cmd = [sys.executable, "-m", "vfr.cmd_describe", "describe", str(images), "--db", str(db), "--model", str(model),
           "--max-model-len", "4096", *extra]
    if address:
        cmd += ["--executor", "ray", "--ray-address", address, "--workers", "2", "--cpus-per-worker", "0.5"]
    return cmd


def poison_engine(opts: Any, poison: Sequence[str] = ()) -> Any:
    """The real vLLM engine, except that its process dies (like a segfault) when it meets a poison image."""
    from vfr.describe.engine_vllm import VllmEngine

    class Poisoned:
        def __init__(self) -> None:
            self.inner = VllmEngine(opts)
            self.name = self.inner.name
            self.max_pixels = self.inner.max_pixels

        def generate(self, batch: Sequence[Any], retry: bool = False) -> list[Any]:
            if any(ref.id in poison for ref in batch):
                os._exit(3)
            return self.inner.generate(batch, retry)

    return Poisoned()
