"""Write evaluation outputs: TREC run files, one JSON of every number, and Markdown tables."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from vfr.eval.metrics import LABELS, METRICS
from vfr.retrieve.types import Run
from vfr.store.textfiles import json_dumps

# Published zero-shot text→image R@1 (%) on the full benchmark corpora (images, not descriptions).
REFERENCES: dict[str, dict[str, float]] = {
    "flickr30k-1k": {"CLIP ViT-L/14@336 (Radford et al. 2021)": 65.0, "SigLIP SO400M (Zhai et al. 2023)": 75.3},
    "coco-5k": {"CLIP ViT-L/14@336 (Radford et al. 2021)": 36.5, "SigLIP SO400M (Zhai et al. 2023)": 51.8},
}


def write_trec(run: Run, path: Path, tag: str) -> None:
    """Standard 6-column TREC run file, ranks from 1, ties broken by doc id (as ranx/trec_eval do)."""
    lines = []
    for qid in sorted(run):
        ranked = sorted(run[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        lines.extend(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}" for rank, (doc, score) in enumerate(ranked, 1))
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def read_trec(path: Path) -> Run:
    run: Run = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, {})[doc] = float(score)
    return run


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_outputs(bench: str, results: list, out_dir: Path, provenance: Mapping[str, Any],
                  config: Mapping[str, Any], timings: Mapping[str, float]) -> dict[str, Any]:
    """runs/*.trec, metrics.json and results.md under `out_dir`; returns the JSON document."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dir = out_dir / "runs"
    for res in results:
        for retriever, run in res.runs.items():
            run_dir.mkdir(exist_ok=True)
            path = run_dir / f"{_safe(bench)}.{_safe(res.task)}.{retriever}.trec"
            write_trec(run, path, f"vfr-{retriever}")
            res.summary.setdefault("run_files", {})[retriever] = str(path.relative_to(out_dir))
    doc = {"benchmark": bench, "provenance": dict(provenance), "config": dict(config),
           "timings": dict(timings), "tasks": [r.summary for r in results]}
    (out_dir / "metrics.json").write_text(json_dumps(doc, indent=2, default=str), encoding="utf-8")
    (out_dir / "results.md").write_text(markdown(doc), encoding="utf-8")
    return doc


# -- Markdown -----------------------------------------------------------------------------------
def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def markdown(doc: Mapping[str, Any], heading: str = "##") -> str:
    lines = [f"{heading} {doc['benchmark']}", ""]
    summary = doc.get("provenance", {}).get("summary")
    if summary:
        lines += [summary, ""]
    for t in doc["tasks"]:
        lines += retrieval_table(t) if t["kind"] == "retrieval" else compositional_table(t)
        lines.append("")
    return "\n".join(lines)


def retrieval_table(t: Mapping[str, Any]) -> list[str]:
    meta = t.get("meta", {})
    notes = [f"{t['queries']} queries", f"{t['documents']} documents"]
    if meta.get("description_source"):
        notes.append(f"descriptions: {meta['description_source']}")
    if meta.get("images_without_description"):
        notes.append(f"{meta['images_without_description']} images without such a description left out")
    lines = [f"**{t['task']}** — {t['title']} ({', '.join(notes)})", "",
             "| retriever | " + " | ".join(LABELS[m] for m in METRICS) + " | R@1 95% CI |",
             "|---|" + "---:|" * (len(METRICS) + 1)]
    for name, scores in t["metrics"].items():
        lo, hi = t["r1_ci95"][name]
        lines.append(f"| {name} | " + " | ".join(pct(scores[m]) for m in METRICS) + f" | {pct(lo)}–{pct(hi)} |")
    for model, r1 in REFERENCES.get(t.get("reference") or "", {}).items():
        lines.append(f"| *{model}, image pixels, published* | *{r1:.1f}* |" + " |" * len(METRICS))
    sig = significance_line(t)
    if sig:
        lines += ["", sig]
    seen = trained_on_line(t)
    if seen:
        lines += ["", seen]
    return lines


def trained_on_line(t: Mapping[str, Any]) -> str:
    """What part of a task the calibrated encoder trained on, and R@1 on the part it never saw."""
    s = t.get("trained_on")
    if not s:
        return ""
    r1 = ", ".join(f"{name} {pct(v)}" for name, v in s["r1_unseen"].items()) or "none left"
    return (f"The encoder was calibrated on {s['images']} of these images: {s['seen_queries']} of the "
            f"{s['seen_queries'] + s['unseen_queries']} queries are about them, and their results are not held "
            f"out. R@1 on the other {s['unseen_queries']}: {r1}.")


def significance_line(t: Mapping[str, Any], metric: str = "hit_rate@1") -> str:
    p = t.get("significance", {}).get("p_values", {})
    names = list(p)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    if not pairs:
        return ""
    parts = [f"{a} vs {b} {_p(p[a][b][metric])}" for a, b in pairs]
    return f"Paired {t['significance']['test']} test on {LABELS[metric]}: " + "; ".join(parts) + "."


def _p(p: float) -> str:
    """A randomisation test with 1,000 permutations cannot resolve p below 0.001 (its floor is 1/1001)."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def compositional_table(t: Mapping[str, Any]) -> list[str]:
    retrievers = list(t["results"])
    first = t["results"][retrievers[0]]
    meta = t.get("meta", {})
    lines = [f"**{t['task']}** — {t['title']} (accuracy %, ties count as wrong; "
             f"{meta.get('items_used', first['items'])} of {t['items_total']} items have a described image; "
             f"descriptions: {meta.get('description_source')})", "",
             "| category | items used / total | " + " | ".join(retrievers) + " | tied checks (" +
             "/".join(retrievers) + ") |", "|---|---:|" + "---:|" * (len(retrievers) + 1)]
    for cat, c in first["categories"].items():
        accs = " | ".join(pct(t["results"][r]["categories"][cat]["accuracy"]) for r in retrievers)
        ties = "/".join(str(t["results"][r]["categories"][cat]["tied_checks"]) for r in retrievers)
        lines.append(f"| {cat} | {c['items']} / {c['items_total']} | {accs} | {ties} |")
    for label, key in (("macro average", "macro_accuracy"), ("all items", "micro_accuracy")):
        lines.append(f"| *{label}* | {first['items']} | " +
                     " | ".join(pct(t["results"][r][key]) for r in retrievers) + " | |")
    return lines


def combined(docs: Iterable[Mapping[str, Any]]) -> str:
    return "\n".join(markdown(d, heading="###") for d in docs)
