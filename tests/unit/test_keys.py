"""API keys: only a salted hash is stored, a key checks against its own row only, the key ring follows the
table within its refresh interval (revocation), fails closed when the table cannot be read, and the
`vfr keys` commands make, list and revoke keys."""
import json
import time

import pytest
from typer.testing import CliRunner

from vfr.cli import app
from vfr.keys import KeyError_, KeyRing, KeysUnavailable, check, new_key, store_loader
from vfr.store.store import Store


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "k.duckdb"
    with Store(path):
        pass
    return path


def test_a_key_checks_against_its_row_and_only_a_hash_is_stored(db):
    key, row = new_key(["pets"], "write", "ci")
    other, other_row = new_key(["pets"], "write")
    with Store(db) as s:
        s.add_key(row)
    secret = key.split("_", 2)[2]
    raw = db.read_bytes()
    assert secret.encode() not in raw and key.encode() not in raw
    assert check(key, row) and not check(other, row) and not check(key, other_row)
    assert not check(key[:-1] + ("A" if key[-1] != "A" else "B"), row)
    assert not check("vfr_" + row.id + "_", row) and not check("nonsense", row)
    with Store(db, read_only=True) as s:
        (stored,) = s.keys()
    assert stored.collections == ("pets",) and stored.role == "write" and stored.name == "ci" and stored.active
    assert check(key, stored)


@pytest.mark.parametrize("collections,role,message", [
    ([], "read", "at least one"), (["a", "*"], "read", "alone"), (["a"], "owner", "unknown role"),
    ([" "], "read", "at least one")])
def test_bad_key_requests_say_what_to_do(collections, role, message):
    with pytest.raises(KeyError_, match=message):
        new_key(collections, role)


def test_revocation_takes_effect_at_the_next_refresh(db):
    key, row = new_key(["pets"], "read")
    with Store(db) as s:
        s.add_key(row)
    ring = KeyRing(store_loader(db), ttl=0.2)
    ring.refresh()
    who = ring.authenticate(key)
    assert who.collections == frozenset({"pets"}) and who.role == "read" and who.key_id == row.id
    assert ring.cached(key) == who  # verified once, then answered from memory
    assert ring.authenticate("vfr_" + row.id + "_wrong") is None
    ring.start()
    try:
        with Store(db) as s:
            assert s.revoke_keys([row.id]) == [row.id]
        deadline = time.monotonic() + 30
        while ring.authenticate(key) is not None:
            assert time.monotonic() < deadline, "revocation never took effect"
            time.sleep(0.05)
    finally:
        ring.stop()
    assert not ring.any_active


def test_the_ring_fails_closed_when_the_table_cannot_be_read(db):
    key, row = new_key(["*"], "admin")
    calls = {"n": 0}

    def load():
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("database busy")
        return [row]
    ring = KeyRing(load, ttl=0.05, max_stale=0.3)
    ring.refresh()
    assert ring.authenticate(key).collections is None  # "*": every collection
    ring.start()
    time.sleep(0.6)
    ring.stop()
    with pytest.raises(KeysUnavailable, match="database busy"):
        ring.authenticate(key)


def test_keys_cli_create_list_revoke(db):
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--db", str(db), "--collection", "pets", "--collection", "people",
                               "--role", "write", "--name", "uploader"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("vfr_")
    listed = runner.invoke(app, ["keys", "list", "--db", str(db), "--json"])
    (item,) = json.loads(listed.stdout)
    assert item["collections"] == ["people", "pets"] and item["role"] == "write" and item["revoked_at"] is None
    assert key.split("_", 2)[2] not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", "--db", str(db), key]).exit_code == 0  # the whole key works too
    (item,) = json.loads(runner.invoke(app, ["keys", "list", "--db", str(db), "--json"]).stdout)
    assert item["revoked_at"] is not None
    bad = runner.invoke(app, ["keys", "revoke", "--db", str(db), "nosuchkey"])
    assert bad.exit_code == 1 and "no such key" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["keys", "create", "--db", str(db), "--collection", "a", "--role", "root"])
    assert bad.exit_code == 1 and "unknown role" in bad.output
    bad = runner.invoke(app, ["keys", "create", "--db", str(db.with_name("missing.duckdb")), "--collection", "a"])
    assert bad.exit_code == 1 and "no database" in bad.output
