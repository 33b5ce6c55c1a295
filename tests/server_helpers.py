"""Shared fixtures for the HTTP service tests: a store with keys (built once from the live-index template),
one app per session behind FastAPI's TestClient (the JVM and the encoder start once), and helpers to run
a real `vfr serve` process on loopback."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
KEYS = {  # name → (collections, role)
    "pets_read": (["pets"], "read"),
    "pets_write": (["pets"], "write"),
    "people_admin": (["people"], "admin"),
    "two_read": (["pets", "people"], "read"),
    "all_admin": (["*"], "admin"),
}


@dataclass
class ServedStore:
    db: Path
    keys: dict[str, str]  # name → the key to send

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


def make_served_store(template: Path, dest: Path) -> ServedStore:
    """A copy of the sample store, indexed (embeddings come from the template's cache), with KEYS."""
    from vfr.engine import Engine
    from vfr.keys import new_key
    from vfr.store.store import Store

    dest.mkdir(parents=True, exist_ok=True)
    db = dest / "served.duckdb"
    shutil.copy(template, db)
    eng = Engine.open(db)
    eng.update_index(full=True)
    eng.close()
    keys = {}
    with Store(db) as store:
        for name, (collections, role) in KEYS.items():
            key, row = new_key(collections, role, name)
            store.add_key(row)
            keys[name] = key
    return ServedStore(db, keys)


@pytest.fixture(scope="session")
def served_store(template_store, tmp_path_factory) -> ServedStore:
    return make_served_store(template_store, tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def api(served_store):
    """One app for the session (key table re-read every second, so revocation is quick to test)."""
    from fastapi.testclient import TestClient

    from vfr.server.app import create_app
    from vfr.server.settings import ServerSettings

    app = create_app(ServerSettings(db=served_store.db, key_ttl=1.0))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, name: str) -> None:
    """Poll `url` until it answers 200; RuntimeError with the log's tail if `proc` exits or `timeout` (a hang
    guard, generous) passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer within {timeout}s: {log.read_text()[-3000:]}")


class ServerProcess:
    """`vfr serve` in a child process on 127.0.0.1; its stderr (access log) goes to a file."""

    def __init__(self, db: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self._err = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "vfr", "serve", "--db", str(db), "--port", str(self.port),
                                      *args], stdout=subprocess.DEVNULL, stderr=self._err, cwd=REPO, env=env)

    def wait_ready(self, timeout: float = 300) -> None:
        wait_http(f"{self.url}/healthz", self.proc, self.log, timeout, "vfr serve")

    def terminate(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._err.close()
        return self.proc.returncode
