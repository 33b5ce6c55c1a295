"""The API's request and response shapes (pydantic; they generate /openapi.json). Request bodies forbid
unknown fields and strings that are not valid Unicode text (a lone surrogate escape)."""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vfr.describe.schema import SceneDescription
from vfr.server.settings import MAX_BATCH, MAX_DELETE_IDS, MAX_K, MAX_OFFSET, MAX_QUERY_CHARS, MAX_RECORDS

Retriever = Literal["bm25", "dense", "hybrid"]
QueryText = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The query words.")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
DocId = Annotated[str, Field(min_length=1, max_length=512)]


class Include(str, Enum):
    description = "description"   # the stored description (text, structured json, caption) with each hit
    explain = "explain"           # why it matched: BM25 terms with their share, dense similarity, matched words


def _check_text(value: Any, where: str = "body") -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} contains a lone surrogate escape, which is not valid Unicode text") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k, where)
            _check_text(v, f"{where}.{k}" if isinstance(k, str) and k.isprintable() else where)
    elif isinstance(value, list):
        for v in value:
            _check_text(v, where)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        _check_text(data)
        return data


class QueryItem(Body):
    id: Name
    text: QueryText


class _SearchOptions(Body):
    k: int = Field(10, ge=1, le=MAX_K, description=f"Hits per query (1–{MAX_K}).")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Hits to skip (paging).")
    retriever: Retriever = "hybrid"
    collection: list[Name] | None = Field(None, max_length=50, description="Search only these collections.")
    include: list[Include] = Field(default_factory=list, max_length=2)


class OneQuery(_SearchOptions):
    """One query: answered like GET /v1/search."""

    q: QueryText


class BatchQuery(_SearchOptions):
    """A batch: strings (ids q1, q2, …) or {"id", "text"} objects."""

    queries: list[QueryText | QueryItem] = Field(min_length=1, max_length=MAX_BATCH)


SearchRequest = Annotated[OneQuery | BatchQuery, Field(union_mode="left_to_right")]


class TermScore(BaseModel):
    term: str
    score: float


class Why(BaseModel):
    bm25: float = Field(description="BM25 score with the scope's statistics")
    terms: list[TermScore] = Field(description="analysed query terms that contributed, largest share first")
    dense: float = Field(description="cosine similarity of query and description")
    words: list[str] = Field(description="words of the document (lower case) that match a contributing term")


class Document(BaseModel):
    id: str
    collection: str | None = None
    caption: str | None = None
    text: str
    description: dict[str, Any] | None = Field(None, description="the structured scene description, if any")
    meta: dict[str, Any] | None = None


class Hit(BaseModel):
    id: str
    score: float
    rank: int
    document: Document | None = None
    why: Why | None = None


class SearchResponse(BaseModel):
    query: str
    retriever: Retriever
    offset: int
    hits: list[Hit]
    window: int | None = Field(None, description="hybrid only: pages reach this rank (the fusion depth); "
                               "k + offset beyond it is refused, since deeper pages would not continue these")


class QueryResult(BaseModel):
    """One line of the CLI's jsonl output: {"query_id", "hits": [{"id", "score", "rank"}]}."""

    query_id: str
    hits: list[Hit]


class BatchResponse(BaseModel):
    results: list[QueryResult]


class DocumentIn(Body):
    """A record as `vfr import` takes it: `text`, or a structured `json` description rendered to text."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\x00\s](?:[^\x00]*[^\x00\s])?$",
                             description="no NUL, no leading or trailing space")]
    text: str | None = Field(None, max_length=100_000, pattern=r"\S", description="the text to index")
    json_: SceneDescription | None = Field(None, alias="json", description="a structured scene description")
    caption: Annotated[str, Field(max_length=2000)] | list[Annotated[str, Field(max_length=2000)]] | None = None
    collection: Name | None = Field(None, description="default: the key's collection, when it has one")
    meta: dict[str, Any] | None = None
    model: str = Field("imported", min_length=1, max_length=200)
    prompt_version: str = Field("none", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _has_text(self) -> "DocumentIn":
        if self.text is None and self.json_ is None:
            raise ValueError(f"document {self.id!r} needs 'text' or a structured 'json' description")
        return self


class UpsertRequest(Body):
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_RECORDS)


class UpsertResponse(BaseModel):
    ids: list[str] = Field(description="the documents written, searchable now")
    generation: int | None = Field(None, description="index generation (keys for every collection only)")
    added: int | None = None
    changed: int | None = None
    deleted: int | None = None


class DeleteRequest(Body):
    ids: list[DocId] = Field(min_length=1, max_length=MAX_DELETE_IDS)


class DeleteResponse(BaseModel):
    deleted: list[str] = Field(description="ids that existed (and that the key could see)")


class RetractResponse(BaseModel):
    descriptions: int = Field(description="descriptions deleted")
    images: int = Field(description="images that had one: their documents changed or left the index")
    undescribed: int = Field(description="of those, images with no description left (they left the index)")


class Collection(BaseModel):
    name: str
    documents: int


class Collections(BaseModel):
    collections: list[Collection]


class Health(BaseModel):
    status: Literal["ok"]


class Error(BaseModel):
    status: int
    error: str = Field(description="a short code: bad_request, unauthorized, forbidden, not_found, …")
    message: str = Field(description="what is wrong and what to do")
