"""Why a document matched a query: its BM25 score split by analysed query term, its dense (cosine)
similarity, and the words of its text that the analyser maps onto a contributing term (for highlighting:
"dogs" and "dog" both match the stem "dog"). Computed for the hits on show only, with the scope's own
statistics, so the numbers are those the search used."""
from __future__ import annotations

import re
from typing import Mapping, Sequence

from vfr.retrieve.types import Query, Scope

_WORD = re.compile(r"\w+(?:['’-]\w+)*")
MAX_WORDS = 4000  # distinct words analysed per call at most (texts are short descriptions)


def explain(sparse, dense, query: str, ids: Sequence[str], scope: Scope | None,
            texts: Mapping[str, str]) -> dict[str, dict]:
    """{id: {"bm25", "terms": [{"term", "score"}], "dense", "words"}} for each visible id."""
    q = Query(query)
    per_term = sparse.term_scores(q, ids, scope)
    cosine = dense.score(q, list(per_term), scope) if per_term else {}
    words = matching_words({d: texts.get(d, "") for d in per_term}, {d: set(t) for d, t in per_term.items()})
    return {d: {"bm25": float(sum(t.values())),
                "terms": [{"term": k, "score": v} for k, v in sorted(t.items(), key=lambda kv: -kv[1])],
                "dense": float(cosine.get(d, 0.0)), "words": words.get(d, [])}
            for d, t in per_term.items()}


def matching_words(texts: Mapping[str, str], terms: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """Per document, the distinct words (lower case) of its text whose analysed form is one of its terms."""
    from vfr.retrieve.lucene import analyse

    vocab = sorted({w.lower() for d, text in texts.items() if terms.get(d) for w in _WORD.findall(text)})[:MAX_WORDS]
    if not vocab:
        return {d: [] for d in texts}
    stems = dict(zip(vocab, analyse(vocab)))
    out = {}
    for d, text in texts.items():
        wanted = terms.get(d) or set()
        seen = dict.fromkeys(w.lower() for w in _WORD.findall(text))
        out[d] = [w for w in seen if wanted.intersection(stems.get(w, ()))]
    return out
