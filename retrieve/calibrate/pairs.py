"""Calibration pairs: (query, document, group) read from a store, a COCO join or a generic JSONL.

`group` is what the held-out split and the batch sampler respect: pairs of one image share a group, so
an image never lands in both train and held-out, and two captions of one image never meet in a batch
(where each would be the other's false negative).
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence, get_args

from vfr.store.changes import JOIN_SEPARATOR
from vfr.store.image_ids import coco_id
from vfr.store.karpathy import KarpathyError, read_karpathy
from vfr.store.textfiles import TextFileError, read_lines

Format = Literal["auto", "store", "coco-join", "karpathy", "jsonl"]
DescriptionChoice = Literal["all", "longest", "joined"]
DESCRIPTION_CHOICES: tuple[str, ...] = get_args(DescriptionChoice)

_JOIN = "joined/coco_karpathy_{}_x_vlm_descriptions.jsonl"
SHORTHANDS = {"coco-val": _JOIN.format("val"), "coco-test": _JOIN.format("test"),
              "flickr30k-val": "karpathy/flickr30k_val_karpathy.json",
              "coco-5k-val": "karpathy/coco_val_karpathy.json"}
"""Names for the shared data, resolved under the data folder (env VFR_DATA, default ../shared/data): the COCO
joins (captions ↔ machine descriptions) and the Karpathy validation splits as caption proxies (each image's
first human caption stands in for its description, the other captions query it: a second description style)."""


class PairError(ValueError):
    """A pair source the user must fix; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True, slots=True)
class Pair:
    query: str
    document: str
    group: str
    negative: str | None = None


def data_dir() -> Path:
    """`VFR_DATA`, else the shared data folder beside the repository (whatever the working directory)."""
    env = os.environ.get("VFR_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def resolve_source(source: str) -> Path:
    """A path as given, or one of SHORTHANDS under the data folder."""
    if source in SHORTHANDS:
        path = data_dir() / SHORTHANDS[source]
        if not path.exists():
            raise PairError(f"{source}: {path} not found; set VFR_DATA to the folder holding joined/")
        return path
    path = Path(source).expanduser()
    if not path.exists():
        raise PairError(f"{source}: no such file (give a .duckdb store, a COCO join, a Karpathy split, a JSONL of "
                        f"{{\"query\", \"document\"}} pairs, or one of {sorted(SHORTHANDS)})")
    return path


def load_pairs(source: str, fmt: Format = "auto", *, descriptions: DescriptionChoice = "all",
               description_sources: Sequence[str] = ()) -> list[Pair]:
    """Read every pair of a source; errors name the file and line. See the module docstring for groups.

    `descriptions` and `description_sources` apply to COCO joins: pair each caption with all of its image's
    descriptions (a pair each), only the longest, or all joined into one document as an index built with
    `--descriptions every-model` makes it, optionally only from sources whose key starts with one of the
    prefixes (e.g. "opera/" or "halc/llava-1.5(64tok)"). A store's pairs use its documents as an index makes
    them: each image's newest description, or every model's joined with "joined".
    """
    path = resolve_source(source)
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "store":
        pairs = store_pairs(path, joined=descriptions == "joined")
    elif kind == "coco-join":
        pairs = coco_join_pairs(path, descriptions=descriptions, sources=description_sources)
    elif kind == "karpathy":
        pairs = karpathy_pairs(path)
    elif kind == "jsonl":
        pairs = jsonl_pairs(path)
    else:
        raise PairError(f"unknown pair format {fmt!r}: use auto, store, coco-join, karpathy or jsonl")
    if not pairs:
        raise PairError(f"{path}: no pairs found (a store needs captions on described images; "
                        "a COCO join needs captions and descriptions)")
    return pairs


def load_sources(sources: Sequence[str], fmt: Format = "auto", *, descriptions: DescriptionChoice = "all",
                 description_sources: Sequence[str] = (), max_pairs: int | None = None,
                 exclude_groups: Sequence[str] = (), seed: int = 0) -> tuple[list[Pair], dict[str, int]]:
    """Pairs of several sources together (calibration that should travel across description styles), each
    source cut to a seeded sample of `max_pairs`, without the pairs of `exclude_groups` (e.g. the images of a
    benchmark the model will be evaluated on). Returns the pairs and the count kept per source.

    Groups are image ids: COCO images keep their numeric id in every source (join or Karpathy split), so one
    image's captions never serve as each other's negatives, and the held-out split keeps it on one side."""
    if not sources:
        raise PairError("no pair source given")
    twice = next((s for i, s in enumerate(sources) if s in sources[:i]), None)
    if twice is not None:
        raise PairError(f"{twice}: given twice; give each pair source once (--max-pairs samples each)")
    excluded = set(exclude_groups)
    pairs: list[Pair] = []
    counts: dict[str, int] = {}
    for i, source in enumerate(sources):
        got = [p for p in load_pairs(source, fmt, descriptions=descriptions, description_sources=description_sources)
               if p.group not in excluded]
        if max_pairs is not None and len(got) > max_pairs:
            got = random.Random(seed + i).sample(got, max_pairs)
        if not got:
            raise PairError(f"{source}: no pairs left after excluding {len(excluded)} groups")
        counts[source] = len(got)
        pairs.extend(got)
    return pairs, counts


def read_groups(path: Path) -> list[str]:
    """Group (image) ids, one a line (# comments and blank lines ignored); COCO file names become their id."""
    try:
        lines = read_lines(path)
    except TextFileError as e:
        raise PairError(f"cannot read the group list: {e}") from None
    return [_group_id(x.strip()) for x in lines if x.strip() and not x.lstrip().startswith("#")]


def _group_id(name: str) -> str:
    try:
        return coco_id(name)
    except ValueError:
        return name


def detect_format(path: Path) -> str:
    if path.suffix == ".duckdb":
        return "store"
    if path.suffix == ".json":
        return "karpathy"
    for lineno, obj in _json_lines(path):
        if "query" in obj or "document" in obj:
            return "jsonl"
        if "captions" in obj and "descriptions" in obj:
            return "coco-join"
        raise PairError(f"{path}:{lineno}: cannot tell the pair format: expected keys \"query\" and "
                        f"\"document\" (generic pairs) or \"captions\" and \"descriptions\" (COCO join), "
                        f"got {sorted(obj)[:6]}")
    raise PairError(f"{path}: empty file, no pairs")


def jsonl_pairs(path: Path) -> list[Pair]:
    """`{"query": str, "document": str, "group"?: str, "negative"?: str}` a line.

    Without "group", pairs that share a document text form one group.
    """
    pairs = []
    for lineno, obj in _json_lines(path):
        query, document = (_text(obj, key, path, lineno) for key in ("query", "document"))
        group = obj.get("group", obj.get("image_id"))
        negative = obj.get("negative")
        if negative is not None and not (isinstance(negative, str) and negative.strip()):
            raise PairError(f"{path}:{lineno}: \"negative\" must be a non-empty string when present")
        pairs.append(Pair(query, document, str(group) if group is not None else document, negative))
    return pairs


def coco_join_pairs(path: Path, descriptions: DescriptionChoice = "all",
                    sources: Sequence[str] = ()) -> list[Pair]:
    """One pair per (caption, description) of each image; group = the COCO id."""
    pairs = []
    for lineno, obj in _json_lines(path):
        group = obj.get("coco_id", obj.get("image_name"))
        caps, descs = obj.get("captions"), obj.get("descriptions")
        if group is None or not isinstance(caps, list) or not isinstance(descs, dict):
            raise PairError(f"{path}:{lineno}: a COCO join line needs \"coco_id\" (or \"image_name\"), "
                            "\"captions\" (list) and \"descriptions\" (object model → text)")
        texts = [t for k, t in sorted(descs.items())
                 if isinstance(t, str) and t.strip() and (not sources or k.startswith(tuple(sources)))]
        if descriptions == "longest" and texts:
            texts = [max(texts, key=len)]
        elif descriptions == "joined" and texts:
            texts = [JOIN_SEPARATOR.join(t.strip() for t in texts)]  # key order, as every-model indexes join them
        for cap in caps:
            if isinstance(cap, str) and cap.strip():
                pairs.extend(Pair(cap.strip(), t.strip(), str(group)) for t in texts)
    return pairs


def karpathy_pairs(path: Path) -> list[Pair]:
    """A Karpathy split (store/karpathy.py) as caption proxy pairs: captions 2… query caption 1 (the `*-val`
    proxy benchmarks' construction); group = the image id."""
    try:
        images = read_karpathy(path)
    except KarpathyError as e:
        raise PairError(f"not a readable Karpathy split: {e}") from None
    return [Pair(c.strip(), caps[0].strip(), image_id) for image_id, caps in images for c in caps[1:]]


def store_pairs(path: Path, joined: bool = False) -> list[Pair]:
    """Captions attached to described images, each paired with the image's current document: its newest
    description, or every describing model's joined (`vfr index --descriptions every-model`)."""
    from vfr.store.store import Store, StoreError

    try:
        with Store(path, read_only=True) as store:
            caps = store.captions()
            docs = store.document_records(sorted({i for i, _ in caps}), "every-model" if joined else "newest")
    except StoreError as e:
        raise PairError(str(e)) from None
    return [Pair(c, docs[i].text, i) for i, c in caps if i in docs and c.strip()]


def by_source(pairs: Sequence[Pair], counts: dict[str, int]) -> dict[str, list[Pair]]:
    """`load_sources`' pairs split back into their sources (it returns them source by source, `counts` long)."""
    out, start = {}, 0
    for source, n in counts.items():
        out[source], start = list(pairs[start:start + n]), start + n
    return out


def caption_proxy_pairs(sources: dict[str, Sequence[Pair]], fmt: Format = "auto") -> set[Pair]:
    """The pairs of the sources that are caption proxies (Karpathy splits: a caption's document is another
    caption). A pool of description-style negatives must not reach them: every description would then be a
    wrong answer to a caption, and the encoder learns to push captions away from descriptions altogether."""
    return {p for source, pairs in sources.items()
            if (detect_format(resolve_source(source)) if fmt == "auto" else fmt) == "karpathy" for p in pairs}


def load_pool(source: str, exclude_groups: Iterable[str] = (), joined: bool = False) -> list[str]:
    """Documents for hard-negative mining that belong to no training image (`vfr calibrate --hn-pool`): a
    .duckdb store's current documents (every describing model's joined with `joined`) of the images not in
    `exclude_groups` (the images with pairs: their documents are positives), or a text file of documents, one
    a line. Distinct texts, in order; raises PairError when the source holds none."""
    path = Path(source).expanduser()
    if not path.exists():
        raise PairError(f"--hn-pool {source}: no such file (give a .duckdb store or a text file of documents, "
                        "one a line)")
    if path.suffix == ".duckdb":
        from vfr.store.store import Store, StoreError

        skip = set(exclude_groups)
        try:
            with Store(path, read_only=True) as store:
                texts = [r.text for r in store.iter_document_records(combine="every-model" if joined else "newest")
                         if r.id not in skip]
        except StoreError as e:
            raise PairError(f"--hn-pool {source}: {e}") from None
    else:
        try:
            texts = read_lines(path)
        except TextFileError as e:
            raise PairError(f"--hn-pool: cannot read the pool: {e}") from None
    pool = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not pool:
        raise PairError(f"--hn-pool {source}: no documents (a store needs described images without pairs; a text "
                        "file one document a line)")
    return pool


def split_by_group(pairs: Sequence[Pair], heldout: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out a fraction of groups (images), never a fraction of pairs: no image is on both sides."""
    if not 0 <= heldout < 1:
        raise PairError(f"held-out fraction must be in [0, 1), got {heldout}")
    groups = sorted({p.group for p in pairs})
    n_held = round(len(groups) * heldout)
    if heldout and (n_held < 2 or len(groups) - n_held < 2):
        raise PairError(f"{len(groups)} groups (images) are too few to hold out {heldout:.0%}: "
                        "add pairs or pass --heldout 0")
    held = set(random.Random(seed).sample(groups, n_held))
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]


def group_free_batches(items: list, batch_size: int, key: Callable[[Any], str],
                       avoid: Callable[[Any], Iterable[str]] | None = None) -> list[list]:
    """Greedy batching that defers an item whose group is already in the current batch.

    `avoid(item)`: the groups of the item's negatives (an image whose description is its mined negative).
    Given, an item is also deferred when its negative is the positive of a pair already in the batch, or its
    positive is the negative of one: in-batch contrastive losses score every row against every candidate,
    so either way one row would meet its own positive as a negative."""
    batches: list[list] = []
    pending = list(items)
    while pending:
        batch, seen, negatives, rest = [], set(), set(), []
        for item in pending:
            g = key(item)
            bad = set(avoid(item)) if avoid else set()
            if len(batch) < batch_size and g not in seen and g not in negatives and seen.isdisjoint(bad):
                batch.append(item)
                seen.add(g)
                negatives |= bad
            else:
                rest.append(item)
        batches.append(batch)
        pending = rest
    return batches


def negative_groups(pairs: Sequence[Pair]) -> list[frozenset[str]]:
    """For each pair, the groups whose positive document is the text of its negative (empty without one)."""
    by_text: dict[str, set[str]] = {}
    for p in pairs:
        by_text.setdefault(p.document, set()).add(p.group)
    return [frozenset(by_text.get(p.negative, ())) if p.negative else frozenset() for p in pairs]


def write_jsonl(pairs: Sequence[Pair], path: Path) -> None:
    """The generic pair format (what `jsonl_pairs` reads), e.g. to freeze a mined training set."""
    with open(path, "w", encoding="utf-8") as f:
        for p in pairs:
            row = {"query": p.query, "document": p.document, "group": p.group}
            if p.negative:
                row["negative"] = p.negative
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise PairError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PairError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise PairError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise PairError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _text(obj: dict, key: str, path: Path, lineno: int) -> str:
    value = obj.get(key)
    if value is None:
        raise PairError(f"{path}:{lineno}: missing \"{key}\" (each line needs \"query\" and \"document\")")
    if not isinstance(value, str) or not value.strip():
        raise PairError(f"{path}:{lineno}: \"{key}\" must be a non-empty string")
    return value.strip()
