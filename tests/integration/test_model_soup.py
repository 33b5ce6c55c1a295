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
