"""Turn loaded benchmark records into tasks: a retrieval task (corpus, queries, qrels) or a
compositional task (does a query text score its positive above its hard negative?).

Description sources (`--description-source`) pick which machine description stands for an image:
`longest` (default), `concat` (all, joined in key order, as `vfr index --descriptions every-model` joins each
model's description), `each` (every description is its own document, mapped back to its image: the image's
score is its best document's score), or a source name: an exact key such as `halc/llava-1.5(64tok)` or a bare
model such as `llava-1.5` (then the longest of that model's descriptions). Images without a matching description
are left out and counted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from vfr.eval.datasets import CaptionedImage, CompositionalItem, DescribedImage
from vfr.store.changes import JOIN_SEPARATOR

SOURCES = ("longest", "concat", "each")


@dataclass(frozen=True)
class RetrievalTask:
    """Queries against a corpus. `qrels` name targets; `doc_target` maps documents to targets when
    several documents stand for one target (source `each`), else documents are the targets."""

    name: str
    title: str
    corpus: Mapping[str, str]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    doc_target: Mapping[str, str] | None = None
    reference: str | None = None       # key into report.REFERENCES when published numbers apply
    meta: Mapping[str, Any] = field(default_factory=dict)

    def docs_per_target(self) -> int:
        if not self.doc_target:
            return 1
        counts: dict[str, int] = {}
        for t in self.doc_target.values():
            counts[t] = counts.get(t, 0) + 1
        return max(counts.values())


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison: `query` must score `positive` strictly above `negative`."""

    query: str
    positive: str
    negative: str


@dataclass(frozen=True, slots=True)
class Trial:
    """An item seen through one description: correct when every check passes."""

    item_id: str
    category: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class CompositionalTask:
    name: str
    title: str
    trials: Sequence[Trial]
    items_total: Mapping[str, int]      # category → items in the benchmark (used or not)
    meta: Mapping[str, Any] = field(default_factory=dict)


# -- description sources ------------------------------------------------------------------------
def _model_of(key: str) -> str:
    """`halc/llava-1.5(64tok)` → `llava-1.5`."""
    return re.sub(r"\(\d+tok\)$", "", key.rsplit("/", 1)[-1])


def select_descriptions(descriptions: Mapping[str, str], source: str) -> list[tuple[str, str]]:
    """The (key, text) documents that stand for one image under `source`; [] when none matches."""
    if not descriptions:
        return []
    keys = sorted(descriptions)
    if source == "each":
        return [(k, descriptions[k]) for k in keys]
    if source == "concat":
        return [("concat", JOIN_SEPARATOR.join(descriptions[k] for k in keys))]  # as `vfr index --descriptions every-model`
    if source == "longest":
        pool = keys
    elif source in descriptions:
        pool = [source]
    else:
        pool = [k for k in keys if _model_of(k) == source]
    if not pool:
        return []
    best = max(pool, key=lambda k: (len(descriptions[k]), k))
    return [(best, descriptions[best])]


def index_descriptions(source: str) -> str:
    """The `vfr index --descriptions` rule (store/changes.py COMBINE) whose documents `source` stands for, so an
    index option that rule refuses is refused for the source too: `concat` joins as `every-model` does."""
    return "every-model" if source == "concat" else "newest"


def known_sources(images: Sequence[Mapping[str, str]]) -> list[str]:
    keys = sorted({k for d in images for k in d})
    return list(SOURCES) + keys + sorted({_model_of(k) for k in keys})


def check_source(source: str, images: Sequence[Mapping[str, str]]) -> None:
    if source not in known_sources(images):
        raise ValueError(f"unknown description source {source!r}; choose one of: "
                         + ", ".join(known_sources(images)))


# -- retrieval tasks ----------------------------------------------------------------------------
def _image_documents(images: Sequence[DescribedImage], source: str) -> tuple[dict, dict | None, list]:
    corpus: dict[str, str] = {}
    doc_target: dict[str, str] = {}
    kept = []
    for img in images:
        chosen = select_descriptions(img.descriptions, source)
        if not chosen:
            continue
        kept.append(img)
        for key, text in chosen:
            doc_id = f"{img.image_id}|{key}" if source == "each" else img.image_id
            corpus[doc_id] = text
            doc_target[doc_id] = img.image_id
    return corpus, (doc_target if source == "each" else None), kept


def text_to_image(name: str, images: Sequence[DescribedImage], source: str,
                  query_captions: Mapping[str, Sequence[str]] | None = None,
                  reference: str | None = None) -> RetrievalTask:
    """Each caption queries the image descriptions; its own image is the one relevant target.
    `query_captions` replaces the images' captions as queries (e.g. the refined FG captions)."""
    check_source(source, [i.descriptions for i in images])
    corpus, doc_target, kept = _image_documents(images, source)
    queries, qrels = {}, {}
    for img in kept:
        caps = query_captions.get(img.image_id, ()) if query_captions is not None else img.captions
        for j, cap in enumerate(caps):
            qid = f"{img.image_id}#{j}"
            queries[qid], qrels[qid] = cap, {img.image_id: 1}
    return RetrievalTask(name, "text→image: captions query descriptions", corpus, queries, qrels, doc_target,
                         reference, {"images": len(kept), "images_without_description": len(images) - len(kept),
                                     "description_source": source})


def image_to_text(name: str, images: Sequence[DescribedImage], source: str) -> RetrievalTask:
    """Each image's description queries the pool of all captions; its own captions are relevant."""
    check_source(source, [i.descriptions for i in images])
    _, _, kept = _image_documents(images, source)
    corpus = {f"{img.image_id}#{j}": cap for img in kept for j, cap in enumerate(img.captions)}
    queries, qrels = {}, {}
    for img in kept:
        rel = {f"{img.image_id}#{j}": 1 for j in range(len(img.captions))}
        for key, text in select_descriptions(img.descriptions, source):
            qid = f"{img.image_id}|{key}" if source == "each" else img.image_id
            queries[qid], qrels[qid] = text, rel
    return RetrievalTask(name, "image→text: descriptions query captions", corpus, queries, qrels, None, None,
                         {"images": len(kept), "images_without_description": len(images) - len(kept),
                          "description_source": source})


def caption_proxy(name: str, images: Sequence[CaptionedImage],
                  query_captions: Mapping[str, Sequence[str]] | None = None,
                  reference: str | None = None) -> RetrievalTask:
    """Caption-only splits (no descriptions): each image's first caption stands in for its description
    and its other captions (or `query_captions[1:]`) query the corpus of first captions."""
    corpus = {img.image_id: img.captions[0] for img in images}
    queries, qrels = {}, {}
    for img in images:
        caps = query_captions.get(img.image_id, ()) if query_captions is not None else img.captions
        for j, cap in enumerate(caps[1:], start=1):
            qid = f"{img.image_id}#{j}"
            queries[qid], qrels[qid] = cap, {img.image_id: 1}
    return RetrievalTask(name, "text→image proxy: captions 2–5 query caption 1", corpus, queries, qrels,
                         None, reference, {"images": len(images), "document": "first human caption"})


def paired(name: str, title: str, pairs: Sequence[tuple[str, str, str]]) -> RetrievalTask:
    """(id, query text, document text): each query has exactly its own document relevant."""
    corpus = {i: d for i, _, d in pairs}
    queries = {i: q for i, q, _ in pairs}
    return RetrievalTask(name, title, corpus, queries, {i: {i: 1} for i, _, _ in pairs}, None, None,
                         {"images": len(pairs)})


# -- compositional tasks ------------------------------------------------------------------------
def compositional(name: str, items: Sequence[CompositionalItem],
                  descriptions: Mapping[str, Mapping[str, str]], source: str) -> CompositionalTask:
    """Each item whose image has a description: does the description score the positive caption (and
    the paraphrase, SugarCrepe++) strictly above the hard negative? One trial per chosen description."""
    check_source(source, list(descriptions.values()))
    totals: dict[str, int] = {}
    trials = []
    for it in items:
        totals[it.category] = totals.get(it.category, 0) + 1
        for _, text in select_descriptions(descriptions.get(it.image_id, {}), source):
            checks = [Check(text, it.positive, it.negative)]
            if it.positive2 is not None:
                checks.append(Check(text, it.positive2, it.negative))
            trials.append(Trial(it.id, it.category, tuple(checks)))
    used = {t.item_id for t in trials}
    return CompositionalTask(name, "description prefers the caption to its hard negative", trials, totals,
                             {"description_source": source, "items_used": len(used),
                              "images_used": len({i.image_id for i in items if i.id in used})})
