"""The HTTP API through FastAPI's TestClient, on one app per session (real engine: Lucene, MiniLM, the
live index over the sample): searches, the batch shape, descriptions and explanations, writes, keys and
tenancy, every client error as JSON with the right status, metrics and the page."""
import json

import pytest

from vfr.engine import Engine

pytestmark = pytest.mark.integration


def hits(resp):
    assert resp.status_code == 200, resp.text
    return [(h["id"], h["score"], h["rank"]) for h in resp.json()["hits"]]


def test_get_and_post_agree_with_the_engine_and_batches_use_the_cli_shape(api, served_store):
    auth = served_store.auth("all_admin")
    got = hits(api.get("/v1/search", params={"q": "a dog chasing a cat", "k": 5}, headers=auth))
    posted = hits(api.post("/v1/search", json={"q": "a dog chasing a cat", "k": 5}, headers=auth))
    eng = Engine.open(served_store.db)
    want = [(h.id, h.score, h.rank) for h in eng.search("a dog chasing a cat", 5)]
    assert got == posted == want and len(want) == 5
    batch = api.post("/v1/search", json={"queries": ["red bus", {"id": "mine", "text": "a bowl of ramen"}],
                                         "k": 3, "retriever": "bm25"}, headers=auth)
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["query_id"] for r in results] == ["q1", "mine"]
    assert all(set(h) == {"id", "score", "rank"} for r in results for h in r["hits"])  # the jsonl line shape
    want = eng.batch_search({"q1": "red bus", "mine": "a bowl of ramen"}, 3, retriever="bm25")
    assert [[h["id"] for h in r["hits"]] for r in results] == [[h.id for h in want[q]] for q in ("q1", "mine")]
    page2 = hits(api.get("/v1/search", params={"q": "a dog chasing a cat", "k": 2, "offset": 2}, headers=auth))
    assert page2 == [(i, s, r) for i, s, r in got[2:4]]  # paging keeps the global ranks
    eng.close()


def test_hits_carry_descriptions_and_why_they_matched(api, served_store):
    resp = api.get("/v1/search", params={"q": "dogs running", "k": 3, "include": ["description", "explain"]},
                   headers=served_store.auth("all_admin"))
    assert resp.status_code == 200, resp.text
    for hit in resp.json()["hits"]:
        doc, why = hit["document"], hit["why"]
        assert doc["id"] == hit["id"] and doc["text"] and doc["collection"]
        assert "path" not in doc  # never where the image was
        assert why["bm25"] == pytest.approx(sum(t["score"] for t in why["terms"]), rel=1e-5)
        assert {t["term"] for t in why["terms"]} <= {"dog", "run"}
        assert -1 <= why["dense"] <= 1
        text = (doc["caption"] or "") + " " + doc["text"]
        assert all(w in text.lower() for w in why["words"])  # surface words that match ("dogs", "running")
    assert any(w in ("dog", "dogs", "running", "run", "runs") for h in resp.json()["hits"] for w in h["why"]["words"])


def test_hybrid_pages_continue_one_ranking_within_its_window(api, served_store):
    """Ten pages of 10 are the top 100 of one ranking (nothing repeated or skipped); a hybrid page past the
    fusion window is refused with what to do, since a deeper fusion reorders the pages before it; BM25 and
    dense page on."""
    auth = served_store.auth("all_admin")
    q = "a dog chasing a cat"
    first = api.get("/v1/search", params={"q": q, "k": 100}, headers=auth)
    assert first.json()["window"] == 100
    ranking = [(i, r) for i, _, r in hits(first)]
    pages = [hits(api.get("/v1/search", params={"q": q, "k": 10, "offset": o}, headers=auth)) for o in range(0, 100, 10)]
    assert [(i, r) for page in pages for i, _, r in page] == ranking and len(ranking) == 100
    past = api.get("/v1/search", params={"q": q, "k": 10, "offset": 95}, headers=auth)
    assert past.status_code == 422 and "offset ≤ 90 for k = 10" in past.json()["message"]
    assert "retriever=bm25 or dense" in past.json()["message"]
    batch = api.post("/v1/search", json={"queries": [q], "k": 10, "offset": 100}, headers=auth)
    assert batch.status_code == 422, batch.text
    deep = api.get("/v1/search", params={"q": q, "k": 10, "offset": 100, "retriever": "dense"}, headers=auth)
    assert deep.status_code == 200 and "window" not in deep.json()
    assert [h["rank"] for h in deep.json()["hits"]] == list(range(101, 111))


def _big_body() -> bytes:
    return json.dumps({"q": "x", "pad": "y" * (9 << 20)}).encode()


@pytest.mark.parametrize("method,path,kwargs,key,status", [
    ("post", "/v1/search", {"content": b"{not json", "headers": {"content-type": "application/json"}}, "all_admin", 400),
    ("post", "/v1/search", {"json": {"q": "dog", "colour": "red"}}, "all_admin", 422),
    ("post", "/v1/search", {"json": {"q": "dog", "queries": ["cat"]}}, "all_admin", 422),
    ("get", "/v1/search", {"params": {"q": "dog", "k": 101}}, "all_admin", 422),
    ("get", "/v1/search", {"params": {"q": "dog", "k": 0}}, "all_admin", 422),
    ("get", "/v1/search", {"params": {"q": "dog " * 300}}, "all_admin", 422),
    ("get", "/v1/search", {"params": {"q": "   "}}, "all_admin", 422),
    ("get", "/v1/search", {"params": {"q": "dog", "retriever": "magic"}}, "all_admin", 422),
    ("post", "/v1/search", {"content": b'{"q": "\\ud800 dog"}', "headers": {"content-type": "application/json"}},
     "all_admin", 422),
    ("post", "/v1/search", {"content": _big_body(), "headers": {"content-type": "application/json"}}, "all_admin", 413),
    ("get", "/v1/search", {"params": {"q": "dog", "collection": "nosuch"}}, "all_admin", 404),
    ("get", "/v1/search", {"params": {"q": "dog"}}, None, 401),
    ("get", "/v1/search", {"params": {"q": "dog"}, "headers": {"Authorization": "Bearer vfr_0000_wrong"}}, None, 401),
    ("get", "/v1/search", {"params": {"q": "dog"}, "headers": {"Authorization": "Basic abc"}}, None, 401),
    ("put", "/v1/documents", {"json": {"documents": [{"id": "x", "text": "t"}]}}, "pets_read", 403),
    ("put", "/v1/documents", {"json": {"documents": [{"id": "x"}]}}, "pets_write", 422),
    ("put", "/v1/documents", {"json": {"documents": [{"id": "x", "json": {"caption": "c"}}]}}, "pets_write", 422),
    ("delete", "/v1/collections/pets", {}, "pets_write", 403),
    ("get", "/metrics", {}, "people_admin", 403),
    ("get", "/v1/nothing-here", {}, "all_admin", 404),
])
def test_client_errors_are_json_with_a_clear_message(api, served_store, method, path, kwargs, key, status):
    kwargs = dict(kwargs)
    if key:
        kwargs["headers"] = {**kwargs.get("headers", {}), **served_store.auth(key)}
    resp = getattr(api, method)(path, **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and body["error"] and len(body["message"]) > 10
    assert "Traceback" not in resp.text and "File \"" not in resp.text


def test_a_key_sees_only_its_collections(api, served_store):
    pets = served_store.auth("pets_read")
    found = api.get("/v1/search", params={"q": "a person walking", "k": 20, "include": "description"}, headers=pets)
    assert found.status_code == 200 and {h["document"]["collection"] for h in found.json()["hits"]} == {"pets"}
    assert api.get("/v1/collections", headers=pets).json() == {"collections": [{"name": "pets", "documents": 10}]}
    both = api.get("/v1/collections", headers=served_store.auth("two_read")).json()["collections"]
    assert [c["name"] for c in both] == ["people", "pets"]
    for retriever in ("bm25", "dense", "hybrid"):  # a scoped key answers as the engine scoped to its collection
        got = hits(api.get("/v1/search", params={"q": "a black dog", "retriever": retriever}, headers=pets))
        eng = Engine.open(served_store.db)
        assert got == [(h.id, h.score, h.rank) for h in eng.search("a black dog", retriever=retriever,
                                                                    collection="pets")]


def test_other_collections_ids_are_404_everywhere(api, served_store):
    eng = Engine.open(served_store.db)
    people_doc = next(d for d, p in eng.get([f"sample-{i:03d}" for i in range(1, 181)]).items()
                      if p["collection"] == "people")
    w = served_store.auth("pets_write")
    assert api.get(f"/v1/documents/{people_doc}", headers=w).status_code == 404
    assert api.get(f"/v1/documents/{people_doc}", headers=served_store.auth("people_admin")).status_code == 200
    assert api.delete(f"/v1/documents/{people_doc}", headers=w).status_code == 404
    assert api.post("/v1/documents/delete", json={"ids": [people_doc]}, headers=w).json() == {"deleted": []}
    assert api.get("/v1/search", params={"q": "dog", "collection": "people"}, headers=w).status_code == 404
    assert api.delete("/v1/collections/pets", headers=served_store.auth("people_admin")).status_code == 404
    put = api.put("/v1/documents", json={"documents": [{"id": "z1", "text": "t", "collection": "people"}]}, headers=w)
    assert put.status_code == 404  # a collection the key cannot see is unknown
    taken = api.put("/v1/documents", json={"documents": [{"id": people_doc, "text": "mine now"}]}, headers=w)
    assert taken.status_code == 409 and "people" not in taken.text  # refused without naming the owner
    assert eng.get([people_doc])[people_doc]["collection"] == "people"  # nothing moved or changed
    eng.close()


def test_writes_are_visible_when_the_call_returns(api, served_store):
    w = served_store.auth("pets_write")
    put = api.put("/v1/documents", json={"documents": [
        {"id": "srv-1", "text": "a purple giraffe juggling oranges"},
        {"id": "srv-2", "json": {"caption": "a purple kite", "objects": [{"name": "kite", "colors": ["purple"]}],
                                 "setting": {"scene": "beach"}}}]}, headers=w)
    assert put.status_code == 200, put.text
    assert put.json() == {"ids": ["srv-1", "srv-2"]}  # no index-wide figures for a scoped key
    top = api.get("/v1/search", params={"q": "purple giraffe juggling", "k": 1, "retriever": "bm25"}, headers=w)
    assert hits(top)[0][0] == "srv-1"
    doc = api.get("/v1/documents/srv-2", headers=w).json()
    assert doc["collection"] == "pets" and doc["description"]["caption"] == "a purple kite" and "kite" in doc["text"]
    assert api.delete("/v1/documents/srv-1", headers=w).json() == {"deleted": ["srv-1"]}
    for retriever in ("bm25", "dense", "hybrid"):
        found = hits(api.get("/v1/search", params={"q": "purple giraffe juggling", "k": 20, "retriever": retriever},
                             headers=w))
        assert "srv-1" not in {h[0] for h in found}
    assert api.get("/v1/documents/srv-1", headers=w).status_code == 404
    assert api.post("/v1/documents/delete", json={"ids": ["srv-2", "nope"]}, headers=w).json() == {"deleted": ["srv-2"]}


def test_revoked_key_is_refused_within_the_refresh_interval(api, served_store):
    import time

    from vfr.keys import new_key
    from vfr.store.store import Store

    svc = api.app.state.service
    key, row = new_key(["pets"], "read")
    with svc.store_lock, Store(served_store.db) as s:  # one store configuration at a time in this process
        s.add_key(row)
    auth = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 30
    while api.get("/v1/collections", headers=auth).status_code != 200:
        assert time.monotonic() < deadline, "a new key never started to work"
        time.sleep(0.2)
    with svc.store_lock, Store(served_store.db) as s:
        s.revoke_keys([row.id])
    deadline = time.monotonic() + 30
    while (resp := api.get("/v1/collections", headers=auth)).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key kept working"
        time.sleep(0.2)
    assert resp.json()["message"] == "unknown or revoked API key"


def test_health_metrics_and_the_page(api, served_store):
    assert api.get("/healthz").json() == {"status": "ok"}
    api.get("/v1/search", params={"q": "dog"}, headers=served_store.auth("all_admin"))
    metrics = api.get("/metrics", headers=served_store.auth("all_admin"))
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'vfr_http_requests_total{method="GET",route="/v1/search",status="200"}' in text
    assert "vfr_http_request_duration_seconds_bucket" in text and "vfr_search_duration_seconds_count" in text
    assert "vfr_index_documents " in text and "vfr_index_generation " in text
    assert "vfr_search_batches_total" in text
    page = api.get("/")
    assert page.status_code == 200 and "img-src 'none'" in page.headers["content-security-policy"]
    assert "<img" not in page.text and 'id="q"' in page.text and '<label for="q">' in page.text
    assert api.get("/static/app.js").status_code == 200
    schema = api.get("/openapi.json").json()
    assert {"/v1/search", "/v1/documents", "/v1/documents/{doc_id}", "/v1/collections", "/healthz",
            "/metrics"} <= set(schema["paths"])


def test_without_keys_only_loopback_is_served(tmp_path, template_store):
    from fastapi.testclient import TestClient

    from tests.live_helpers import copy_store
    from vfr.server.app import create_app
    from vfr.server.service import Service
    from vfr.server.settings import ServerSettings

    db = copy_store(template_store, tmp_path)
    Engine.open(db).update_index(full=True)
    with pytest.raises(RuntimeError, match="refusing to serve 0.0.0.0 without keys"):
        Service(ServerSettings(db=db, host="0.0.0.0", warm=False)).start()
    with TestClient(create_app(ServerSettings(db=db, warm=False))) as open_api:
        assert open_api.get("/v1/search", params={"q": "dog"}).status_code == 200  # open on loopback
        assert open_api.get("/metrics").status_code == 200
        assert open_api.get("/v1/search", params={"q": "dog"},
                            headers={"Authorization": "Bearer vfr_x_y"}).status_code == 401


def test_bodies_without_a_length_are_read_up_to_the_limit(api, served_store):
    auth = {**served_store.auth("all_admin"), "content-type": "application/json"}
    ok = api.post("/v1/search", content=iter([b'{"q": "a dog ', b'chasing a cat", "k": 2}']), headers=auth)
    assert ok.status_code == 200 and len(ok.json()["hits"]) == 2
    big = api.post("/v1/search", content=iter([b'{"q": "x", "pad": "'] + [b"y" * (1 << 20)] * 9 + [b'"}']),
                   headers=auth)
    assert big.status_code == 413 and big.json()["error"] == "too_large"


def test_an_admin_for_every_collection_retracts_a_describer(api, served_store):
    """DELETE /v1/describers/{model}: the model's view is gone from search and the document is its other
    description again; a narrower key is refused, and an unknown model is a 404 naming the models there are."""
    auth = served_store.auth("all_admin")
    before = api.get("/v1/documents/sample-007", headers=auth).json()
    view = {"id": "sample-007", "model": "leaky-vlm", "text": "a zqxserverview carnival of paper lanterns",
            "collection": before["collection"]}
    assert api.put("/v1/documents", json={"documents": [view]}, headers=auth).status_code == 200
    assert [i for i, _, _ in hits(api.get("/v1/search", params={"q": "zqxserverview", "retriever": "bm25"},
                                          headers=auth))] == ["sample-007"]
    refused = api.delete("/v1/describers/leaky-vlm", headers=served_store.auth("people_admin"))
    assert refused.status_code == 403 and "every collection" in refused.json()["message"]
    done = api.delete("/v1/describers/leaky-vlm", headers=auth)
    assert done.status_code == 200, done.text
    assert done.json() == {"descriptions": 1, "images": 1, "undescribed": 0}
    assert hits(api.get("/v1/search", params={"q": "zqxserverview", "retriever": "bm25"}, headers=auth)) == []
    assert api.get("/v1/documents/sample-007", headers=auth).json()["text"] == before["text"]
    again = api.delete("/v1/describers/leaky-vlm", params={"prompt_version": "none"}, headers=auth)
    assert again.status_code == 404 and "no descriptions by model 'leaky-vlm'" in again.json()["message"]


def test_an_admin_of_one_collection_retracts_a_describer_there_only(api, served_store):
    """DELETE /v1/collections/{name}/describers/{model}: the view leaves that collection's documents and stays
    in the others'; a key that cannot see the collection gets a 404, a write key a 403, and a 404 for a model
    lists only this collection's describers."""
    root, people = served_store.auth("all_admin"), served_store.auth("people_admin")
    eng = Engine.open(served_store.db)
    docs = eng.get([f"sample-{i:03d}" for i in range(1, 181)])
    eng.close()
    mine = {c: next(d for d, p in docs.items() if p["collection"] == c) for c in ("people", "pets")}
    views = [{"id": d, "model": "tenant-vlm", "text": "a zqxtenantview of paper lanterns", "collection": c}
             for c, d in mine.items()]
    assert api.put("/v1/documents", json={"documents": views}, headers=root).status_code == 200
    assert api.delete("/v1/collections/people/describers/tenant-vlm",
                      headers=served_store.auth("pets_write")).status_code == 403  # the role is checked first
    assert api.delete("/v1/collections/pets/describers/tenant-vlm", headers=people).status_code == 404
    refused = api.delete("/v1/describers/tenant-vlm", headers=people)
    assert refused.status_code == 403 and "/v1/collections/{name}/describers/{model}" in refused.json()["message"]
    done = api.delete("/v1/collections/people/describers/tenant-vlm", headers=people)
    assert done.status_code == 200, done.text
    assert done.json() == {"descriptions": 1, "images": 1, "undescribed": 0}
    found = hits(api.get("/v1/search", params={"q": "zqxtenantview", "retriever": "bm25"}, headers=root))
    assert [i for i, _, _ in found] == [mine["pets"]]
    assert api.get(f"/v1/documents/{mine['people']}", headers=root).json()["text"] == docs[mine["people"]]["text"]
    again = api.delete("/v1/collections/people/describers/tenant-vlm", headers=people)
    assert again.status_code == 404 and "tenant-vlm" not in again.json()["message"].split("has:")[1]
    assert api.delete("/v1/describers/tenant-vlm", headers=root).json()["descriptions"] == 1  # pets' view, cleaned up
