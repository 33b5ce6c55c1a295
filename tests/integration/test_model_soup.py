"""`vfr models soup`: weight averaging of encoders fine-tuned from one base, with the real packaged MiniLM."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

pytestmark = pytest.mark.integration


def models_app():
    import typer

    from vfr import cmd_models

    app = typer.Typer()
    cmd_models.register(app)
    app.command("noop", hidden=True)(lambda: None)
    return app


@pytest.fixture(scope="module")
def ingredients(tmp_path_factory) -> dict[str, Path]:
    """The packaged MiniLM, a copy moved as a calibration would move it (seeded noise), and a 5-layer cut."""
    from sentence_transformers import SentenceTransformer

    from vfr.retrieve.encoder import resolve_encoder

    root = tmp_path_factory.mktemp("soup")
    location = resolve_encoder("all-MiniLM-L6-v2").location
    moved = SentenceTransformer(location, device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.01)
    moved.save(str(root / "moved"))
    cut = SentenceTransformer(location, device="cpu")
    cut[0].auto_model.encoder.layer = cut[0].auto_model.encoder.layer[:5]
    cut[0].auto_model.config.num_hidden_layers = 5
    cut.save(str(root / "cut"))
    return {"base": Path(location), "moved": root / "moved", "cut": root / "cut"}


def test_soup_is_the_weighted_average_and_an_encoder(ingredients, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "soup"
    res = CliRunner().invoke(models_app(), ["models", "soup", "all-MiniLM-L6-v2", str(ingredients["moved"]),
                                            "--weights", "1,3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    base, moved, soup = (SentenceTransformer(str(p), device="cpu").state_dict()
                         for p in (ingredients["base"], ingredients["moved"], out))
    for k, v in soup.items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.25 * base[k] + 0.75 * moved[k], atol=1e-6), k
        else:
            assert torch.equal(v, base[k]), k
    import json

    record = json.loads((out / "soup.json").read_text())
    assert [i["weight"] for i in record["ingredients"]] == [0.25, 0.75]
    assert all(i["fingerprint"].startswith("sha256:") for i in record["ingredients"])
    assert not (out / "fusion.json").exists()

    from vfr.retrieve.encoder import load_encoder, resolve_encoder

    spec = resolve_encoder(str(out))
    assert spec.fingerprint not in {i["fingerprint"] for i in record["ingredients"]}
    texts = ["a dog on a red sofa", "two people riding horses on a beach"]
    vecs = load_encoder(spec).encode(texts)
    base_vecs = load_encoder(resolve_encoder("all-MiniLM-L6-v2")).encode(texts)
    assert vecs.shape == base_vecs.shape and not torch.allclose(torch.tensor(vecs), torch.tensor(base_vecs))

    again = CliRunner().invoke(models_app(), ["models", "soup", "all-MiniLM-L6-v2", str(ingredients["moved"]),
                                              "--out", str(out)])
    assert again.exit_code == 1 and "not empty" in again.output


@pytest.mark.parametrize("args, message", [
    (["all-MiniLM-L6-v2"], "at least 2 models"),
    (["all-MiniLM-L6-v2", "MOVED", "--weights", "1"], "1 weights for 2 models"),
    (["all-MiniLM-L6-v2", "MOVED", "--weights", "1,-1"], "must be ≥ 0"),
    (["all-MiniLM-L6-v2", "MOVED", "--weights", "half,half"], "comma-separated numbers"),
    (["all-MiniLM-L6-v2", "CUT"], "differ in transformer config: num_hidden_layers 6 vs 5"),
    (["all-MiniLM-L6-v2", "no/such/model"], "no/such/model"),
])
def test_soup_refuses_what_cannot_be_averaged(ingredients, tmp_path, args, message):
    args = [{"MOVED": str(ingredients["moved"]), "CUT": str(ingredients["cut"])}.get(a, a) for a in args]
    res = CliRunner().invoke(models_app(), ["models", "soup", *args, "--out", str(tmp_path / "soup")])
    assert res.exit_code == 1, res.output
    assert message in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output and not (tmp_path / "soup" / "soup.json").exists()


@pytest.fixture(scope="module")
def greedy_dev(template_store, tmp_path_factory) -> Path:
    from tests.live_helpers import captions_dev_set

    return captions_dev_set(template_store, tmp_path_factory.mktemp("greedy") / "dev.jsonl")


def test_greedy_soup_chooses_on_the_dev_queries_no_candidate_trained_on(ingredients, greedy_dev, tmp_path):
    """Three candidates: the packaged MiniLM, a moved copy, and an identical copy calibrated on 3 dev images.
    Every trial is scored on one dev set (without those 3 images' queries and documents); the kept trials never
    get worse; the soup written holds exactly the kept models and saw what they saw."""
    import json
    import shutil

    from vfr.retrieve.calibrate.card import trained_groups

    rows = [json.loads(line) for line in greedy_dev.read_text().splitlines()]
    same = shutil.copytree(ingredients["base"], tmp_path / "same")
    (same / "calibration.json").write_text(json.dumps({"train_group_ids": [r["id"] for r in rows[:3]]}))
    every = sum(len(r["queries"]) for r in rows)
    seen = sum(len(r["queries"]) for r in rows[:3])
    out = tmp_path / "greedy"
    candidates = ["all-MiniLM-L6-v2", str(ingredients["moved"]), str(same)]
    res = CliRunner().invoke(models_app(), ["models", "soup", *candidates, "--greedy", str(greedy_dev),
                                            "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"scoring on the {every - seen} of {every}" in text and f"{seen} left out" in text

    record = json.loads((out / "soup.json").read_text())
    sel = record["selection"]
    assert sel["queries"] == every - seen and sel["metric"] == "mrr@10" and sel["dev"]
    assert sel["documents"] == len(rows) - 3   # the 3 trained-on images are no candidate's distractors either
    alone = list(sel["candidates"].values())
    assert len(alone) == 3 and all(0 < v <= 1 for v in alone)
    assert alone[0] == alone[2]   # the same weights in another folder score alike
    trials = sel["trials"]
    assert trials[0]["kept"] and trials[0]["score"] == max(alone)
    assert len(trials) == 3 and {t["candidate"] for t in trials} == set(sel["candidates"])
    kept = [t for t in trials if t["kept"]]
    assert all(a["score"] <= b["score"] for a, b in zip(kept, kept[1:]))
    chosen = [t["candidate"] for t in kept]
    assert [i["model"] for i in record["ingredients"]] == chosen
    assert all(abs(i["weight"] - 1 / len(chosen)) < 1e-9 for i in record["ingredients"])
    for t in trials[1:]:   # each trial is the soup so far plus its candidate
        assert t["models"][-1] == t["candidate"]
    expected = {r["id"] for r in rows[:3]} if str(same) in chosen else None
    assert trained_groups(out) == expected
    assert f"greedy soup of {len(chosen)} of 3 models" in text

    from vfr.retrieve.encoder import load_encoder, resolve_encoder

    assert load_encoder(resolve_encoder(str(out))).encode(["a dog on a sofa"]).shape == (1, 384)


@pytest.mark.parametrize("args, message", [
    (["--greedy", "DEV", "--weights", "1,1"], "exclude each other"),
    (["--greedy", "no/such/dev.jsonl"], "no/such/dev.jsonl"),
    (["--greedy", "DEV", "--metric", "p@3"], "unknown metric"),
    (["--greedy", "coco-test"], "test set"),
])
def test_greedy_soup_refuses_bad_input(ingredients, greedy_dev, tmp_path, args, message):
    args = [str(greedy_dev) if a == "DEV" else a for a in args]
    res = CliRunner().invoke(models_app(), ["models", "soup", "all-MiniLM-L6-v2", str(ingredients["moved"]), *args,
                                            "--out", str(tmp_path / "soup")])
    assert res.exit_code == 1, res.output
    assert message in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output and not (tmp_path / "soup" / "soup.json").exists()
