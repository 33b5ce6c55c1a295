"""docs/results.md: the summary tables, the caveats and every benchmark's detailed tables, from one run."""
from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from vfr.eval.report import REFERENCES, markdown, pct

COMMAND = "bash scripts/regen_results.sh"
UNDERLYING = ("vfr eval all --no-progress --out out/results --results-md docs/results.md")

INTRO = """\
# Results: zero-shot retrieval over vision-LLM descriptions

Everything below is produced by one command from the files in `../shared/data`; nothing is edited by hand:

```
{command}        # = {underlying}
```

Setup: BM25 (Lucene, k1={k1}, b={b}); dense `{encoder}` (cosine, FAISS {faiss}); hybrid = the engine's
default fusion ({fusion}). Each image's description is the **{source}** of its machine descriptions unless a
task says otherwise. R@k is the cross-modal convention (a query succeeds when any relevant item is in its
top k; ranx `hit_rate@k`); MRR@10 and nDCG@10 from ranx. 95% intervals for R@1: percentile bootstrap over
queries (2,000 resamples). p-values: paired {test} test (seeded, 1,000 permutations; eval/metrics.py), no multiple-comparison
correction. Run files (TREC), `metrics.json` and plots for each benchmark land in `out/results/BENCH/`.

**Read before comparing with published numbers.** Our corpora are not the published ones. The COCO
text→image task that uses real machine descriptions searches only the **401** COCO Karpathy test images that
have a vision-LLM description (HALC/OPERA: LLaVA-1.5, MiniGPT-4, mPLUG-Owl2, InstructBLIP, Shikra; many cut
at 64 tokens), not the 5,000 images of COCO 5K; a smaller corpus makes R@1 easier. Flickr30k 1K and COCO 5K
have **no descriptions** here, so `flickr30k-test` / `coco-5k-test` are a *caption proxy*: the first human
caption stands in for the image's description and the other captions query it; that is text-to-text
retrieval over human captions, easier in wording and harder in length than a real description. The
published CLIP / SigLIP numbers search image pixels of the full corpora. They are shown beside ours as
orientation only, never as a like-for-like comparison.

The hybrid's fusion weights and BM25's k1/b were chosen on COCO val (docs/fusion.md): the `coco-val` rows
are tuning data, not held-out results. Fusion source for this run: {fusion_source}.

{ablations}
"""


def _fusion_source(manifest: dict) -> str:
    if manifest.get("fusion_source") != "tuned":
        return "the built-in default"
    if manifest.get("fusion_guard_kept_builtin"):
        return (f"the built-in default, kept by `vfr tune`'s guard on {manifest['fusion_tuned_on']} (the grid's "
                f"best was not significantly better, p = {manifest.get('fusion_guard_p') or 0:.2f})")
    return f"tuned for this encoder on {manifest['fusion_tuned_on']} (`vfr tune`)"


def _first_retrieval(docs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for d in docs:
        for t in d["tasks"]:
            if t["kind"] == "retrieval":
                return t
    return None


def summary_table(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    retrievers = docs[0]["config"]["retrievers"] if docs else []
    refs = sorted({m for r in REFERENCES.values() for m in r})
    lines = ["| benchmark | task | queries | docs | " + " | ".join(f"R@1 {r}" for r in retrievers) +
             " | R@10 " + (retrievers[-1] if retrievers else "") + " | " +
             " | ".join(f"{m.split(' (')[0]} R@1 (published)" for m in refs) + " |",
             "|---|---|---:|---:|" + "---:|" * (len(retrievers) + 1 + len(refs))]
    for d in docs:
        for t in d["tasks"]:
            if t["kind"] != "retrieval":
                continue
            m = t["metrics"]
            best = max(retrievers, key=lambda r: m[r]["hit_rate@1"])
            cells = [f"**{pct(m[r]['hit_rate@1'])}**" if r == best else pct(m[r]["hit_rate@1"]) for r in retrievers]
            ref = REFERENCES.get(t.get("reference") or "", {})
            ref_cells = [f"*{ref[x]:.1f}*" if x in ref else "" for x in refs]
            lines.append(f"| {d['benchmark']} | {t['task']} | {t['queries']} | {t['documents']} | " +
                         " | ".join(cells) + f" | {pct(m[retrievers[-1]]['hit_rate@10'])} | " +
                         " | ".join(ref_cells) + " |")
    return lines


def compositional_summary(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [(d, t) for d in docs for t in d["tasks"] if t["kind"] == "compositional"]
    if not rows:
        return []
    retrievers = list(rows[0][1]["results"])
    lines = ["| benchmark | items used / total | images | " +
             " | ".join(f"{r} (macro / all)" for r in retrievers) + " |",
             "|---|---:|---:|" + "---:|" * len(retrievers)]
    for d, t in rows:
        res = t["results"]
        first = res[retrievers[0]]
        lines.append(f"| {d['benchmark']} | {first['items']} / {t['items_total']} | "
                     f"{t['meta'].get('images_used', '')} | " +
                     " | ".join(f"{pct(res[r]['macro_accuracy'])} / {pct(res[r]['micro_accuracy'])}"
                                for r in retrievers) + " |")
    return lines


def timing_lines(docs: Sequence[Mapping[str, Any]], total_s: float) -> list[str]:
    built = sum(1 for d in docs for t in d["tasks"] if not t.get("index", {}).get("cached", True))
    cached = sum(1 for d in docs for t in d["tasks"] if t.get("index", {}).get("cached", False))
    per = ", ".join(f"{d['benchmark']} {d['timings']['seconds']:.0f} s" for d in docs)
    return [f"The run behind this page: **{total_s / 60:.1f} min** of benchmark time on {platform.machine()} "
            f"({cached} task indexes reopened from the cache, {built} built). Per benchmark: {per}.",
            "",
            "First-run (empty cache) and cached-run figures measured on our 2-core machine are in "
            "[eval.md § Speed](eval.md#speed)."]


def write_results_page(docs: Sequence[Mapping[str, Any]], path: Path, total_s: float,
                       assembled: bool = False, missing: Sequence[str] = ()) -> None:
    first = _first_retrieval(docs)
    manifest = (first or {}).get("index", {}).get("manifest", {})
    cfg = docs[0]["config"] if docs else {}
    text = INTRO.format(
        command=COMMAND, underlying=UNDERLYING, k1=manifest.get("k1", "0.9"), b=manifest.get("b", "0.4"),
        encoder=cfg.get("encoder"), faiss=cfg.get("faiss"), fusion=manifest.get("fusion", "see docs/fusion.md"),
        source=cfg.get("description_source"), test="randomisation" if cfg.get("stat_test") == "fisher" else "t",
        fusion_source=_fusion_source(manifest), ablations=ablation_intro(path.parent))
    if assembled:
        text += ("\nThis page was assembled from per-benchmark outputs (`python -m vfr.eval.results_page out/results "
                 "docs/results.md`), each made by `vfr eval BENCH --out out/results/BENCH` with the settings above.\n")
    if missing:
        text += f"\n**Not yet in this page:** {', '.join(missing)} (run `vfr eval NAME --out out/results/NAME`, " \
                "then rebuild the page as above).\n"
    parts = [text, "## Retrieval (R@1 %, best per row in bold)", "", *summary_table(docs), "",
             "## Compositional (accuracy %, ties count as wrong; 50 = chance)", "", *compositional_summary(docs), "",
             *ablation_sections(path.parent),
             "## Time", "", *timing_lines(docs, total_s), "",
             "## Every benchmark in detail", ""]
    parts += [markdown(d, heading="###") for d in docs]
    parts.append(f"\n_Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC._\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")


# The pages scripts/regen_ablations.sh makes beside docs/results.md, embedded in this order under these headings;
# the third field is what the page measures, for the intro's list of them.
ABLATION_PAGES: tuple[tuple[str, str, str], ...] = (
    ("ablations.md", "## Ablations (issue 13)",
     "fixed vs tuned fusion, calibration, MiniLM vs mpnet, plain vs field BM25, whole-text vs multi-vector dense"),
    ("hubness.md", "## Query-bank hubness correction (issue 13)", "the query-bank hubness correction"),
    ("soups.md", "## Model soups (issue 13)", "model soups"),
    ("distillation.md", "## Distilling calibrated mpnet into MiniLM, WiSE-FT, a second mining round, a soup of seeds, "
                        "training for the hybrid (issue 13)",
     "distillation from calibrated mpnet, WiSE-FT, a second mining round, a soup of seeds and training for the hybrid"),
    ("batching.md", "## Batches without mined false negatives (issue 13)",
     "calibration batches without mined false negatives"),
    ("guide.md", "## Hard negatives vetted by a guide encoder (issue 13)", "hard negatives vetted by a guide encoder"),
    ("recipe.md", "## More hard negatives per pair, a second epoch (issue 13)",
     "more hard negatives per pair or a second epoch"),
    ("travel.md", "## The unseen-images calibration with the batching fix (issue 13)",
     "the unseen-images calibration retrained with the batching fix, with one or two hybrid negatives per pair, "
     "with the query bank and as a soup of three seeds"),
    ("sweeps.md", "## Recipe sweeps of the unseen-images calibration: batch size, contrastive scale, learning rate "
                  "(issue 13)",
     "the unseen-images recipe's batch size, contrastive scale and learning rate, validated on the queries it never "
     "saw"),
    ("views.md", "## Several describers per image: every model's description in one document (issue 13)",
     "several describers per image (every model's description joined into one document)"),
)


_HEADINGS = {heading for _, heading, _ in ABLATION_PAGES}
_INTRO_LEAD = "One-change-at-a-time ablations"


def ablation_intro(folder: Path) -> str:
    """The intro's paragraph naming the pages of ABLATION_PAGES found in `folder`, as ablation_sections embeds them."""
    found = [(page, what) for page, _, what in ABLATION_PAGES if (folder / page).is_file()]
    if not found:
        return (f"{_INTRO_LEAD}: none beside this page (`bash scripts/regen_ablations.sh` makes them; rebuild this page "
                "after it, or re-embed them with `python -m vfr.eval.results_page --ablations-only docs/results.md`).")
    items = "; ".join(f"{what} ([{page}]({page}))" for page, what in found)
    return (f"{_INTRO_LEAD}, with paired intervals and significance, are embedded below, in this order, from the pages "
            f"`bash scripts/regen_ablations.sh` makes (run before this page): {items}.")


def ablation_section(page: Path, heading: str = "## Ablations (issue 13)") -> list[str]:
    """A page scripts/regen_ablations.sh makes (ABLATION_PAGES) under `heading`, its own headings one level
    down, or nothing."""
    if not page.is_file():
        return []
    body = [line for line in page.read_text(encoding="utf-8").splitlines() if not line.startswith("# ")]
    while body and not body[0].strip():
        body.pop(0)
    return [heading, "", *[("#" + line) if line.startswith("##") else line for line in body], ""]


def ablation_sections(folder: Path) -> list[str]:
    """Every page of ABLATION_PAGES found in `folder`, in order, under its heading."""
    return [line for page, heading, _ in ABLATION_PAGES for line in ablation_section(folder / page, heading)]


def reembed_ablations(path: Path) -> list[str]:
    """Replace the ablation sections of an existing results page, and the intro's paragraph that lists them, with
    the current ABLATION_PAGES beside it (after `scripts/regen_ablations.sh` changed or added one), leaving the
    benchmark tables, which take hours to recompute from a cold cache, as they are. Returns the headings now
    embedded."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("## ") and line in _HEADINGS)
        end = lines.index("## Time", start)
        lead = next(i for i, line in enumerate(lines[:start]) if line.startswith(_INTRO_LEAD))
    except (StopIteration, ValueError):
        raise ValueError(f"{path} has no ablation sections followed by '## Time', or no paragraph listing them: "
                         "rebuild it with scripts/regen_results.sh") from None
    stop = next((i for i in range(lead, start) if not lines[i].strip()), start)
    sections = ablation_sections(path.parent)
    path.write_text("\n".join([*lines[:lead], ablation_intro(path.parent), *lines[stop:start], *sections,
                               *lines[end:]]) + "\n", encoding="utf-8")
    return [line for line in sections if line in _HEADINGS]


def page_from_folder(results_dir: Path, path: Path, order: Sequence[str] | None = None) -> list[str]:
    """Rebuild the page from `RESULTS_DIR/*/metrics.json` (e.g. after benchmarks were run separately).
    Returns the benchmarks found; the time line then sums their recorded times."""
    import json

    docs = {}
    for f in sorted(results_dir.glob("*/metrics.json")):
        doc = json.loads(f.read_text(encoding="utf-8"))
        docs[doc["benchmark"]] = doc
    names = [n for n in (order or []) if n in docs] + [n for n in docs if n not in (order or [])]
    if not names:
        raise FileNotFoundError(f"no */metrics.json under {results_dir}")
    chosen = [docs[n] for n in names]
    missing = [n for n in (order or []) if n not in docs]
    write_results_page(chosen, path, sum(d["timings"].get("seconds", 0) for d in chosen), True, missing)
    return names


if __name__ == "__main__":  # python -m vfr.eval.results_page out/results docs/results.md
    import sys                # python -m vfr.eval.results_page --ablations-only docs/results.md

    from vfr.eval.benchmarks import names as builtin_names

    if sys.argv[1] == "--ablations-only":
        embedded = reembed_ablations(Path(sys.argv[2]))
        print(f"re-embedded {len(embedded)} ablation pages in {sys.argv[2]}")
        sys.exit(0)
    found = page_from_folder(Path(sys.argv[1]), Path(sys.argv[2]), builtin_names())
    print(f"wrote {sys.argv[2]} from {len(found)} benchmarks: {', '.join(found)}")
