"""Model soups: the weighted average of the weights of several encoders fine-tuned from one base model
(Wortsman et al., ICML 2022, "Model soups"). Calibrations on different pair sources each move the base
model a little in a different direction; their average is one encoder of the same size and speed that
sits in the middle: on the benchmarks of docs/soups.md never significantly below the best of them, though
not above it. A soup of the base model and one calibration (weights 1 − α, α)
is WiSE-FT (Wortsman et al., CVPR 2022): it trades in-domain gain for what the base model knew.

Only models of one architecture, tokenizer and pooling can be averaged; anything else is refused with the
difference named. The soup is saved as an ordinary sentence-transformers folder (`vfr index --encoder
OUT`), with `soup.json` recording the ingredients (location, content fingerprint, weight). It has no
fusion.json: search uses the built-in fusion until `vfr tune` chooses one for it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from vfr.store.textfiles import json_dumps


class SoupError(ValueError):
    """The models cannot be averaged (message names the difference)."""


def soup_weights(count: int, weights: Sequence[float] | None, minimum: int = 2) -> list[float]:
    """Normalised mixing weights: uniform by default; given ones must be ≥ 0, one per model, not all 0."""
    if count < minimum:
        raise SoupError(f"a soup needs at least {minimum} models, got {count}")
    if not weights:
        return [1.0 / count] * count
    if len(weights) != count:
        raise SoupError(f"{len(weights)} weights for {count} models: give one weight per model")
    if any(w < 0 for w in weights) or not sum(weights) > 0:
        raise SoupError(f"weights must be ≥ 0 and not all 0, got {list(weights)}")
    return [w / sum(weights) for w in weights]


def _shape(model: Any) -> dict[str, Any]:
    """What must be equal for weights to be averaged: modules, transformer config, vocabulary, pooling."""
    first = model[0]
    config = {k: v for k, v in first.auto_model.config.to_dict().items()
              if k not in ("_name_or_path", "transformers_version", "torch_dtype", "dtype")}
    return {"modules": [type(m).__name__ for m in model], "config": config,
            "vocab": first.tokenizer.get_vocab() if hasattr(first.tokenizer, "get_vocab") else None,
            "pooling": [m.get_config_dict() for m in list(model)[1:] if hasattr(m, "get_config_dict")]}


def _difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a["modules"] != b["modules"]:
        return f"modules {a['modules']} vs {b['modules']}"
    keys = sorted(k for k in set(a["config"]) | set(b["config"]) if a["config"].get(k) != b["config"].get(k))
    if keys:
        return "transformer config: " + ", ".join(f"{k} {a['config'].get(k)!r} vs {b['config'].get(k)!r}"
                                                  for k in keys[:4])
    if a["vocab"] != b["vocab"]:
        return "tokenizer vocabulary"
    return "pooling / normalisation modules"


def make_soup(models: Sequence[str], out_dir: Path, weights: Sequence[float] | None = None,
              log: Callable[[str], None] = print, selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """Average `models` (names or folders, as `--encoder` takes them) into `out_dir`; returns soup.json. With
    `selection` (how the ingredients were chosen: eval/soup_select.py) it is recorded, and one model is allowed
    (a greedy soup may keep one): it is saved as it is."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    from vfr.retrieve.encoder import resolve_encoder

    mix = soup_weights(len(models), weights, minimum=1 if selection else 2)
    specs = [resolve_encoder(m) for m in models]
    base = SentenceTransformer(specs[0].location, device="cpu")
    shape = _shape(base)
    state = base.state_dict()   # detached tensors; only the float ones are replaced below
    summed = {k: v.double() * mix[0] for k, v in state.items() if v.is_floating_point()}
    for spec, w in zip(specs[1:], mix[1:]):
        log(f"adding {spec.name} (weight {w:.3f})")
        other = SentenceTransformer(spec.location, device="cpu")
        other_shape = _shape(other)
        if other_shape != shape:
            raise SoupError(f"{spec.name} cannot be averaged with {specs[0].name}: they differ in "
                            f"{_difference(shape, other_shape)}; a soup needs models fine-tuned from one base")
        theirs = other.state_dict()
        if set(theirs) != set(state) or any(theirs[k].shape != state[k].shape for k in state):
            raise SoupError(f"{spec.name} and {specs[0].name} have different parameters; "
                            "a soup needs models fine-tuned from one base")
        for k, v in theirs.items():
            if k in summed:
                summed[k] += v.double() * w
            elif not torch.equal(v, state[k]):
                raise SoupError(f"{spec.name} differs from {specs[0].name} in the non-trainable buffer {k}")
        del other
    base.load_state_dict({**state, **{k: v.to(state[k].dtype) for k, v in summed.items()}})
    out_dir.mkdir(parents=True, exist_ok=True)
    base.save(str(out_dir))
    record = {"format": 1, "method": "weighted average of weights (model soup)",
              "ingredients": [{"model": s.name, "location": s.location, "fingerprint": s.fingerprint, "weight": w}
                              for s, w in zip(specs, mix)],
              "max_seq_length": base.max_seq_length,
              **({"selection": selection} if selection else {}),
              "note": "no fusion.json: search uses the built-in fusion until `vfr tune` chooses one"}
    (out_dir / "soup.json").write_text(json_dumps(record, indent=1) + "\n", encoding="utf-8")
    return record
