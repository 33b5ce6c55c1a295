"""Hard negatives: for each pair, a document of *another* image that a retriever ranks high for the query.

Close but wrong documents are the negatives in-batch sampling rarely supplies ("a dog on a couch" vs a
description of a cat on a couch). By default the ranking is BM25 over a throw-away Lucene index of the pairs'
distinct documents, built in-process (real BM25, the same as `vfr index`'s sparse side); any other ranking
(`vfr calibrate --hn-retriever hybrid` passes the engine's own hybrid over the base model) comes in as
`search`, so the negatives are the mistakes the served retriever would make.
"""
from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import replace
from typing import Callable, Sequence

from vfr.retrieve.calibrate.pairs import Pair


Search = Callable[[list[str], list[str], int], dict[str, list[int]]]
"""(documents, queries, k) → query → indices of its top-k documents, best first."""


def mine_hard_negatives(pairs: Sequence[Pair], depth: int = 10, skip: int = 0, seed: int = 0,
                        threads: int = 2, search: Search | None = None, count: int = 1) -> list[Pair]:
    """Return the pairs with `negative` set: drawn at random from ranks [skip, skip+depth) of the
    hits for the query (BM25 unless `search` is given) that belong to other groups. `count` > 1 draws
    that many distinct negatives per pair (fewer where the window is smaller) and returns one pair per
    negative, all of the pair's group (the batch sampler keeps them in different batches).

    `skip` > 0 steps over the very top hits, which on near-duplicate collections (COCO has many
    "man surfing a wave" images) are often unlabelled positives rather than negatives.
    """
    if depth < 1 or skip < 0 or count < 1:
        raise ValueError("depth and count must be >= 1 and skip >= 0")
    docs: dict[str, int] = {}
    doc_groups: list[set[str]] = []
    for p in pairs:
        i = docs.setdefault(p.document, len(docs))
        if i == len(doc_groups):
            doc_groups.append(set())
        doc_groups[i].add(p.group)
    if len({g for gs in doc_groups for g in gs}) < 2:
        raise ValueError("hard negatives need documents from at least 2 groups (images)")
    texts = list(docs)
    queries = sorted({p.query for p in pairs})
    k = skip + depth + 20
    hits = search(texts, queries, k) if search is not None else _bm25(texts, queries, k=k, threads=threads)
    rng = random.Random(seed)
    out = []
    for p in pairs:
        others = [d for d in hits.get(p.query, []) if p.group not in doc_groups[d]]
        window = others[skip: skip + depth]
        if not window:  # the query shares no term with other images' documents: any other document will do
            window = [d for d in rng.sample(range(len(texts)), min(len(texts), 50)) if p.group not in doc_groups[d]]
        if not window:
            out.append(p)
        elif count == 1:
            out.append(replace(p, negative=texts[rng.choice(window)]))
        else:
            out.extend(replace(p, negative=texts[d]) for d in rng.sample(window, min(count, len(window))))
    return out


def _bm25(texts: list[str], queries: list[str], k: int, threads: int) -> dict[str, list[int]]:
    """query → document indices ranked by BM25 (default k1=0.9, b=0.4) over `texts`."""
    from vfr.retrieve.jvm import ensure_jvm

    ensure_jvm()
    from pyserini.index.lucene import LuceneIndexer
    from pyserini.search.lucene import LuceneSearcher

    tmp = tempfile.mkdtemp(prefix="vfr-mine-")
    try:
        indexer = LuceneIndexer(tmp, args=["-index", tmp, "-storePositions", "-storeDocvectors"], threads=threads)
        indexer.add_batch_dict([{"id": str(i), "contents": t} for i, t in enumerate(texts)])
        indexer.close()
        searcher = LuceneSearcher(tmp)
        try:
            qids = [str(i) for i in range(len(queries))]
            results = searcher.batch_search(queries, qids, k=k, threads=threads)
        finally:
            searcher.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {q: [int(h.docid) for h in results.get(qid, [])] for q, qid in zip(queries, qids)}
