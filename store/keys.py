"""API keys of the HTTP service (table `api_keys`, migration 4): rows only; generating and checking keys
is vfr/keys.py. Mixed into `Store`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    salt: bytes
    hash: bytes
    kdf: dict
    collections: tuple[str, ...]  # ("*",): every collection
    role: str
    name: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeysMixin:
    con: Any

    def add_key(self, row: KeyRow) -> None:
        self.con.execute("INSERT INTO api_keys (id, salt, hash, kdf, collections, role, name) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [row.id, row.salt, row.hash, json.dumps(row.kdf), json.dumps(list(row.collections)),
                          row.role, row.name])

    def keys(self, include_revoked: bool = True) -> list[KeyRow]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = self.con.execute("SELECT id, salt, hash, kdf, collections, role, name, created_at, revoked_at "
                                f"FROM api_keys {where} ORDER BY created_at, id").fetchall()
        return [KeyRow(r[0], bytes(r[1]), bytes(r[2]), json.loads(r[3]), tuple(json.loads(r[4])), r[5], r[6], r[7], r[8])
                for r in rows]

    def revoke_keys(self, ids: Sequence[str]) -> list[str]:
        """Mark keys revoked; returns the ids that were active."""
        if not ids:
            return []
        rows = self.con.execute("UPDATE api_keys SET revoked_at = current_timestamp "
                                "WHERE list_contains(?, id) AND revoked_at IS NULL RETURNING id", [list(ids)]).fetchall()
        return sorted(r[0] for r in rows)
