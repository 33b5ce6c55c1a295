"""Runner, reports, plots and the CLI, with a fake index (no JVM, no model)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from vfr.eval import report, runner
from vfr.eval import tasks as tk
from vfr.eval.datasets import CompositionalItem, DescribedImage
from vfr.retrieve.types import hits_from_scores

IMAGES = [DescribedImage(str(i), (f"a {w} on a table", f"one {w} here"), {"m": f"photo of a {w} on a table"})
          for i, w in enumerate(["cat", "dog", "cup", "book", "lamp", "shoe"])]


class FakeSearcher:
    """Scores by shared words (bm25), by shared letters (dense) or both (hybrid)."""

    def __init__(self, corpus: dict[str, str], kind: str) -> None:
        self.corpus, self.kind = corpus, kind

    def _score(self, q: str, d: str) -> float:
        words = len(set(q.split()) & set(d.split()))
        letters = len(set(q) & set(d)) / 100
        return {"bm25": words, "dense": letters, "hybrid": words + letters}[self.kind]

    def score(self, query: str, doc_ids: list[str]) -> dict[str, float]:
        return {d: self._score(query, self.corpus[d]) for d in doc_ids}

    def search(self, query: str, k: int = 10):
        return hits_from_scores(self.score(query, list(self.corpus)), k)

    def batch_search(self, queries, k: int = 10):
        return [self.search(q.text, k) for q in queries]


class FakeIndex:
    def __init__(self, corpus):
        self.corpus = dict(corpus)

    def searcher(self, kind: str) -> FakeSearcher:
        return FakeSearcher(self.corpus, kind)


def fake_opener(corpus):
    return FakeIndex(corpus), {"cached": False, "manifest": {"k1": 0.9, "b": 0.4}}


def _tasks():
    items = [CompositionalItem("swap/0", "swap", "0", "a cat on a table", "a table on a cat"),
             CompositionalItem("replace/0", "replace", "1", "a dog on a table", "a cat on a table")]
    return [tk.text_to_image("t2i", IMAGES, "longest"), tk.image_to_text("i2t", IMAGES, "longest"),
            tk.compositional("compositional", items, {i.image_id: i.descriptions for i in IMAGES}, "longest")]


def test_run_tasks_and_outputs(tmp_path: Path) -> None:
    config = runner.EvalConfig(progress=False, depth=10)
    results = runner.run_tasks(_tasks(), config, opener=fake_opener)
    t2i, i2t, comp = (r.summary for r in results)
    assert t2i["metrics"]["bm25"]["hit_rate@1"] == 1.0          # the object word finds its image
    assert i2t["queries"] == 6 and i2t["documents"] == 12
    assert set(t2i["significance"]["p_values"]) == {"bm25", "dense", "hybrid"}
    assert comp["results"]["bm25"]["categories"]["swap"]["tied_checks"] == 1
    assert comp["results"]["bm25"]["categories"]["replace"]["accuracy"] == 1.0

    doc = report.write_outputs("toy", results, tmp_path, {"summary": "toy"}, {"retrievers": ["bm25"]}, {"seconds": 1})
    run = report.read_trec(tmp_path / "runs" / "toy.t2i.bm25.trec")
    assert run["0#0"] == pytest.approx(results[0].runs["bm25"]["0#0"], abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["tasks"][0]["task"] == "t2i"
    md = (tmp_path / "results.md").read_text()
    assert "| bm25 | 100.0 |" in md and "swap" in md

    from vfr.eval.plots import write_plots
    pngs = write_plots(doc, tmp_path / "plots")
    assert len(pngs) == 3 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)

    from vfr.eval.results_page import write_results_page
    write_results_page([doc], tmp_path / "results_page.md", 12.0)
    page = (tmp_path / "results_page.md").read_text()
    assert "401" in page and "| toy | t2i |" in page

    from vfr.eval.results_page import page_from_folder
    (tmp_path / "pf" / "toy").mkdir(parents=True)
    (tmp_path / "pf" / "toy" / "metrics.json").write_text((tmp_path / "metrics.json").read_text())
    assert page_from_folder(tmp_path / "pf", tmp_path / "again.md") == ["toy"]
    assert "| toy | t2i |" in (tmp_path / "again.md").read_text()
    assert "## Ablations" not in (tmp_path / "again.md").read_text()
    assert "One-change-at-a-time ablations: none beside this page" in (tmp_path / "again.md").read_text()
    (tmp_path / "ablations.md").write_text("# Ablations page\n\nSettings.\n\n## Where each setting stands\n\n| a |\n")
    page_from_folder(tmp_path / "pf", tmp_path / "again.md")   # the ablation page beside it is embedded, one level down
    again = (tmp_path / "again.md").read_text()
    assert "## Ablations (issue 13)\n\nSettings.\n\n### Where each setting stands\n\n| a |" in again
    assert "# Ablations page" not in again
    (tmp_path / "hubness.md").write_text("# Hubness page\n\nBank.\n\n## Rows\n")
    (tmp_path / "soups.md").write_text("# Soups page\n\nSoup.\n")
    page_from_folder(tmp_path / "pf", tmp_path / "again.md")   # and the hubness and soup pages after it, in order
    again = (tmp_path / "again.md").read_text()
    hub = again.index("## Query-bank hubness correction (issue 13)\n\nBank.\n\n### Rows")
    assert again.index("## Ablations (issue 13)") < hub < again.index("## Model soups (issue 13)\n\nSoup.")
    (tmp_path / "distillation.md").write_text("# Distillation page\n\nTeacher.\n")
    page_from_folder(tmp_path / "pf", tmp_path / "again.md")   # the distillation page last
    again = (tmp_path / "again.md").read_text()
    assert again.index("## Model soups (issue 13)") < again.index(
        "## Distilling calibrated mpnet into MiniLM, WiSE-FT, a second mining round, a soup of seeds, training for the hybrid (issue 13)\n\nTeacher.") < again.index("## Time")
    (tmp_path / "batching.md").write_text("# Batching page\n\nBatches.\n")
    page_from_folder(tmp_path / "pf", tmp_path / "again.md")   # the batching page after it
    again = (tmp_path / "again.md").read_text()
    assert again.index("training for the hybrid (issue 13)") < again.index(
        "## Batches without mined false negatives (issue 13)\n\nBatches.") < again.index("## Time")

    from vfr.eval.results_page import reembed_ablations
    (tmp_path / "guide.md").write_text("# Guide page\n\nVetoes.\n")
    (tmp_path / "batching.md").write_text("# Batching page\n\nBatches, revised.\n")
    before = again
    assert len(reembed_ablations(tmp_path / "again.md")) == 6   # only the ablation sections change
    again = (tmp_path / "again.md").read_text()
    assert "Batches, revised." in again and "Batches.\n" not in again
    assert again.index("Batches, revised.") < again.index(
        "## Hard negatives vetted by a guide encoder (issue 13)\n\nVetoes.") < again.index("## Time")
    # the intro's list of pages follows them: the guide page is named now, after the batching page, and nothing else
    # before the sections changed
    def intro_of(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith("One-change-at-a-time ablations"))
    intro = intro_of(again)
    assert "([guide.md](guide.md))" in intro and "guide.md" not in before[:before.index("## Ablations")]
    assert intro.index("[ablations.md]") < intro.index("[hubness.md]") < intro.index("[batching.md]") < intro.index(
        "[guide.md]") and "recipe.md" not in intro
    assert again[:again.index("## Ablations")].replace(intro, "") == before[:before.index("## Ablations")].replace(
        intro_of(before), "")
    assert again[again.index("## Time"):] == before[before.index("## Time"):]
    (tmp_path / "bare.md").write_text("# Results\n\n## Time\n")
    with pytest.raises(ValueError, match="regen_results"):
        reembed_ablations(tmp_path / "bare.md")


def test_trec_format(tmp_path: Path) -> None:
    report.write_trec({"q1": {"b": 0.5, "a": 0.5, "c": 0.9}}, tmp_path / "r.trec", "tag")
    assert (tmp_path / "r.trec").read_text().splitlines() == [
        "q1 Q0 c 1 0.900000 tag", "q1 Q0 a 2 0.500000 tag", "q1 Q0 b 3 0.500000 tag"]


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vfr import cmd_eval

    monkeypatch.setattr(runner, "default_opener", lambda config: fake_opener)
    app = typer.Typer()
    cmd_eval.register(app)
    app.command("noop")(lambda: None)   # typer collapses a single-command app
    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(json.dumps({"id": i.image_id, "document": i.descriptions["m"],
                                           "queries": list(i.captions)}) for i in IMAGES))
    res = CliRunner().invoke(app, ["eval", str(bench), "--out", str(tmp_path / "o"), "-r", "bm25,dense",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "metrics.json").exists() and (tmp_path / "o" / "plots").is_dir()
    assert sorted(p.name for p in (tmp_path / "o" / "runs").iterdir()) == [
        "bench.retrieval.bm25.trec", "bench.retrieval.dense.trec"]
    bad = CliRunner().invoke(app, ["eval", str(bench), "-r", "bm25,clip"])
    assert bad.exit_code == 1 and "unknown retriever clip" in bad.output
    missing = CliRunner().invoke(app, ["eval", "no-such-bench"])
    assert missing.exit_code == 1 and "neither a built-in benchmark" in missing.output
    # -s concat joins an image's descriptions as `vfr index --descriptions every-model` does, and field BM25
    # is refused on those as the index refuses it (before anything is loaded or run)
    joined = CliRunner().invoke(app, ["eval", str(bench), "-s", "concat", "--bm25-fields", "caption=0.5",
                                      "--out", str(tmp_path / "j")])
    assert joined.exit_code == 1 and "joined from several describers" in joined.output
    assert not (tmp_path / "j").exists()


def test_regen_ablations_script_starts_no_runs_on_an_argument(tmp_path: Path) -> None:
    """The script runs hours of evaluations; --help prints its header and a stray argument is refused,
    both before anything is run or written."""
    import subprocess
    script = Path(__file__).resolve().parents[2] / "scripts" / "regen_ablations.sh"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "no-python-here")}  # a run would fail loudly
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0 and "SKIP_RUNS=1" in shown.stdout and "docs/recipe.md" in shown.stdout
    assert not shown.stdout.startswith("#!") and "set -euo" not in shown.stdout
    refused = subprocess.run(["bash", str(script), "everything"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 2 and "takes no arguments" in refused.stderr and refused.stdout == ""


def test_a_calibrated_encoders_training_images_are_set_apart_in_the_results() -> None:
    t2i, i2t, _ = _tasks()
    config = runner.EvalConfig(progress=False, trained_on=frozenset({"0", "1", "elsewhere"}))
    res = runner.evaluate_retrieval(t2i, FakeIndex(t2i.corpus), config)
    s = res.summary["trained_on"]
    assert s["images"] == 2
    assert s["seen_queries"] == 4 and s["unseen_queries"] == len(t2i.queries) - 4  # two captions an image
    assert set(s["r1_unseen"]) == set(s["r1_seen"]) == set(runner.RETRIEVERS)
    unseen = {q: r for q, r in t2i.qrels.items() if not q.startswith(("0#", "1#"))}
    from vfr.eval import metrics as M
    assert s["r1_unseen"]["bm25"] == pytest.approx(M.per_query(unseen, res.runs["bm25"], "hit_rate@1").mean())
    line = report.trained_on_line(res.summary)
    assert "calibrated on 2 of these images: 4 of the 12 queries" in line and "R@1 on the other 8" in line
    assert line in report.retrieval_table(res.summary)
    # image→text: an image's description is the query, so the training images' own queries are the seen ones
    s = runner.evaluate_retrieval(i2t, FakeIndex(i2t.corpus), config).summary["trained_on"]
    assert s["seen_queries"] == 2 and s["images"] == 2
    # an encoder that records no training images (the packaged one) adds nothing
    plain = runner.evaluate_retrieval(t2i, FakeIndex(t2i.corpus), runner.EvalConfig(progress=False)).summary
    assert "trained_on" not in plain and report.trained_on_line(plain) == ""
