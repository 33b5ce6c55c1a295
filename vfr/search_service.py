"""One search backend for every front end (CLI now, HTTP later): store + index + staleness check."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.types import Hit


class ServiceError(RuntimeError):
    pass


def read_queries(path: Path) -> dict[str, str]:
    """JSONL {"id", "text"} lines, or plain text (one query a line, ids q1, q2, ...)."""
    if not path.is_file():
        raise ServiceError(f"{path}: no such file")
    queries: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ServiceError(f"{path}: not UTF-8 text ({e})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
                qid, text = str(obj["id"]), obj["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ServiceError(f"{path}:{lineno}: expected {{\"id\": str, \"text\": str}} ({e})") from None
            if not isinstance(text, str):
                raise ServiceError(f"{path}:{lineno}: 'text' must be a string")
        else:
            qid, text = f"q{lineno}", line
        if qid in queries:
            raise ServiceError(f"{path}:{lineno}: duplicate query id {qid!r}")
        queries[qid] = text
    if not queries:
        raise ServiceError(f"{path}: no queries")
    return queries


class SearchService:
    def __init__(self, db: Path, index_dir: Path, rebuild: bool = False) -> None:
        from vfr.retrieve.index import IndexError_, OpenIndex, build_index, is_stale, outdated_format, read_manifest
        from vfr.store.store import Store, StoreError

        self.db, self.index_dir = db, index_dir
        try:
            with Store(db, read_only=True) as store:
                fingerprint = store.fingerprint()
            try:
                manifest = read_manifest(index_dir)
                stale = is_stale(manifest, fingerprint)
            except IndexError_:
                if not rebuild:
                    raise
                manifest, stale = None, True
            if stale:
                if not rebuild and outdated_format(manifest):
                    raise ServiceError(f"the index at {index_dir} was built by an older vfr (index format "
                                       f"{manifest.get('index_format', 1)}). Run `vfr index` (or search with --rebuild)")
                if not rebuild:
                    raise ServiceError(
                        f"the index at {index_dir} is stale: the store has {fingerprint['documents']} documents "
                        f"that changed since it was built ({manifest['documents']} then). "
                        "Run `vfr index` (or search with --rebuild)")
                from vfr.retrieve.index import IndexConfig

                cfg = IndexConfig(**{k: v for k, v in manifest["build"]["config"].items()}) if manifest else IndexConfig()
                with Store(db) as store:
                    build_index(store, index_dir, cfg)
            self.index = OpenIndex(index_dir)
        except (StoreError, IndexError_) as e:
            raise ServiceError(str(e)) from None

    @staticmethod
    def fusion_config(method: str | None, weights: str | None, norm: str | None, depth: int | None) -> FusionConfig:
        base = FusionConfig()
        try:
            w = tuple(float(x) for x in weights.split(",")) if weights else base.weights
            return FusionConfig(method=method or base.method, weights=w, norm=norm or base.norm,  # type: ignore[arg-type]
                                depth=depth or base.depth, rrf_k=base.rrf_k)
        except ValueError as e:
            raise ServiceError(f"bad fusion settings: {e}") from None

    def search(self, queries: dict[str, str], k: int, retriever: str, fusion: FusionConfig | None = None
               ) -> dict[str, list[Hit]]:
        from vfr.retrieve.index import IndexError_

        try:
            searcher = self.index.searcher(retriever, fusion)
        except (IndexError_, ValueError) as e:
            raise ServiceError(str(e)) from None
        if len(queries) == 1:
            (qid, text), = queries.items()
            return {qid: searcher.search(text, k)}
        run = searcher.batch_search(queries, k)
        return {qid: [Hit(d, s, r + 1) for r, (d, s) in enumerate(sorted(run.get(qid, {}).items(),
                                                                       key=lambda kv: (-kv[1], kv[0])))]
                for qid in queries}

    def documents(self, ids: Iterable[str]):
        from vfr.store.store import Store

        with Store(self.db, read_only=True) as store:
            return store.get(list(ids))
