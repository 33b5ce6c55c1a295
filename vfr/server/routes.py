"""The API under /v1, plus /healthz and /metrics. Each handler checks who is calling, turns the key's
collections into the search scope (a collection the key cannot see is "unknown": 404, as if it did not
exist) and runs the engine call on the service's threads."""
from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPBearer

from vfr.keys import Principal
from vfr.server import models as m
from vfr.server.metrics import CONTENT_TYPE
from vfr.server.service import ApiError, Service, not_found, require, require_global_admin
from vfr.server.settings import MAX_K, MAX_OFFSET

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer vfr_<id>_<secret>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)
ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": m.Error, "description": d} for s, d in (
    (400, "Bad JSON"), (401, "Missing, unknown or revoked key"), (403, "The key's role does not allow this"),
    (404, "Unknown collection or document (or one the key cannot see)"),
    (409, "An id held by a collection the key cannot see"), (413, "Body too large"),
    (422, "Invalid request (unknown fields, values out of range, empty query, a hybrid page past its window)"),
    (503, "Busy or keys unavailable; retry"))}
router = APIRouter(responses=ERRORS)


def service(request: Request) -> Service:
    return request.app.state.service


async def caller(request: Request, _b: Any = Depends(_bearer), _k: Any = Depends(_header)) -> Principal:
    return await service(request).principal(request)


Svc = Annotated[Service, Depends(service)]
Who = Annotated[Principal, Depends(caller)]


async def scope_of(svc: Service, who: Principal, requested: list[str] | None) -> list[str] | None:
    """The collections a request searches: those asked for (each must be visible), else all the key sees."""
    if not requested:
        return None if who.collections is None else sorted(who.collections)
    names = list(dict.fromkeys(requested))
    if who.collections is not None:
        known = who.collections
    else:
        known = set((await svc.run(svc.engine.stats)).get("collections", {}))
    for name in names:
        if name not in known:
            raise not_found(f"unknown collection {name!r}")
    return names


def _document(payload: dict) -> m.Document:
    return m.Document(id=payload["id"], collection=payload.get("collection"), caption=payload.get("caption"),
                      text=payload.get("text") or "", description=payload.get("json"), meta=payload.get("meta"))


def check_page(k: int, offset: int, window: int) -> None:
    """A hybrid page must lie within the fusion window. Up to it every k fuses the same candidates, so pages
    continue one ranking; a search for more fuses more candidates, whose normalisation reorders the whole
    list, so its page would repeat or skip hits of the pages before (as Elasticsearch's RRF retriever pages
    within its rank_window_size)."""
    if k + offset > window:
        raise ApiError(422, "invalid", f"k + offset = {k + offset} goes past the hybrid's window of {window} "
                       "ranked hits (its fusion depth), and pages beyond it would not continue the pages before: "
                       f"page within the first {window} (offset ≤ {max(window - k, 0)} for k = {k}), refine the "
                       "query, or page further with retriever=bm25 or dense")


async def _search(svc: Service, who: Principal, queries: dict[str, str], k: int, offset: int, retriever: str,
                  collection: list[str] | None, include: list[m.Include]
                  ) -> tuple[dict[str, list[m.Hit]], int | None]:
    """The hits of each query, and for the hybrid its window (how deep pages go: `check_page`)."""
    require(who, "read")
    scope = await scope_of(svc, who, collection)
    eng = svc.engine
    want_docs, want_why = m.Include.description in include, m.Include.explain in include

    def work() -> tuple[dict, dict, dict, int | None]:
        window = eng.default_fusion().depth if retriever == "hybrid" else None
        if window is not None and offset > 0:
            check_page(k, offset, window)
        if len(queries) == 1:
            (qid, text), = queries.items()
            results = {qid: eng.search(text, k + offset, retriever=retriever, collection=scope)}
        else:
            results = eng.batch_search(queries, k + offset, retriever=retriever, collection=scope)
        results = {qid: hits[offset:] for qid, hits in results.items()}
        ids = list({h.id for hits in results.values() for h in hits})
        docs = eng.get(ids, scope) if want_docs and ids else {}
        why = {qid: eng.explain(queries[qid], [h.id for h in hits], collection=scope)
               for qid, hits in results.items() if hits} if want_why else {}
        return results, docs, why, window

    start = time.perf_counter()
    results, docs, why, window = await svc.run(work)
    svc.metrics.search.labels(retriever).observe(time.perf_counter() - start)
    return {qid: [m.Hit(id=h.id, score=h.score, rank=h.rank,
                        document=_document(docs[h.id]) if h.id in docs else None,
                        why=m.Why(**why[qid][h.id]) if h.id in why.get(qid, {}) else None) for h in hits]
            for qid, hits in results.items()}, window


@router.get("/v1/search", response_model=m.SearchResponse, response_model_exclude_none=True, tags=["search"])
async def search_get(
    svc: Svc, who: Who,
    q: Annotated[str, Query(min_length=1, max_length=m.MAX_QUERY_CHARS, description="The query words.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description=f"Hits (1–{MAX_K}).")] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Hits to skip (paging).")] = 0,
    retriever: m.Retriever = "hybrid",
    collection: Annotated[list[m.Name] | None, Query(max_length=50, description="Search only these "
                                                     "collections (repeat the parameter for several).")] = None,
    include: Annotated[list[m.Include], Query(max_length=2, description="description: the stored "
                                              "description with each hit; explain: why it matched.")] = [],
) -> Any:
    """Search with one query: ranked hits (id, score, rank), optionally with descriptions and explanations."""
    hits, window = await _search(svc, who, {"q1": q}, k, offset, retriever, collection, include)
    return m.SearchResponse(query=q, retriever=retriever, offset=offset, hits=hits["q1"],
                            window=window)


@router.post("/v1/search", response_model=m.SearchResponse | m.BatchResponse, response_model_exclude_none=True,
             tags=["search"])
async def search_post(svc: Svc, who: Who, body: Annotated[m.SearchRequest, Body()]) -> Any:
    """One query (`q`: same answer as GET) or a batch (`queries`): {"results": [{"query_id", "hits"}]}, the
    shape of `vfr search --format jsonl` lines."""
    if isinstance(body, m.OneQuery):
        hits, window = await _search(svc, who, {"q1": body.q}, body.k, body.offset, body.retriever,
                                     body.collection, body.include)
        return m.SearchResponse(query=body.q, retriever=body.retriever, offset=body.offset, hits=hits["q1"],
                                window=window)
    queries: dict[str, str] = {}
    for i, item in enumerate(body.queries, start=1):
        qid, text = (f"q{i}", item) if isinstance(item, str) else (item.id, item.text)
        if qid in queries:
            raise ApiError(422, "invalid", f"queries: id {qid!r} appears twice")
        queries[qid] = text
    hits, _ = await _search(svc, who, queries, body.k, body.offset, body.retriever, body.collection, body.include)
    return m.BatchResponse(results=[m.QueryResult(query_id=qid, hits=h) for qid, h in hits.items()])


DocPath = Annotated[str, Path(min_length=1, max_length=512, description="The document (image) id.")]


@router.get("/v1/documents/{doc_id}", response_model=m.Document, response_model_exclude_none=True,
            tags=["documents"])
async def get_document(svc: Svc, who: Who, doc_id: DocPath) -> Any:
    """The stored description of one document (never pixels: none are kept)."""
    require(who, "read")
    found = await svc.run(svc.engine.get, [doc_id], await scope_of(svc, who, None))
    if doc_id not in found:
        raise not_found(f"no document {doc_id!r}")
    return _document(found[doc_id])


@router.put("/v1/documents", response_model=m.UpsertResponse, response_model_exclude_none=True, tags=["documents"])
async def put_documents(svc: Svc, who: Who, body: m.UpsertRequest) -> Any:
    """Add or replace documents (the records `vfr import` takes); searchable when this returns."""
    require(who, "write")
    records = []
    for doc in body.documents:
        rec = doc.model_dump(by_alias=True, exclude_none=True)
        if "collection" not in rec and who.collections is not None:
            if len(who.collections) != 1:
                raise ApiError(422, "invalid", f"document {doc.id!r}: give its collection (this key has several)")
            rec["collection"] = next(iter(who.collections))
        records.append(rec)
    report = await svc.write(svc.engine.upsert, records, collections=who.collections)
    out = m.UpsertResponse(ids=[d.id for d in body.documents])
    if who.collections is None:  # index-wide figures only for a key that sees everything
        out = out.model_copy(update={k: report.get(k) for k in ("generation", "added", "changed", "deleted")})
    return out


@router.delete("/v1/documents/{doc_id}", response_model=m.DeleteResponse, tags=["documents"])
async def delete_document(svc: Svc, who: Who, doc_id: DocPath) -> Any:
    """Erase one document: no search returns it once this returns (`vfr compact` then clears the bytes)."""
    require(who, "write")
    gone = await svc.write(svc.engine.delete, [doc_id], collections=who.collections)
    if doc_id not in gone:
        raise not_found(f"no document {doc_id!r}")
    return m.DeleteResponse(deleted=gone)


@router.post("/v1/documents/delete", response_model=m.DeleteResponse, tags=["documents"])
async def delete_documents(svc: Svc, who: Who, body: m.DeleteRequest) -> Any:
    """Erase several documents; answers the ids that existed (ids the key cannot see count as absent)."""
    require(who, "write")
    return m.DeleteResponse(deleted=await svc.write(svc.engine.delete, body.ids, collections=who.collections))


@router.get("/v1/collections", response_model=m.Collections, tags=["collections"])
async def collections(svc: Svc, who: Who) -> Any:
    """The collections this key sees, with their live document counts."""
    require(who, "read")
    counts = (await svc.run(svc.engine.stats)).get("collections", {})
    names = sorted(counts) if who.collections is None else sorted(who.collections)
    return m.Collections(collections=[m.Collection(name=n, documents=counts.get(n, 0)) for n in names])


@router.delete("/v1/collections/{name}", response_model=m.DeleteResponse, tags=["collections"])
async def delete_collection(svc: Svc, who: Who, name: Annotated[str, Path(min_length=1, max_length=200)]) -> Any:
    """Erase every document of a collection (admin keys)."""
    require(who, "admin")
    await scope_of(svc, who, [name])
    return m.DeleteResponse(deleted=await svc.write(svc.engine.delete, [], name, collections=who.collections))


@router.delete("/v1/collections/{name}/describers/{model}", response_model=m.RetractResponse, tags=["collections"])
async def retract_describer_in(svc: Svc, who: Who, name: Annotated[str, Path(min_length=1, max_length=200)],
                               model: Annotated[str, Path(min_length=1, max_length=200)],
                               prompt_version: Annotated[str | None, Query(min_length=1, max_length=200)] = None
                               ) -> Any:
    """Retract a describing model from one collection (admin keys of it): delete the descriptions it wrote of
    that collection's images (of one prompt version, if given), as `vfr delete --model M --collection C`.
    Other collections keep theirs; a 404 names the models this collection has, never another's."""
    require(who, "admin")
    await scope_of(svc, who, [name])
    return _retracted(await svc.write(svc.engine.delete_descriptions, model, prompt_version, name))


@router.delete("/v1/describers/{model}", response_model=m.RetractResponse, tags=["documents"])
async def retract_describer(svc: Svc, who: Who, model: Annotated[str, Path(min_length=1, max_length=200)],
                            prompt_version: Annotated[str | None, Query(min_length=1, max_length=200)] = None) -> Any:
    """Retract a describing model: delete every description it wrote (of one prompt version, if given). Each
    image keeps its other descriptions; one with none left leaves the index (`vfr delete --model`). It changes
    documents of every collection, so it needs an admin key for every collection ('*'); an admin of one
    collection retracts it there with DELETE /v1/collections/{name}/describers/{model}."""
    require_global_admin(who, "retracting a describer changes documents of every collection: it needs",
                         "an admin of one collection can retract it there: "
                         "DELETE /v1/collections/{name}/describers/{model}")
    return _retracted(await svc.write(svc.engine.delete_descriptions, model, prompt_version))


def _retracted(done: dict) -> m.RetractResponse:
    return m.RetractResponse(descriptions=done["descriptions"], images=done["images"],
                             undescribed=done["undescribed"])


@router.get("/healthz", response_model=m.Health, tags=["service"])
async def healthz() -> Any:
    """Liveness: the process answers (no key needed; says nothing about the data)."""
    return m.Health(status="ok")


@router.get("/metrics", tags=["service"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {}}, "description": "Prometheus text format"}})
async def metrics(request: Request, who: Who) -> Response:
    """Prometheus metrics (an admin key that sees every collection, or the open loopback server)."""
    require_global_admin(who, "metrics need")
    svc = service(request)
    body = await svc.run(request.app.state.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
