"""Short real calibration runs (packaged MiniLM, real Lucene for hard negatives) on a slice of the COCO val join."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vfr.retrieve.calibrate.pairs import load_pairs, split_by_group, write_jsonl

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def slice_pairs(shared_data):  # missing data fails (tests/conftest.py), never skips
    pairs = load_pairs(str(shared_data / "joined" / "coco_karpathy_val_x_vlm_descriptions.jsonl"), descriptions="longest")
    groups = sorted({p.group for p in pairs})[:10]
    return [p for p in pairs if p.group in groups]


def calibrate_app():
    """`vfr calibrate` alone, for typer's in-process CliRunner."""
    import typer

    from vfr import cmd_calibrate

    app = typer.Typer()
    cmd_calibrate.register(app)
    app.command("noop", hidden=True)(lambda: None)   # two commands: typer keeps the subcommand name
    return app


def calibrate_slice(pairs, tmp_path, *args: str):
    """`vfr calibrate` in-process on `pairs` written as a JSONL, CPU, one thread, 32-token truncation, into
    tmp_path/m; returns (result, out folder, pair file)."""
    from typer.testing import CliRunner

    src, out = tmp_path / "pairs.jsonl", tmp_path / "m"
    write_jsonl(pairs, src)
    r = CliRunner().invoke(calibrate_app(), ["calibrate", "--pairs", str(src), "--out", str(out), "--batch-size", "8",
                                             "--max-seq-length", "32", "--early-stopping", "0", "--device", "cpu",
                                             "--threads", "1", *args])
    return r, out, src


def test_training_lowers_loss_and_saves_a_loadable_model(slice_pairs, tmp_path):
    from vfr.retrieve.calibrate.train import CalibrateConfig, calibrate
    from vfr.retrieve.encoder import load_encoder

    train, held = split_by_group(slice_pairs, 0.2, seed=0)
    out = tmp_path / "model"
    result = calibrate(train, held, out, CalibrateConfig(epochs=1, batch_size=8, learning_rate=1e-4,
                                                         max_seq_length=32, early_stopping=0, device="cpu",
                                                         threads=1))  # shared CI cores: 1 thread is far faster
    assert result.train_loss_after < result.train_loss_before
    assert result.steps > 0 and set(result.heldout_after) >= {"R@1", "R@5", "R@10", "MRR@10"}
    record = json.loads((out / "calibration.json").read_text())
    assert record["config"]["learning_rate"] == 1e-4 and record["train_groups"] == 8 and record["heldout_groups"] == 2
    model = load_encoder(str(out))
    assert model.model.max_seq_length == load_encoder("default").model.max_seq_length  # training truncation not saved
    a, b = (m.encode(["a dog lying on a couch"]) for m in (model, load_encoder("default")))
    assert a.shape == (1, 384) and float((a * b).sum()) < 0.99999


def test_cli_with_hard_negatives_and_frozen_layers(slice_pairs, tmp_path):
    from safetensors.numpy import load_file
    from typer.testing import CliRunner

    from vfr.retrieve.encoder import resolve_encoder

    app = calibrate_app()
    src = tmp_path / "pairs.jsonl"
    write_jsonl(slice_pairs[:12], src)
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["calibrate", "--pairs", str(src), "--out", str(out), "--heldout", "0",
                                 "--batch-size", "3", "--max-seq-length", "32", "--lr", "1e-4",
                                 "--hard-negatives", "--freeze-layers", "2", "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    record = json.loads((out / "calibration.json").read_text())
    assert record["hard_negatives"] == 12 and record["config"]["freeze_layers"] == 2
    new, old = load_file(out / "model.safetensors"), load_file(Path(resolve_encoder("default").location) / "model.safetensors")
    w = lambda d, part: next(v for k, v in d.items() if k.endswith(part))  # noqa: E731  (prefixes vary)
    low, top = "layer.0.attention.self.query.weight", "layer.5.attention.self.query.weight"
    assert (w(new, low) == w(old, low)).all()
    assert not (w(new, top) == w(old, top)).all()


def test_cli_chooses_the_new_models_fusion_on_held_out_pairs(slice_pairs, tmp_path):
    from vfr.retrieve.encoder import resolve_encoder
    from vfr.retrieve.tuning import default_fusion, read_choices
    from vfr.retrieve.writer import IndexConfig

    r, out, _ = calibrate_slice(slice_pairs, tmp_path, "--heldout", "0.3", "--tune-metric", "r@1")
    assert r.exit_code == 0, r.output
    assert "fusion for the new model" in r.output and "noisy" in r.output  # 3 held-out images: said so
    spec = resolve_encoder(str(out))
    [choice] = read_choices(out / "fusion.json")
    assert choice.encoder_fingerprint == spec.fingerprint and choice.metric == "r@1"
    assert choice.dataset == "calibration held-out pairs" and choice.queries == len({p.query for p in split_by_group(
        slice_pairs, 0.3, seed=0)[1]})
    fusion, source = default_fusion(spec, IndexConfig().scoring())
    assert source["kind"] == "tuned" and fusion == choice.config()
    assert default_fusion(resolve_encoder("default"), IndexConfig().scoring())[1] == {"kind": "built-in"}


def test_cli_chooses_checkpoints_on_a_dev_set_of_other_images(shared_data, slice_pairs, tmp_path):
    """--dev: real training scores the dev set beside the held-out pairs, chooses on it, and records both."""
    pairs = load_pairs(str(shared_data / "joined" / "coco_karpathy_val_x_vlm_descriptions.jsonl"), descriptions="longest")
    trained = {p.group for p in slice_pairs}
    others = sorted({p.group for p in pairs} - trained)[:6]
    docs = {p.group: p.document for p in pairs}
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps({"id": g, "document": docs[g],
                                       "queries": sorted({p.query for p in pairs if p.group == g})}) + "\n"
                           for g in [*others, sorted(trained)[0]]))   # one image the model trains on: left out
    r, out, _ = calibrate_slice(slice_pairs, tmp_path, "--heldout", "0.2", "--no-tune", "--dev", str(dev))
    assert r.exit_code == 0, r.output
    record = json.loads((out / "calibration.json").read_text())
    assert record["selected_on"] == "dev_cosine_mrr@10"
    assert set(record["dev_before"]) >= {"R@1", "MRR@10"} and set(record["dev_after"]) == set(record["dev_before"])
    assert record["heldout_after"] and record["data"]["dev"]["documents"] == 6
    assert record["data"]["dev"]["documents_left_out"] == 1
    evals = [h for h in record["log_history"] if "eval_dev_cosine_mrr@10" in h]
    assert evals and "eval_heldout_cosine_mrr@10" in evals[-1]
    assert record["best_checkpoint_metric"] == max(h["eval_dev_cosine_mrr@10"] for h in evals)
    assert "dev before" in r.output and "dev after" in r.output


def test_engine_ranks_the_hard_negatives(tmp_path):
    """--hn-retriever hybrid/dense: the engine's own index over the documents ranks them (real Lucene, real
    encoder, the built-in fusion)."""
    from vfr.cmd_calibrate import _engine_search

    texts = ["A red double-decker bus drives down a city street.", "A cat sleeps on a windowsill in the sun.",
             "Two surfers ride a large wave at the beach.", "A plate of pasta with tomato sauce and basil."]
    queries = ["a red bus in the city", "someone surfing", "a sleepy cat"]
    for retriever in ("hybrid", "dense"):
        ranked = _engine_search(retriever, "default")(texts, queries, 3)
        assert [r[0] for r in (ranked[q] for q in queries)] == [0, 2, 1], retriever
        assert all(len(r) == 3 and len(set(r)) == 3 for r in ranked.values())


def test_cli_trains_on_several_sources_with_hybrid_negatives_and_exclusions(slice_pairs, tmp_path):
    from typer.testing import CliRunner


    app = calibrate_app()
    src = tmp_path / "pairs.jsonl"
    write_jsonl(slice_pairs, src)
    split = tmp_path / "split.json"   # a caption proxy source (Karpathy format) of two other images
    split.write_text(json.dumps([{"image_name": "9001.jpg", "captions": ["a red bus", "a bus on a street", "red bus"]},
                                 {"image_name": "9002.jpg", "captions": ["a cat", "a cat sleeping", "cat on a sill"]}]))
    excluded = sorted({p.group for p in slice_pairs})[:2]
    groups = tmp_path / "exclude.txt"
    groups.write_text("\n".join(excluded) + "\n")
    pool = tmp_path / "pool.txt"   # described images without captions: more negatives, in the documents' style
    pool.write_text("A yellow taxi waits at a red light on a busy avenue.\nA tabby cat stretches on a sofa.\n")
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["calibrate", "--pairs", str(src), "--pairs", str(split), "--out", str(out),
                                 "--max-pairs", "30", "--exclude-groups", str(groups), "--heldout", "0",
                                 "--hn-pool", str(pool), "--hn-retriever", "hybrid", "--batch-size", "4",
                                 "--max-seq-length", "32", "--no-tune", "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    kept = [p for p in slice_pairs if p.group not in excluded]
    record = json.loads((out / "calibration.json").read_text())
    assert record["data"] == {"sources": {str(src): min(30, len(kept)), str(split): 4}, "excluded_groups": 2,
                              "hard_negative_retriever": "hybrid", "hard_negatives_per_pair": 1,
                              "hard_negative_pool": {"source": str(pool), "documents": 2,
                                                     "pairs_offered": min(30, len(kept))}}   # not the 4 proxies
    assert record["hard_negatives"] == record["train_pairs"] == min(30, len(kept)) + 4
    assert "hybrid hard negatives" in r.output and "--hn-pool: 2 documents" in r.output
    assert re.search(r"pool: \d+ of 34 negatives are pool documents", r.output)
    bad = CliRunner().invoke(app, ["calibrate", "--pairs", str(src), "--out", str(tmp_path / "x"),
                                   "--hard-negatives", "--hn-retriever", "splade"])
    assert bad.exit_code != 0 and "--hn-retriever must be bm25, hybrid or dense" in bad.output


def test_cli_distils_a_teachers_margins_over_several_negatives(slice_pairs, tmp_path):
    """--teacher mines negatives by itself, trains on one triple per negative with the teacher's margins as
    labels, logs the teacher's held-out scores and records the teacher (real encoders on both sides)."""
    from typer.testing import CliRunner

    from vfr.retrieve.encoder import load_encoder

    r, out, src = calibrate_slice(slice_pairs, tmp_path, "--heldout", "0.2", "--teacher", "default",
                                  "--distil-weight", "2", "--hn-count", "2", "--lr", "1e-4", "--no-tune")
    assert r.exit_code == 0, r.output
    assert "mining hard negatives" in r.output and "held-out, teacher:" in r.output
    record = json.loads((out / "calibration.json").read_text())
    train, _ = split_by_group(slice_pairs, 0.2, seed=0)
    assert record["config"]["teacher"] == "default" and record["config"]["distil_weight"] == 2.0
    assert record["data"]["hard_negatives_per_pair"] == 2
    # two negatives for a pair where BM25 ranks two other images' documents, else one
    assert record["train_pairs"] == record["hard_negatives"] and len(train) < record["train_pairs"] <= 2 * len(train)
    logged = [e["loss"] for e in record["log_history"] if "loss" in e]
    assert record["steps"] > 0 and logged and all(x == x and x >= 0 for x in logged)   # trained, finite losses
    a, b = (m.encode(["a dog lying on a couch"]) for m in (load_encoder(str(out)), load_encoder("default")))
    assert float((a * b).sum()) < 0.99999
    bad = CliRunner().invoke(calibrate_app(), ["calibrate", "--pairs", str(src), "--out", str(tmp_path / "x"),
                                               "--heldout", "0", "--teacher", "default", "--loss", "mnrl-sym"])
    assert bad.exit_code != 0 and "leave --loss at mnrl" in bad.output


def test_cli_cross_fits_teachers_that_never_saw_the_images_they_score(slice_pairs, tmp_path):
    """Two teachers calibrated on disjoint halves of the images: each student triple takes its margin from
    the teacher that never trained on its image; a teacher set that leaves an image uncovered, or a teacher
    that does not record its images, fails before any mining."""
    groups = sorted({p.group for p in slice_pairs})
    halves = {"a": set(groups[::2]), "b": set(groups[1::2])}
    teachers = {}
    for name, half in halves.items():
        (tmp_path / name).mkdir()
        r, out, _ = calibrate_slice([p for p in slice_pairs if p.group in half], tmp_path / name, "--heldout", "0",
                                    "--no-tune")
        assert r.exit_code == 0, r.output
        assert set(json.loads((out / "calibration.json").read_text())["train_group_ids"]) == half
        teachers[name] = str(out)
    (tmp_path / "s").mkdir()
    r, out, src = calibrate_slice(slice_pairs, tmp_path / "s", "--heldout", "0.2", "--teacher", teachers["a"],
                                  "--teacher", teachers["b"], "--lr", "1e-4", "--no-tune")
    assert r.exit_code == 0, r.output
    record = json.loads((out / "calibration.json").read_text())
    assert record["config"]["teacher"] == [teachers["a"], teachers["b"]]
    train, _ = split_by_group(slice_pairs, 0.2, seed=0)
    counts = {}
    for name in teachers:
        line = next(line for line in r.output.splitlines() if line.startswith(f"teacher {teachers[name]}: margins"))
        counts[name] = int(line.split("margins on ")[1].split()[0])
    expect = {n: sum(1 for p in train if p.group not in h) for n, h in halves.items()}   # a scores b's images
    assert sum(counts.values()) == record["train_pairs"]
    assert 0 < counts["a"] and 0 < counts["b"] and counts["a"] <= 2 * expect["a"]
    assert "note: the teacher trained on" not in r.output

    from typer.testing import CliRunner
    for args, message in (([teachers["a"], str(out)], "every --teacher trained on"),  # the student saw a's too
                          ([teachers["a"], "default"], "does not record them"),
                          ([teachers["a"], teachers["a"]], "the same --teacher is given twice")):
        bad = CliRunner().invoke(calibrate_app(), ["calibrate", "--pairs", str(src), "--out", str(tmp_path / "x"),
                                                   "--heldout", "0.2", *[x for t in args for x in ("--teacher", t)]])
        assert bad.exit_code == 1 and message in bad.output.replace("\n", " ") and not (tmp_path / "x").exists()
        assert "mined" not in bad.output


def test_bm25_z_scores_every_query_against_every_document_with_the_engines_bm25():
    from vfr.retrieve.calibrate.pairs import Pair
    from vfr.retrieve.calibrate.residual import bm25_z

    pairs = [Pair("a red fire truck", "A red fire truck parked on a street.", "1", "A cat on a sofa."),
             Pair("a cat sleeping", "A grey cat sleeping on a sofa.", "2", "A red fire truck parked on a street."),
             Pair("zebras", "Two zebras in tall grass.", "3")]
    z, labels = bm25_z(pairs)
    assert z.shape == (3, 4)  # three positives and one negative text not among them
    assert labels[2][2] == -1.0 and all(len(row) == 3 for row in labels)
    for row in labels:
        q, pos = int(row[0]), int(row[1])
        assert z[q, pos] == z[q].max() and abs(float(z[q].mean())) < 1e-5  # its own document first; standardised
    assert z[0, int(labels[0][2])] < z[0, int(labels[0][1])]


def test_cli_trains_for_the_hybrid_with_bm25_in_every_logit(slice_pairs, tmp_path):
    """--lexical-weight: BM25 of every training query against every document is computed once, the fusion
    weight is put in cosine units and logged, the loss trains (finite, model changed) and the run records it."""
    from typer.testing import CliRunner

    from vfr.retrieve.encoder import load_encoder

    r, out, src = calibrate_slice(slice_pairs, tmp_path, "--heldout", "0.2", "--hard-negatives", "--lexical-weight",
                                  "0.1", "--lr", "1e-4", "--no-tune")
    assert r.exit_code == 0, r.output
    assert "training for the hybrid: BM25 of" in r.output and "in cosine units" in r.output
    record = json.loads((out / "calibration.json").read_text())
    assert record["config"]["lexical_weight"] == 0.1 and record["hard_negatives"] == record["train_pairs"]
    logged = [e["loss"] for e in record["log_history"] if "loss" in e]
    assert record["steps"] > 0 and logged and all(x == x and x >= 0 for x in logged)
    a, b = (m.encode(["a dog lying on a couch"]) for m in (load_encoder(str(out)), load_encoder("default")))
    assert float((a * b).sum()) < 0.99999
    bad = CliRunner().invoke(calibrate_app(), ["calibrate", "--pairs", str(src), "--out", str(tmp_path / "x"),
                                               "--heldout", "0", "--lexical-weight", "0.1", "--teacher", "default"])
    assert bad.exit_code != 0 and "without --teacher" in bad.output
