"""Tenancy on real data: 300 COCO images described by a VLM (the shared join file), split into two
collections. Searching with A's key returns exactly what an engine holding only A's documents returns (same
ids, same scores: no BM25 statistic of B leaks in), and every one of B's ids is 404 to A, everywhere."""
import json

import numpy as np
import pytest

from vfr.engine import Engine

pytestmark = pytest.mark.integration
N = 300
SOURCE = "halc/llava-1.5(64tok)"


@pytest.fixture(scope="module")
def tenants(shared_data, tmp_path_factory):
    from fastapi.testclient import TestClient

    from vfr.keys import new_key
    from vfr.server.app import create_app
    from vfr.server.settings import ServerSettings
    from vfr.store.store import Store

    rows = []
    with open(shared_data / "joined" / "coco_karpathy_val_x_vlm_descriptions.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if SOURCE in r["descriptions"]:
                rows.append(r)
            if len(rows) == N:
                break
    records = [{"id": f"coco-{r['coco_id']}", "text": r["descriptions"][SOURCE], "caption": r["captions"][0],
                "collection": "alpha" if i % 2 == 0 else "beta"} for i, r in enumerate(rows)]
    root = tmp_path_factory.mktemp("tenancy")
    both = Engine.open(root / "both.duckdb", create=True)
    both.upsert(records)  # builds the index (encodes 300 descriptions once; the copy reuses the vectors)
    alone = Engine.open(root / "alpha.duckdb", create=True)
    with Store(both.db, read_only=True) as s:  # the same vectors: copy the embedding cache across
        hashes = [r.text_hash for r in s.document_records([d["id"] for d in records]).values()]
        cached = s.cached_embeddings("all-MiniLM-L6-v2", hashes)
    if cached:
        with Store(alone.db) as s:
            s.cache_embeddings("all-MiniLM-L6-v2", list(cached), np.vstack(list(cached.values())))
    alone.upsert([r for r in records if r["collection"] == "alpha"])
    key_a, row_a = new_key(["alpha"], "write")
    with Store(both.db) as s:
        s.add_key(row_a)
    both.close()
    app = create_app(ServerSettings(db=both.db, warm=False))
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {key_a}"}, alone, records
    alone.close()


def test_a_keys_search_equals_an_engine_holding_only_its_documents(tenants):
    client, auth, alone, records = tenants
    queries = [r["caption"] for r in records[:12]] + [r["caption"] for r in records[1:24:2]][:6] + ["a dog", "pizza"]
    for retriever in ("bm25", "dense", "hybrid"):
        for q in queries:
            resp = client.get("/v1/search", params={"q": q, "k": 10, "retriever": retriever}, headers=auth)
            assert resp.status_code == 200, resp.text
            got = [(h["id"], h["score"]) for h in resp.json()["hits"]]
            want = [(h.id, h.score) for h in alone.search(q, 10, retriever=retriever)]
            assert [g[0] for g in got] == [w[0] for w in want], (retriever, q)
            assert np.allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-5, atol=1e-6), (retriever, q)


def test_every_id_of_the_other_collection_is_404_to_a(tenants):
    client, auth, _, records = tenants
    beta = [r["id"] for r in records if r["collection"] == "beta"]
    alpha = [r["id"] for r in records if r["collection"] == "alpha"]
    for doc_id in beta:
        resp = client.get(f"/v1/documents/{doc_id}", headers=auth)
        assert resp.status_code == 404 and resp.json()["message"] == f"no document {doc_id!r}"
    assert client.get(f"/v1/documents/{alpha[0]}", headers=auth).status_code == 200
    # an id that exists nowhere and one of B's answer alike
    assert client.get("/v1/documents/coco-0", headers=auth).json()["message"] == "no document 'coco-0'"
    for doc_id in beta[:10]:
        assert client.delete(f"/v1/documents/{doc_id}", headers=auth).status_code == 404
    assert client.post("/v1/documents/delete", json={"ids": beta}, headers=auth).json() == {"deleted": []}
    batch = client.post("/v1/search", json={"queries": [r["caption"] for r in records[:40]], "k": 50}, headers=auth)
    assert not {h["id"] for r in batch.json()["results"] for h in r["hits"]} & set(beta)
    assert client.get("/v1/search", params={"q": "dog", "collection": "beta"}, headers=auth).json()["message"] == \
        client.get("/v1/search", params={"q": "dog", "collection": "gamma"}, headers=auth).json()["message"].replace(
            "gamma", "beta")
    assert client.get("/v1/collections", headers=auth).json() == {
        "collections": [{"name": "alpha", "documents": len(alpha)}]}
    # B's documents are all still there: nothing A did touched them
    every = Engine.open(client.app.state.service.settings.db)
    assert set(every.get(beta)) == set(beta)
    every.close()
