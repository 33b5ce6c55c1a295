"""PNG plots (matplotlib, Agg backend: no display needed): recall@k curves and compositional bars."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def recall_curves(task: Mapping[str, Any], path: Path, bench: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, c in task["curves"].items():
        ax.plot(c["k"], [100 * r for r in c["r"]], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel("R@k (%)")
    ax.set_title(f"{bench} · {task['task']} ({task['queries']} queries, {task['documents']} docs)", fontsize=9)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def category_bars(task: Mapping[str, Any], path: Path, bench: str) -> Path:
    plt = _plt()
    retrievers = list(task["results"])
    cats = list(task["results"][retrievers[0]]["categories"])
    x = np.arange(len(cats))
    width = 0.8 / max(len(retrievers), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(cats) + 2), 4))
    for i, r in enumerate(retrievers):
        cat = task["results"][r]["categories"]
        acc = np.array([100 * cat[c]["accuracy"] for c in cats], dtype=float)
        lo = np.array([100 * cat[c]["ci95"][0] for c in cats], dtype=float)
        hi = np.array([100 * cat[c]["ci95"][1] for c in cats], dtype=float)
        err = np.nan_to_num(np.vstack([acc - lo, hi - acc]))
        ax.bar(x + (i - (len(retrievers) - 1) / 2) * width, np.nan_to_num(acc), width, yerr=err, capsize=2, label=r)
    used = task["results"][retrievers[0]]["categories"]
    ax.set_xticks(x, [f"{c}\n(n={used[c]['items']})" for c in cats], fontsize=8)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{bench}: description prefers caption over hard negative (95% CI)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(doc: Mapping[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = doc["benchmark"]
    paths = []
    for t in doc["tasks"]:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{bench}.{t['task']}")
        if t["kind"] == "retrieval" and t.get("curves"):
            paths.append(recall_curves(t, out_dir / f"{safe}.recall.png", bench))
        elif t["kind"] == "compositional":
            paths.append(category_bars(t, out_dir / f"{safe}.categories.png", bench))
    return paths
