"""`vfr calibrate` refuses bad input before any model loads (clear one-line errors, exit 1)."""
from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from vfr import cmd_calibrate


def app() -> typer.Typer:
    a = typer.Typer()
    cmd_calibrate.register(a)
    a.command("noop", hidden=True)(lambda: None)  # two commands: typer keeps `calibrate` as a sub-command
    return a


def test_bad_pair_file_is_a_clear_error(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"query": "q", "document": "d"}) + "\n" + json.dumps({"query": "q2"}) + "\n")
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(tmp_path / "m")])
    assert r.exit_code == 1
    assert "pairs.jsonl:2: missing \"document\"" in r.output.replace("\n", "")
    assert not (tmp_path / "m").exists()


def test_refuses_non_empty_out_and_too_few_images(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "x").write_text("keep me")
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"query": f"q{i}", "document": f"d{i}"}) + "\n" for i in range(3)))
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(out)])
    assert r.exit_code == 1 and "not empty" in r.output
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(f)])   # a file, not a folder
    assert r.exit_code == 1 and "not empty" in r.output and f.read_text().startswith('{"query"')
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(tmp_path / "n")])
    assert r.exit_code == 1 and "too few" in r.output


def test_a_missing_teacher_or_base_fails_before_mining(tmp_path, monkeypatch):
    import vfr.retrieve.calibrate.mining as mining

    def never(*a, **k):
        raise AssertionError("mined before checking --teacher")

    monkeypatch.setattr(mining, "mine_hard_negatives", never)
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"query": f"q{i}", "document": f"d{i}"}) + "\n" for i in range(20)))
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(tmp_path / "m"), "--heldout", "0",
                                   "--teacher", str(tmp_path / "no-such-model")])
    assert r.exit_code == 1 and "no-such-model" in r.output and "not found" in r.output
    assert not (tmp_path / "m").exists()
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(tmp_path / "m"), "--heldout", "0",
                                   "--hard-negatives", "--base", str(tmp_path / "no-such-base")])
    assert r.exit_code == 1 and "no-such-base" in r.output and "not found" in r.output
    assert not (tmp_path / "m").exists()
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(tmp_path / "m"), "--heldout", "0",
                                   "--hn-guide", str(tmp_path / "no-such-guide")])
    assert r.exit_code == 1 and "no-such-guide" in r.output and "not found" in r.output
    assert not (tmp_path / "m").exists()
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(tmp_path / "m"), "--heldout", "0",
                                   "--hn-pool", str(tmp_path / "no-such-pool.txt")])
    assert r.exit_code == 1 and "--hn-pool" in r.output and "no such file" in r.output.replace("\n", "")
    assert not (tmp_path / "m").exists()


def test_a_guard_level_outside_0_1_fails_before_training(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"query": f"q{i}", "document": f"d{i}"}) + "\n" for i in range(30)))
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(f), "--out", str(tmp_path / "m"), "--tune-alpha", "0"])
    assert r.exit_code == 1 and "--tune-alpha must be in (0, 1]" in r.output.replace("\n", " ")
    assert not (tmp_path / "m").exists()


def test_a_pool_with_only_caption_proxies_is_refused(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("VFR_DATA", str(shared_data))
    pool = tmp_path / "pool.txt"
    pool.write_text("The image features a red bus.\n")
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", "flickr30k-val", "--max-pairs", "40", "--heldout", "0",
                                   "--out", str(tmp_path / "m"), "--hn-pool", str(pool)])
    assert r.exit_code == 1 and "every training pair is a caption proxy" in r.output.replace("\n", " ")
    assert not (tmp_path / "m").exists()


def test_held_out_images_mostly_from_caption_proxies_get_a_note(tmp_path, monkeypatch):
    """With caption proxies beside a few described images, the held-out figures mostly measure the proxies:
    the run says so, and how many held-out images are described."""
    from vfr.retrieve.calibrate import train as train_mod

    join, split = tmp_path / "join.jsonl", tmp_path / "split.json"
    join.write_text("".join(json.dumps({"coco_id": i, "captions": [f"caption {i}"],
                                        "descriptions": {"m": f"The image features thing {i}."}}) + "\n"
                            for i in range(1, 5)))
    split.write_text(json.dumps([{"image_name": f"{9000 + i}.jpg", "captions": [f"a {i}", f"b {i}", f"c {i}"]}
                                 for i in range(40)]))

    def fake_calibrate(train, held, out, config, log=print, record=None, dev=None):
        return train_mod.CalibrationResult(out_dir=str(out), config={}, train_pairs=len(train), heldout_pairs=len(held),
                                           train_groups=1, heldout_groups=1, hard_negatives=0, train_loss_before=1.0,
                                           train_loss_after=0.5)

    monkeypatch.setattr(train_mod, "calibrate", fake_calibrate)
    args = ["calibrate", "--pairs", str(join), "--pairs", str(split), "--out", str(tmp_path / "m"), "--heldout", "0.2",
            "--no-tune"]
    r = CliRunner().invoke(app(), args)
    text = r.output.replace("\n", " ")
    assert r.exit_code == 0, r.output
    assert "held-out images come from description sources" in text and "of the 9 held-out images" in text
    r = CliRunner().invoke(app(), ["calibrate", "--pairs", str(split), "--out", str(tmp_path / "n"), "--heldout", "0.2",
                                   "--no-tune"])   # proxies alone: nothing to warn about
    assert r.exit_code == 0 and "note:" not in r.output


def test_dev_set_leaves_out_the_training_images_and_flags_a_model_worse_than_its_base(tmp_path, monkeypatch):
    """--dev: the dev set reaches training without the images the model trains on (queries and documents), is
    recorded, replaces the caption-proxy note, and a model that ends below its base on it gets a warning.
    Refused: a test benchmark, and a dev set whose every image is trained on."""
    from vfr.retrieve.calibrate import train as train_mod

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"caption {i}", "document": f"description {i}", "group": str(i)})
                             + "\n" for i in range(10)))
    dev = tmp_path / "dev.jsonl"       # images 0 and 1 are in the pairs; 100-102 are not
    dev.write_text("".join(json.dumps({"id": str(i), "document": f"a scene with thing {i}",
                                       "queries": [f"thing {i}", f"object {i}"]}) + "\n" for i in (0, 1, 100, 101, 102)))
    seen: dict = {}

    def fake_calibrate(train, held, out, config, log=print, record=None, dev=None):
        seen.update(train={p.group for p in train}, dev=dev, record=record)
        return train_mod.CalibrationResult(out_dir=str(out), config={}, train_pairs=len(train), heldout_pairs=len(held),
                                           train_groups=1, heldout_groups=1, hard_negatives=0, train_loss_before=1.0,
                                           train_loss_after=0.5, dev_before={"R@1": 0.6, "MRR@10": 0.7},
                                           dev_after=seen.get("after", {"R@1": 0.62, "MRR@10": 0.71}))

    monkeypatch.setattr(train_mod, "calibrate", fake_calibrate)
    args = ["calibrate", "--pairs", str(pairs), "--heldout", "0", "--no-tune", "--dev", str(dev)]
    r = CliRunner().invoke(app(), [*args, "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    task = seen["dev"]
    assert set(task.corpus) == {"100", "101", "102"} and len(task.queries) == 6
    assert all(t in task.corpus for rel in task.qrels.values() for t in rel)
    assert seen["record"]["dev"] == {"name": "dev", "queries": 6, "documents": 3, "queries_left_out": 4,
                                     "documents_left_out": 2}
    assert "dev set dev: 6 queries over 3 documents" in r.output.replace("\n", " ") and "warning" not in r.output

    seen["after"] = {"R@1": 0.3, "MRR@10": 0.4}
    r = CliRunner().invoke(app(), [*args, "--out", str(tmp_path / "n")])
    text = r.output.replace("\n", " ")
    assert r.exit_code == 0 and "warning:" in text and "MRR@10 0.700 → 0.400" in text

    r = CliRunner().invoke(app(), [*args[:-1], "coco-test", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "coco-test is a test set" in r.output.replace("\n", " ")
    dev.write_text("".join(json.dumps({"id": str(i), "document": f"d {i}", "queries": [f"q {i}"]}) + "\n"
                           for i in (0, 1)))
    r = CliRunner().invoke(app(), [*args, "--out", str(tmp_path / "p")])
    assert r.exit_code == 1 and "asks for an image the model trains on" in r.output.replace("\n", " ")

