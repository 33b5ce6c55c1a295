"""Loaders for the benchmark files: each returns plain frozen records and validates as it reads.

A malformed file raises `BenchmarkError` naming the file and the line (JSONL) or item (JSON), so a
user can fix it. Loaders never modify their input; image ids are normalised so files join:
COCO images by their numeric id (`"391895"`, shared by val2014 and val2017 names), Flickr30k by the
file stem, everything else by the id the file gives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from vfr.store.image_ids import coco_id
from vfr.store.karpathy import KarpathyError, read_karpathy


class BenchmarkError(ValueError):
    """A benchmark file that cannot be read; the message says where and what is wrong."""


@dataclass(frozen=True, slots=True)
class CaptionedImage:
    image_id: str
    captions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DescribedImage:
    """An image with human captions and machine descriptions keyed by source (`halc/llava-1.5(64tok)`)."""

    image_id: str
    captions: tuple[str, ...]
    descriptions: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CompositionalItem:
    """SugarCrepe(++) item: does the image's description prefer `positive` (and `positive2`) to `negative`?"""

    id: str
    category: str
    image_id: str
    positive: str
    negative: str
    positive2: str | None = None


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A ready retrieval benchmark (BEIR folder or generic JSONL): corpus, queries and graded qrels."""

    name: str
    corpus: Mapping[str, str]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    meta: Mapping[str, Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    _check_file(path)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise BenchmarkError(f"{path}: not UTF-8 text ({e.reason})") from None


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ("file:line", object) for each non-blank line."""
    _check_file(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(raw.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BenchmarkError(f"{where}: not a JSON object ({e})") from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BenchmarkError(f"{path}: no such file (set --data-dir or VFR_DATA to the shared data folder)")
    if path.is_dir():
        raise BenchmarkError(f"{path} is a folder, expected a file")


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise BenchmarkError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise BenchmarkError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BenchmarkError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise BenchmarkError(f"{where}: field {key!r} is empty")
    return value


def _strings(value: list, key: str, where: str) -> tuple[str, ...]:
    if not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise BenchmarkError(f"{where}: {key!r} must be a non-empty list of non-empty strings")
    return tuple(value)


def _unique(ids: list[str], path: Path) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise BenchmarkError(f"{path}: image {i!r} appears twice")
        seen.add(i)


# -- caption files ------------------------------------------------------------------------------
def load_karpathy(path: Path) -> list[CaptionedImage]:
    """Karpathy split file `[{split, image_name, captions[]}]` (store/karpathy.py: COCO ids normalised,
    Flickr by stem)."""
    _check_file(path)
    try:
        return [CaptionedImage(i, caps) for i, caps in read_karpathy(path)]
    except KarpathyError as e:
        raise BenchmarkError(str(e)) from None


def load_fg(path: Path) -> list[CaptionedImage]:
    """Flickr30K-FG / MSCOCO-FG refined captions `{image: [captions]}`."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected a JSON object {{image id: [captions]}}")
    out = []
    for key, caps in data.items():
        where = f"{path} image {key!r}"
        if not isinstance(caps, list):
            raise BenchmarkError(f"{where}: captions must be a list")
        image_id = coco_id(key) if key.startswith("COCO_") else key
        out.append(CaptionedImage(image_id, _strings(caps, "captions", where)))
    return out


# -- machine descriptions -----------------------------------------------------------------------
def load_joined(path: Path) -> list[DescribedImage]:
    """COCO caption × VLM description join: `{image_name, coco_id, captions[], descriptions{source: text}}`."""
    out = []
    for where, rec in _iter_jsonl(path):
        _need(rec, "image_name", str, where)
        cid = _need(rec, "coco_id", int, where)
        caps = _strings(_need(rec, "captions", list, where), "captions", where)
        out.append(DescribedImage(str(cid), caps, _descriptions(rec, where)))
    _unique([d.image_id for d in out], path)
    return out


def load_vlm_descriptions(path: Path, prefix: str = "") -> dict[str, dict[str, str]]:
    """HALC / OPERA raw files `{image_id, descriptions{model: text}}` → {coco id: {prefix+model: text}}."""
    out: dict[str, dict[str, str]] = {}
    for where, rec in _iter_jsonl(path):
        cid = str(_need(rec, "image_id", int, where))
        if cid in out:
            raise BenchmarkError(f"{where}: image {cid} appears twice")
        out[cid] = {prefix + k: v for k, v in _descriptions(rec, where).items()}
    return out


def _descriptions(rec: dict, where: str) -> dict[str, str]:
    descs = _need(rec, "descriptions", dict, where)
    if not descs:
        raise BenchmarkError(f"{where}: 'descriptions' is empty")
    for k, v in descs.items():
        if not isinstance(v, str) or not v.strip():
            raise BenchmarkError(f"{where}: description {k!r} must be a non-empty string")
    return dict(descs)


# -- compositional ------------------------------------------------------------------------------
def load_sugarcrepe(folder: Path) -> list[CompositionalItem]:
    """SugarCrepe: one `{category}.json` per category, `{idx: {filename, caption, negative_caption}}`."""
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise BenchmarkError(f"{folder}: no SugarCrepe category files (*.json)")
    items = []
    for path in files:
        data = _read_json(path)
        if not isinstance(data, dict):
            raise BenchmarkError(f"{path}: expected a JSON object {{idx: item}}")
        for idx, rec in data.items():
            items.append(_comp_item(rec, path.stem, str(idx), f"{path} item {idx!r}", paraphrase=False))
    return items


def load_sugarcrepe_pp(folder: Path) -> list[CompositionalItem]:
    """SugarCrepe++: `{category}.json` = `[{id, filename, caption, caption2, negative_caption}]`."""
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise BenchmarkError(f"{folder}: no SugarCrepe++ category files (*.json)")
    items = []
    for path in files:
        data = _read_json(path)
        if not isinstance(data, list):
            raise BenchmarkError(f"{path}: expected a JSON list of items")
        for n, rec in enumerate(data):
            where = f"{path} item {n}"
            idx = _need(rec, "id", (int, str), where)
            items.append(_comp_item(rec, path.stem, str(idx), where, paraphrase=True))
    return items


def _comp_item(rec: Any, category: str, idx: str, where: str, paraphrase: bool) -> CompositionalItem:
    filename = _need(rec, "filename", str, where)
    try:
        image_id = coco_id(filename)
    except ValueError as e:
        raise BenchmarkError(f"{where}: {e}") from None
    return CompositionalItem(
        id=f"{category}/{idx}", category=category, image_id=image_id,
        positive=_need(rec, "caption", str, where), negative=_need(rec, "negative_caption", str, where),
        positive2=_need(rec, "caption2", str, where) if paraphrase else None)


# -- long descriptions --------------------------------------------------------------------------
def load_docci_iiw(path: Path) -> list[tuple[str, str, str]]:
    """DOCCI_Test: (image, DOCCI description, ImageInWords description) per image."""
    out = []
    for where, rec in _iter_jsonl(path):
        out.append((_need(rec, "image", str, where), _need(rec, "DOCCI", str, where), _need(rec, "IIW", str, where)))
    _unique([o[0] for o in out], path)
    return out


@dataclass(frozen=True, slots=True)
class IiwImage:
    image_id: str
    description: str                      # human IIW hyper-detailed description
    objects: tuple[tuple[str, str], ...]  # (label, object description)
    machine: str | None                   # IIW-P5B machine description (100 of 400)


def load_iiw400(path: Path) -> list[IiwImage]:
    out = []
    for where, rec in _iter_jsonl(path):
        objs = rec.get("objects", []) if isinstance(rec, dict) else None
        if isinstance(objs, str):  # some exports carry the list as its Python repr
            raise BenchmarkError(f"{where}: 'objects' must be a JSON list, got a string")
        if not isinstance(objs, list):
            raise BenchmarkError(f"{where}: 'objects' must be a list")
        pairs = tuple((str(o.get("label", "")), o["description"]) for o in objs
                      if isinstance(o, dict) and isinstance(o.get("description"), str) and o["description"].strip())
        machine = rec.get("IIW-P5B")
        out.append(IiwImage(_need(rec, "image/key", str, where), _need(rec, "IIW", str, where), pairs,
                            machine if isinstance(machine, str) and machine.strip() else None))
    _unique([o.image_id for o in out], path)
    return out


# -- generic formats ----------------------------------------------------------------------------
def load_generic_jsonl(path: Path) -> Benchmark:
    """One image a line: `{"id": str, "document": str, "queries": [str, ...]}` (each query relevant to its line)."""
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for where, rec in _iter_jsonl(path):
        doc_id = _need(rec, "id", str, where)
        if doc_id in corpus:
            raise BenchmarkError(f"{where}: id {doc_id!r} appears twice")
        corpus[doc_id] = _need(rec, "document", str, where)
        qs = rec.get("queries", [])
        if not isinstance(qs, list) or not all(isinstance(q, str) and q.strip() for q in qs):
            raise BenchmarkError(f"{where}: 'queries' must be a list of non-empty strings")
        for j, q in enumerate(qs):
            qid = f"{doc_id}#{j}"
            queries[qid], qrels[qid] = q, {doc_id: 1}
    if not corpus:
        raise BenchmarkError(f"{path}: no records")
    if not queries:
        raise BenchmarkError(f"{path}: no record has any 'queries'")
    return Benchmark(path.stem, corpus, queries, qrels, {"source": str(path), "format": "generic-jsonl"})


def load_beir(folder: Path, split: str = "test") -> Benchmark:
    """BEIR folder: `corpus.jsonl` (`_id`, `title`?, `text`), `queries.jsonl` (`_id`, `text`), `qrels/{split}.tsv`."""
    if not folder.is_dir():
        raise BenchmarkError(f"{folder}: not a folder")
    corpus = {}
    for where, rec in _iter_jsonl(folder / "corpus.jsonl"):
        doc_id = str(_need(rec, "_id", (str, int), where))
        text = rec.get("text", "")
        title = rec.get("title", "") or ""
        if not isinstance(text, str) or not isinstance(title, str) or not (title + text).strip():
            raise BenchmarkError(f"{where}: document {doc_id!r} needs a non-empty 'text' (or 'title')")
        corpus[doc_id] = f"{title}\n{text}".strip()
    all_queries = {str(_need(r, "_id", (str, int), w)): _need(r, "text", str, w)
                   for w, r in _iter_jsonl(folder / "queries.jsonl")}
    qrels = _read_qrels(folder / "qrels" / f"{split}.tsv", corpus, all_queries)
    queries = {q: all_queries[q] for q in qrels}
    return Benchmark(folder.name, corpus, queries, qrels, {"source": str(folder), "format": "beir", "split": split})


def _read_qrels(path: Path, corpus: Mapping[str, str], queries: Mapping[str, str]) -> dict[str, dict[str, int]]:
    _check_file(path)
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[0] in ("query-id", "qid"):
                continue
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            if len(parts) != 3:
                raise BenchmarkError(f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score)")
            qid, did, score = parts
            try:
                rel = int(score)
            except ValueError:
                raise BenchmarkError(f"{where}: score {score!r} is not an integer") from None
            if qid not in queries:
                raise BenchmarkError(f"{where}: query {qid!r} is not in queries.jsonl")
            if did not in corpus:
                raise BenchmarkError(f"{where}: document {did!r} is not in corpus.jsonl")
            if rel > 0:
                qrels.setdefault(qid, {})[did] = rel
    if not qrels:
        raise BenchmarkError(f"{path}: no positive judgements")
    return qrels
