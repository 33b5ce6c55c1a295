"""`vfr keys create|list|revoke`: API keys for `vfr serve` (vfr/keys.py)."""
from __future__ import annotations

from typing import Annotated

import typer

from vfr.common import DbOption, console, fail, out
from vfr.store.textfiles import json_dumps

keys_app = typer.Typer(help="API keys for `vfr serve`: each sees only its collections.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_cmd(
    db: DbOption,
    collection: Annotated[list[str], typer.Option("--collection", "-c", help="A collection the key may see "
                                                  "(repeat for several; '*' for every collection).")],
    role: Annotated[str, typer.Option(help="read (search, get), write (+ upsert, delete) or admin "
                                           "(+ delete whole collections or a describer's descriptions in "
                                           "them; with '*' metrics and retracting a describer everywhere).")] = "read",
    name: Annotated[str | None, typer.Option(help="A note to recognise the key by in `vfr keys list`.")] = None,
) -> None:
    """Make a key and print it once (only a salted hash is stored: it cannot be shown again)."""
    from vfr.keys import KeyError_, new_key
    from vfr.store.store import Store, StoreError

    if not db.exists():
        fail(f"no database at {db}: give --db (keys live in the database the server serves)")
    try:
        key, row = new_key(collection, role, name)
        with Store(db) as store:
            store.add_key(row)
    except (KeyError_, StoreError) as e:
        fail(str(e))
    console.print(f"key {row.id} ({row.role}; collections: {', '.join(row.collections)}). "
                  "Store it now: it is not shown again.", highlight=False)
    out.print(key, highlight=False)


@keys_app.command("list")
def list_cmd(db: DbOption, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Keys with their collections, role and dates (never the secrets)."""
    from vfr.store.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            rows = store.keys()
    except StoreError as e:
        fail(str(e))
    items = [{"id": r.id, "role": r.role, "collections": list(r.collections), "name": r.name,
              "created_at": r.created_at.isoformat(timespec="seconds") if r.created_at else None,
              "revoked_at": r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else None} for r in rows]
    if as_json:
        out.print_json(json_dumps(items))
        return
    if not items:
        console.print("no keys: the server is open on loopback only (`vfr keys create --collection NAME`)")
    for i in items:
        state = f"revoked {i['revoked_at']}" if i["revoked_at"] else "active"
        out.print(f"{i['id']}  {i['role']:<5}  {','.join(i['collections'])}  {state}  created {i['created_at']}"
                  + (f"  {i['name']}" if i["name"] else ""), highlight=False)


@keys_app.command("revoke")
def revoke_cmd(db: DbOption, ids: Annotated[list[str], typer.Argument(metavar="KEY_ID...",
                                                                  help="Key ids (from `vfr keys list`).")]) -> None:
    """Revoke keys; a running server refuses them within its key refresh interval (--key-ttl, 5 s)."""
    from vfr.keys import split_key
    from vfr.store.store import Store, StoreError

    wanted = [(split_key(i) or (i, ""))[0] for i in ids]  # a whole key works too
    try:
        with Store(db) as store:
            known = {r.id for r in store.keys()}
            done = store.revoke_keys(wanted)
    except StoreError as e:
        fail(str(e))
    unknown = [i for i in wanted if i not in known]
    for i in done:
        console.print(f"revoked {i}")
    if unknown:
        fail(f"no such key: {', '.join(unknown)} (see `vfr keys list`)")
