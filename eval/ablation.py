"""Ablations: one change at a time, compared on the same queries from the run files `vfr eval` wrote.

    python -m vfr.eval.ablation SPEC.json OUT.md [--jsonl LOG] [--allow-missing]

SPEC: {"title": ..., "rows": [{"change": "tuned vs fixed fusion", "base": DIR, "variant": DIR,
"retriever": "hybrid", "base_retriever"?: ..., "benchmarks": [...], "tasks"?: [...]}]}, where each DIR holds one
`vfr eval BENCH --out DIR/BENCH` output per benchmark (metrics.json + runs/*.trec). An optional
"summary": {"variants": {LABEL: DIR, ...}, "benchmarks": [...], "tasks"?: [...]} adds a table of each variant's
dense and hybrid R@1 (with the hybrid's 95% interval) and the hybrid − dense margin with its paired test, per
benchmark: where each setting stands against the targets. For every benchmark and
retrieval task both sides ran, a row gives R@1/5/10 of each side, the R@1 difference with a 95% paired
bootstrap interval (queries resampled, 2,000 times) and the paired randomisation test's p-value
(eval/metrics.paired_test: 1,000 seeded permutations) on R@1; a change is called significant at p < 0.05 with no
multiple-comparison correction (the table says so). Qrels are rebuilt from the benchmark's own files. A spec whose runs
are not all there is refused (the error lists the missing FOLDER/BENCH runs) rather than written short, unless
--allow-missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vfr.eval import metrics as M
from vfr.eval.report import read_trec

KS = ("hit_rate@1", "hit_rate@5", "hit_rate@10")


def _metrics_path(folder: Path | str, bench: str) -> Path:
    """Where `vfr eval BENCH --out FOLDER/BENCH` writes its figures and run-file list."""
    return Path(folder) / bench / "metrics.json"


def _tasks(folder: Path, bench: str) -> list[dict]:
    """The task records of `vfr eval BENCH --out FOLDER/BENCH` (empty when that run is missing)."""
    doc_path = _metrics_path(folder, bench)
    if not doc_path.is_file():
        return []
    return json.loads(doc_path.read_text(encoding="utf-8"))["tasks"]


def _metrics(folder: Path, bench: str, task: str) -> dict | None:
    return next((t for t in _tasks(folder, bench) if t["task"] == task and t["kind"] == "retrieval"), None)


def read_run(folder: Path, bench: str, task: str, retriever: str) -> dict | None:
    """One retriever's run file of `vfr eval BENCH --out FOLDER/BENCH` (None when that run is missing)."""
    record = _metrics(folder, bench, task)
    if record is None or retriever not in record.get("run_files", {}):
        return None
    return read_trec(folder / bench / record["run_files"][retriever])


def paired_diff(qrels: dict, base: dict, variant: dict, seed: int = 0) -> dict[str, Any]:
    """Both runs' R@k, the R@1 difference, its paired bootstrap interval and the randomisation p-value."""
    out: dict[str, Any] = {}
    for name, run in (("base", base), ("variant", variant)):
        out[name] = M.evaluate(qrels, run, KS)
    a = M.per_query(qrels, base, "hit_rate@1")
    b = M.per_query(qrels, variant, "hit_rate@1")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(2000, len(a)))
    diffs = (b[idx] - a[idx]).mean(axis=1)
    out["diff_r1"] = float(b.mean() - a.mean())
    out["ci95"] = [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]
    out["p"] = M.paired_test(a, b)
    out["queries"] = len(a)
    return out


# What a page's summary shows unless its spec (benchmarks/*.json) says otherwise; a row without "benchmarks"
# compares on the summary's benchmarks.
SUMMARY_DEFAULTS: dict[str, Any] = {
    "title": "Where each setting stands (targets: hybrid R@1 ≥ 64 on coco-test with the packaged MiniLM after "
             "calibration; hybrid ≥ dense + 2 R@1 on every benchmark with machine descriptions)",
    "note": "Dense and hybrid R@1 of each setting, the hybrid's 95% bootstrap interval, and the hybrid's margin over "
            "dense on the same queries (paired bootstrap interval, randomisation test p).",
    "benchmarks": ["coco-test", "coco-fg-test", "halc-xmodel", "opera-xmodel", "docci-iiw", "iiw-400"],
    "tasks": ["t2i", "t2i-fg", "llava-1.5→minigpt4", "llava-1.5→shikra", "docci→iiw", "object→image", "human→machine"],
    "compositional": ["sugarcrepe"],
}


def with_defaults(spec: dict) -> dict:
    """The spec with SUMMARY_DEFAULTS filled into its summary (when it has one) and the summary's benchmarks into
    every row that names none."""
    spec = dict(spec)
    benchmarks = SUMMARY_DEFAULTS["benchmarks"]
    if "summary" in spec:
        spec["summary"] = {**SUMMARY_DEFAULTS, **spec["summary"]}
        benchmarks = spec["summary"]["benchmarks"]
    spec["rows"] = [{"benchmarks": list(benchmarks), **row} for row in spec["rows"]]
    return spec


def build(spec: dict, data_dir: Path | None = None) -> list[dict[str, Any]]:
    from vfr.eval import benchmarks
    from vfr.eval.tasks import RetrievalTask

    rows = []
    cache: dict[str, list] = {}
    for row in spec["rows"]:
        for bench in row["benchmarks"]:
            if bench not in cache:
                cache[bench] = benchmarks.resolve(bench, data_dir)[1]
            for task in cache[bench]:
                if not isinstance(task, RetrievalTask) or task.name not in row.get("tasks", [task.name]):
                    continue  # a row may name its tasks (e.g. t2i only, where the variant changes the i2t queries)
                base = read_run(Path(row["base"]), bench, task.name, row.get("base_retriever", row["retriever"]))
                variant = read_run(Path(row["variant"]), bench, task.name, row["retriever"])
                if base is None or variant is None:
                    continue
                qrels = {q: dict(r) for q, r in task.qrels.items()}
                rows.append({"change": row["change"], "benchmark": bench, "task": task.name,
                             "retriever": row["retriever"], **paired_diff(qrels, base, variant)})
    return rows


def summary(spec: dict, data_dir: Path | None = None) -> list[dict[str, Any]]:
    """Per benchmark and variant: dense and hybrid R@1, the hybrid's interval, and hybrid − dense (paired)."""
    from vfr.eval import benchmarks
    from vfr.eval.tasks import RetrievalTask

    rows = []
    wanted = spec.get("tasks")
    for bench in spec["benchmarks"]:
        for task in benchmarks.resolve(bench, data_dir)[1]:
            if not isinstance(task, RetrievalTask) or (wanted and task.name not in wanted):
                continue
            qrels = {q: dict(r) for q, r in task.qrels.items()}
            for label, folder in spec["variants"].items():
                dense, hybrid = (read_run(Path(folder), bench, task.name, r) for r in ("dense", "hybrid"))
                if dense is None or hybrid is None:
                    continue
                diff = paired_diff(qrels, dense, hybrid)
                ci = (_metrics(Path(folder), bench, task.name) or {}).get("r1_ci95", {}).get("hybrid")
                rows.append({"benchmark": bench, "task": task.name, "variant": label, "queries": diff["queries"],
                             "dense_r1": diff["base"]["hit_rate@1"], "hybrid_r1": diff["variant"]["hit_rate@1"],
                             "hybrid_ci95": ci, "margin": diff["diff_r1"], "margin_ci95": diff["ci95"],
                             "p": diff["p"]})
    return rows


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | task | setting | dense R@1 | hybrid R@1 (95% CI) | hybrid − dense (95% CI) | p |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        ci = f" ({100 * r['hybrid_ci95'][0]:.1f}–{100 * r['hybrid_ci95'][1]:.1f})" if r["hybrid_ci95"] else ""
        lines.append(f"| {r['benchmark']} | {r['task']} | {r['variant']} | {100 * r['dense_r1']:.1f} | "
                     f"{100 * r['hybrid_r1']:.1f}{ci} | {100 * r['margin']:+.1f} ({100 * r['margin_ci95'][0]:+.1f} to "
                     f"{100 * r['margin_ci95'][1]:+.1f}) | {_p(r['p'])} |")
    return "\n".join(lines) + "\n"


def compositional_markdown(spec: dict) -> str:
    """Each variant's accuracy (all items / macro over categories) on the compositional benchmarks."""
    lines = ["| benchmark | setting | items | dense accuracy (all / macro) | hybrid accuracy (all / macro) |",
             "|---|---|---:|---:|---:|"]
    for bench in spec.get("compositional", []):
        for label, folder in spec["variants"].items():
            task = next((t for t in _tasks(Path(folder), bench) if t["kind"] == "compositional"), None)
            if task is None:
                continue
            res = task["results"]
            if not {"dense", "hybrid"} <= set(res):
                continue
            acc = lambda r: f"{100 * res[r]['micro_accuracy']:.1f} / {100 * res[r]['macro_accuracy']:.1f}"  # noqa: E731
            lines.append(f"| {bench} | {label} | {res['hybrid']['items']} | {acc('dense')} | {acc('hybrid')} |")
    return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else format(p, ".3f")


def markdown(title: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"## {title}", "",
             "| change | benchmark | task | queries | base R@1/5/10 | variant R@1/5/10 | ΔR@1 (95% CI) | p | |",
             "|---|---|---|---:|---|---|---|---:|---|"]
    for r in rows:
        fmt = lambda m: " / ".join(f"{100 * m[k]:.1f}" for k in KS)  # noqa: E731
        sig = "significant" if r["p"] < 0.05 else ""
        lines.append(f"| {r['change']} | {r['benchmark']} | {r['task']} | {r['queries']} | {fmt(r['base'])} | "
                     f"{fmt(r['variant'])} | {100 * r['diff_r1']:+.1f} ({100 * r['ci95'][0]:+.1f} to "
                     f"{100 * r['ci95'][1]:+.1f}) | {_p(r['p'])} | {sig} |")
    lines += ["", "ΔR@1 = variant − base on the same queries; 95% interval: paired bootstrap over queries (2,000 "
              "resamples); p: paired randomisation test on R@1 (1,000 seeded permutations, so p = 0.001 is the "
              "floor; the same runs always give the same p); significant = p < 0.05, no multiple-comparison "
              "correction.", ""]
    return "\n".join(lines)


def missing_runs(spec: dict) -> list[str]:
    """FOLDER/BENCH for every run the spec (with its defaults) reads that `vfr eval` has not written."""
    wanted = [(row[side], bench) for row in spec["rows"] for side in ("base", "variant") for bench in row["benchmarks"]]
    if spec.get("summary"):
        summ = spec["summary"]
        wanted += [(folder, bench) for folder in summ["variants"].values()
                   for bench in [*summ["benchmarks"], *summ["compositional"]]]
    return list(dict.fromkeys(f"{folder}/{bench}" for folder, bench in wanted
                              if not _metrics_path(folder, bench).is_file()))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m vfr.eval.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="benchmarks/PAGE.json")
    parser.add_argument("out", type=Path, help="the page to write, e.g. docs/PAGE.md")
    parser.add_argument("--jsonl", type=Path, help="append every comparison row to this log")
    parser.add_argument("--allow-missing", action="store_true",
                        help="write the page without the rows and settings whose runs are missing (default: refuse, "
                             "so a page is never silently cut down)")
    args = parser.parse_args(argv)
    spec = with_defaults(json.loads(args.spec.read_text(encoding="utf-8")))
    missing = missing_runs(spec)
    if missing and not args.allow_missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        sys.exit(f"{args.spec}: {len(missing)} run(s) it reads are missing, so {args.out} is left as it is:\n  {shown}\n"
                 "Make them with the `vfr eval` commands in scripts/regen_ablations.sh (benchmarks/quality_runs.py), "
                 "or pass --allow-missing to write the page without them.")
    rows = build(spec)
    text = markdown(spec.get("title", "Ablations"), rows)
    if spec.get("summary"):   # with_defaults gave it a title, a note and the rest
        summ = spec["summary"]
        text = (f"## {summ['title']}\n\n{summ['note']}\n\n" + summary_markdown(summary(summ)) + "\n"
                + (compositional_markdown(summ) + "\n" if summ["compositional"] else "")
                + text)
    if spec.get("preamble"):
        text = spec["preamble"].strip() + "\n\n" + text
    args.out.write_text(text, encoding="utf-8")
    if args.jsonl:
        with open(args.jsonl, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"spec": str(args.spec), **r}) + "\n")
    print(f"wrote {args.out}: {len(rows)} rows" + (f" ({len(missing)} missing run(s) left out)" if missing else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
