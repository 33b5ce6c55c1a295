"""Hard negatives: for each pair, a document of *another* image that a retriever ranks high for the query.

Close but wrong documents are the negatives in-batch sampling rarely supplies ("a dog on a couch" vs a
description of a cat on a couch). By default the ranking is BM25 over a throw-away Lucene index of the pairs'
distinct documents, built in-process (real BM25, the same as `vfr index`'s sparse side); any other ranking
(`vfr calibrate --hn-retriever hybrid` passes the engine's own hybrid over the base model) comes in as
`search`, so the negatives are the mistakes the served retriever would make.

A pool (`vfr calibrate --hn-pool`) adds documents of no training image to the ranking, so a pair's negative
can also be one of them: a deployment's own described images without captions, in the style its index holds.

A guide (`vfr calibrate --hn-guide MODEL`, positive-aware filtering as in NV-Retriever's TopK-PercPos and
GISTEmbed) drops a candidate whose similarity to the query under the guide encoder reaches `guide_ratio`
times the positive's: on collections of near-duplicate scenes such a "negative" is more often an unlabelled
positive than a mistake, and training the encoder away from it teaches the wrong thing.
"""
from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from vfr.retrieve.calibrate.pairs import Pair


Search = Callable[[list[str], list[str], int], dict[str, list[int]]]
"""(documents, queries, k) → query → indices of its top-k documents, best first."""
Embed = Callable[[list[str]], np.ndarray]
"""texts → one L2-normalised row per text (the guide encoder)."""


def mine_hard_negatives(pairs: Sequence[Pair], depth: int = 10, skip: int = 0, seed: int = 0,
                        threads: int = 2, search: Search | None = None, count: int = 1,
                        guide: Embed | None = None, guide_ratio: float = 0.95, pool: Sequence[str] = (),
                        pool_for: Callable[[Pair], bool] | None = None, log: Callable[[str], None] | None = None) -> list[Pair]:
    """Return the pairs with `negative` set: drawn at random from ranks [skip, skip+depth) of the
    hits for the query (BM25 unless `search` is given) that belong to other groups. `count` > 1 draws
    that many distinct negatives per pair (fewer where the window is smaller) and returns one pair per
    negative, all of the pair's group (the batch sampler keeps them in different batches).

    `skip` > 0 steps over the very top hits, which on near-duplicate collections (COCO has many
    "man surfing a wave" images) are often unlabelled positives rather than negatives.

    `guide` (an encoder) filters the candidates before the window is taken: one whose cosine to the query
    is at least `guide_ratio` × the cosine of the pair's own document is dropped (a likely false negative).
    `pool`: documents of no pair's image, ranked with the pairs' documents and eligible as any pair's negative
    (a pool text equal to a pair's document is that document); with `pool_for`, only for the pairs it accepts
    (the others draw from the pairs' documents alone). `log` hears how many candidates the guide
    dropped and how many negatives came from the pool.
    """
    if depth < 1 or skip < 0 or count < 1:
        raise ValueError("depth and count must be >= 1 and skip >= 0")
    if not 0.0 < guide_ratio <= 2.0:
        raise ValueError(f"guide_ratio must be in (0, 2], got {guide_ratio}")
    docs: dict[str, int] = {}
    doc_groups: list[set[str]] = []
    for p in pairs:
        i = docs.setdefault(p.document, len(docs))
        if i == len(doc_groups):
            doc_groups.append(set())
        doc_groups[i].add(p.group)
    own = len(docs)
    for text in pool:
        if docs.setdefault(text, len(docs)) == len(doc_groups):
            doc_groups.append(set())   # no image's document: a negative for every pair
    if len({g for gs in doc_groups for g in gs}) < 2 and len(docs) == own:
        raise ValueError("hard negatives need documents from at least 2 groups (images), or a pool")
    texts = list(docs)
    queries = sorted({p.query for p in pairs})
    k = skip + depth + 20
    rank: Search = search or (lambda t, q, n: _bm25(t, q, k=n, threads=threads))
    offered = [pool_for is None or pool_for(p) for p in pairs] if len(docs) > own else [True] * len(pairs)
    wide = sorted({p.query for p, o in zip(pairs, offered) if o})
    narrow = sorted({p.query for p, o in zip(pairs, offered) if not o})
    # pairs the pool is not offered to are ranked over the pairs' documents alone, so its texts cannot crowd
    # their top hits out
    hits = (rank(texts, wide, k) if wide else {}, rank(texts[:own], narrow, k) if narrow else {})
    keep = _guide_filter(guide, guide_ratio, texts, docs, queries) if guide else None
    rng = random.Random(seed)
    out = []
    ranked = vetoed = 0
    for p, pooled in zip(pairs, offered):
        others = [d for d in hits[0 if pooled else 1].get(p.query, []) if p.group not in doc_groups[d]]
        if keep is not None:
            kept = [d for d in others if keep(p, d)]
            ranked, vetoed = ranked + len(others), vetoed + len(others) - len(kept)
            others = kept
        window = others[skip: skip + depth]
        if not window:  # the query shares no term with other images' documents: any other document will do
            n = len(texts) if pooled else own
            window = [d for d in rng.sample(range(n), min(n, 50))
                      if p.group not in doc_groups[d] and (keep is None or keep(p, d))]
        if not window:
            out.append(p)
        elif count == 1:
            out.append(replace(p, negative=texts[rng.choice(window)]))
        else:
            out.extend(replace(p, negative=texts[d]) for d in rng.sample(window, min(count, len(window))))
    if len(docs) > own and log is not None:
        from_pool = sum(docs.get(p.negative, -1) >= own for p in out if p.negative)
        log(f"pool: {from_pool} of {sum(p.negative is not None for p in out)} negatives are pool documents")
    if keep is not None and log is not None:
        log(f"guide: {vetoed} of {ranked} ranked candidates ({vetoed / max(ranked, 1):.1%}) score at least "
            f"{guide_ratio:g} x their pair's own document under the guide and are not used as negatives")
    return out


def _guide_filter(guide: Embed, ratio: float, texts: list[str], docs: dict[str, int],
                  queries: list[str]) -> Callable[[Pair, int], bool]:
    """(pair, document index) → whether the guide lets the document be the pair's negative."""
    doc_emb = np.asarray(guide(texts), dtype=np.float32)
    query_emb = np.asarray(guide(queries), dtype=np.float32)
    if doc_emb.shape[0] != len(texts) or query_emb.shape[0] != len(queries):
        raise ValueError("the guide encoder returned the wrong number of embeddings")
    q_row = {q: i for i, q in enumerate(queries)}

    def keep(p: Pair, d: int) -> bool:
        q = query_emb[q_row[p.query]]
        return float(q @ doc_emb[d]) < ratio * float(q @ doc_emb[docs[p.document]])

    return keep


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
