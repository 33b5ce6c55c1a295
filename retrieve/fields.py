"""Fields of a document for field-aware BM25 (an index option: `IndexConfig.fields`).

A structured description (describe/schema.py) splits into the fields a query tends to aim at: `caption`,
`objects` (object names), `attributes` (colours, materials, sizes, states), `relations` (subject predicate
object, and actions), `text` (visible text) and `setting` (scene, time, weather, indoor/outdoor, style). A
free-text description has one field: `caption`, its first sentence (vision LLMs open with a summary).

The sparse score is then a multi-field BM25 (retrieve/backends.py): the plain BM25 of the whole rendered text
plus Σ_f w_f · BM25_f, each field with its own statistics, exactly as a Lucene BooleanQuery of per-field term
queries boosted by w_f scores it; so the forward-index rescoring with live statistics stays exact.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

FIELDS = ("caption", "objects", "attributes", "relations", "text", "setting")
LUCENE_PREFIX = "f_"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0] if text.strip() else ""


def document_fields(text: str, structured: Mapping[str, Any] | None) -> dict[str, str]:
    """The field texts of one document (absent fields are empty strings)."""
    out = dict.fromkeys(FIELDS, "")
    if not structured:
        out["caption"] = first_sentence(text)
        return out
    objects = structured.get("objects") or []
    out["caption"] = str(structured.get("caption") or "")
    out["objects"] = " ; ".join(str(o.get("name", "")) for o in objects)
    out["attributes"] = " ; ".join(" ".join(str(x) for x in [*(o.get("colors") or []), *(o.get("materials") or []),
                                                             o.get("size") or "", *(o.get("states") or [])] if x)
                                   for o in objects)
    rel = [f"{r.get('subject', '')} {r.get('predicate', '')} {r.get('object', '')}" for r in structured.get("relations") or []]
    out["relations"] = " ; ".join(rel + [str(a) for a in structured.get("actions") or []])
    out["text"] = " ; ".join(str(t) for t in structured.get("visible_text") or [])
    s = structured.get("setting") or {}
    bits = [s.get("scene") or "", s.get("weather") or "",
            s.get("time_of_day") if s.get("time_of_day") not in (None, "unknown") else "",
            {True: "indoors", False: "outdoors"}.get(s.get("indoor"), ""), structured.get("style") or ""]
    out["setting"] = " ; ".join(str(b) for b in bits if b)
    return out


def parse_weights(spec: str) -> tuple[tuple[str, float], ...]:
    """`caption=0.5,objects=0.3` → (("caption", 0.5), ("objects", 0.3)); '' or 'none' → () (plain BM25)."""
    if not spec.strip() or spec.strip().lower() == "none":
        return ()
    out = []
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if name not in FIELDS or not (weight > 0 and weight < 100):
            raise ValueError(f"bad BM25 field weight {part.strip()!r}: give FIELD=WEIGHT with FIELD one of "
                             f"{', '.join(FIELDS)} and 0 < WEIGHT < 100, e.g. caption=0.5,objects=0.3")
        out.append((name, weight))
    return tuple(out)
