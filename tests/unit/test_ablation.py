"""eval/ablation.py: paired comparison of two runs on the same queries (ranx, no JVM)."""
import pytest

from vfr.eval.ablation import markdown, paired_diff


def test_a_better_variant_has_a_positive_difference_and_a_small_p():
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(200)}
    base = {f"q{i}": {f"d{i}": 1.0 if i % 2 else 0.5, "x": 0.9} for i in range(200)}   # right first on odd
    variant = {f"q{i}": {f"d{i}": 1.0 if i % 10 else 0.5, "x": 0.9} for i in range(200)}  # on 90%
    r = paired_diff(qrels, base, variant)
    assert r["base"]["hit_rate@1"] == pytest.approx(0.5) and r["variant"]["hit_rate@1"] == pytest.approx(0.9)
    assert r["diff_r1"] == pytest.approx(0.4) and r["ci95"][0] > 0.3 and r["p"] < 0.01
    table = markdown("t", [{"change": "c", "benchmark": "b", "task": "t2i", "retriever": "hybrid", **r}])
    assert "| +40.0 (" in table and "| significant |" in table


def test_identical_runs_are_not_significant():
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(50)}
    run = {f"q{i}": {f"d{i}": 1.0 if i % 3 else 0.1, "x": 0.5} for i in range(50)}
    r = paired_diff(qrels, run, run)
    assert r["diff_r1"] == 0 and r["ci95"] == [0.0, 0.0] and r["p"] >= 0.05


def test_summary_gives_each_settings_margin_of_hybrid_over_dense(tmp_path, monkeypatch):
    import json

    from vfr.eval import ablation, benchmarks
    from vfr.eval.tasks import RetrievalTask

    qrels = {f"q{i}": {f"d{i}": 1} for i in range(100)}
    task = RetrievalTask("t2i", "t", {f"d{i}": "x" for i in range(100)}, {f"q{i}": "x" for i in range(100)}, qrels)
    monkeypatch.setattr(benchmarks, "resolve", lambda bench, data_dir=None: (None, [task]))
    for name, hybrid_right in (("a", 60), ("b", 80)):
        folder = tmp_path / name / "bench"
        (folder / "runs").mkdir(parents=True)
        for retriever, right in (("dense", 50), ("hybrid", hybrid_right)):
            with open(folder / "runs" / f"{retriever}.trec", "w") as f:
                for i in range(100):
                    top, other = (f"d{i}", "x") if i < right else ("x", f"d{i}")
                    f.write(f"q{i} Q0 {top} 1 2.0 r\nq{i} Q0 {other} 2 1.0 r\n")
        (folder / "metrics.json").write_text(json.dumps({"tasks": [{"task": "t2i", "kind": "retrieval",
            "r1_ci95": {"hybrid": [0.5, 0.7]}, "run_files": {r: f"runs/{r}.trec" for r in ("dense", "hybrid")}}]}))
    rows = ablation.summary({"variants": {"A": str(tmp_path / "a"), "B": str(tmp_path / "b"),
                                          "missing": str(tmp_path / "none")}, "benchmarks": ["bench"]})
    assert [r["variant"] for r in rows] == ["A", "B"]
    assert [round(r["margin"], 2) for r in rows] == [0.1, 0.3] and rows[1]["p"] < 0.01
    table = ablation.summary_markdown(rows)
    assert "| bench | t2i | A | 50.0 | 60.0 (50.0–70.0) | +10.0 (" in table


def test_spec_defaults_fill_the_summary_and_the_rows_benchmarks_but_never_override():
    from vfr.eval.ablation import SUMMARY_DEFAULTS, with_defaults

    spec = {"summary": {"variants": {"a": "out/a"}, "benchmarks": ["coco-test"]},
            "rows": [{"change": "x", "base": "out/a", "variant": "out/b", "retriever": "hybrid"},
                     {"change": "y", "base": "out/a", "variant": "out/b", "retriever": "dense",
                      "benchmarks": ["iiw-400"]}]}
    full = with_defaults(spec)
    assert full["summary"]["note"] == SUMMARY_DEFAULTS["note"] and full["summary"]["tasks"] == SUMMARY_DEFAULTS["tasks"]
    assert full["summary"]["benchmarks"] == ["coco-test"]                 # the spec's own value stays
    assert [r["benchmarks"] for r in full["rows"]] == [["coco-test"], ["iiw-400"]]
    assert "benchmarks" not in spec["rows"][0]                            # the spec itself is not changed
    bare = with_defaults({"rows": [{"change": "z", "base": "a", "variant": "b", "retriever": "bm25"}]})
    assert "summary" not in bare and bare["rows"][0]["benchmarks"] == SUMMARY_DEFAULTS["benchmarks"]


def test_a_page_whose_runs_are_missing_is_refused_not_written_short(tmp_path, capsys):
    import json

    from vfr.eval import ablation

    (tmp_path / "a" / "coco-test").mkdir(parents=True)
    (tmp_path / "a" / "coco-test" / "metrics.json").write_text(json.dumps({"tasks": []}))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"rows": [{"change": "x", "base": str(tmp_path / "a"), "variant": str(tmp_path / "gone"),
                                          "retriever": "hybrid", "benchmarks": ["coco-test"]}]}))
    page = tmp_path / "page.md"
    page.write_text("the old page\n")
    with pytest.raises(SystemExit) as stop:
        ablation.main([str(spec), str(page)])
    assert f"{tmp_path / 'gone'}/coco-test" in str(stop.value) and "--allow-missing" in str(stop.value)
    assert f"{tmp_path / 'a'}/coco-test\n" not in str(stop.value)      # only what is missing is listed
    assert page.read_text() == "the old page\n"                          # left as it was
    ablation.main([str(spec), str(page), "--allow-missing"])
    assert "| change |" in page.read_text() and "1 missing run(s) left out" in capsys.readouterr().out


def test_a_row_that_names_its_tasks_compares_only_those(tmp_path, monkeypatch):
    from vfr.eval import ablation, benchmarks
    from vfr.eval.tasks import RetrievalTask

    tasks = [RetrievalTask(name, "t", {"d0": "x"}, {"q0": "x"}, {"q0": {"d0": 1}}) for name in ("t2i", "i2t")]
    monkeypatch.setattr(benchmarks, "resolve", lambda bench, data_dir=None: (None, tasks))
    monkeypatch.setattr(ablation, "read_run", lambda folder, bench, task, retriever: {"q0": {"d0": 1.0}})
    row = {"change": "c", "base": "a", "variant": "b", "retriever": "hybrid", "benchmarks": ["bench"]}
    assert [r["task"] for r in ablation.build({"rows": [row]})] == ["t2i", "i2t"]
    assert [r["task"] for r in ablation.build({"rows": [{**row, "tasks": ["i2t"]}]})] == ["i2t"]
