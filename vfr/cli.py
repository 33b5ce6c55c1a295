"""The `vfr` command. Sub-commands live in small modules that register themselves here;
heavy libraries (JVM, torch, FAISS, vLLM) are imported inside commands so `vfr --help` stays instant."""
from __future__ import annotations

import typer

from vfr import (cmd_calibrate, cmd_describe, cmd_eval, cmd_index, cmd_keys, cmd_models, cmd_search, cmd_serve,
                 cmd_store, cmd_tune)

app = typer.Typer(
    name="vfr",
    help="Vision-free retrieval: search images through their text descriptions (BM25 + dense, fused).\n\n"
         "Typical use: `vfr import descriptions.jsonl`, `vfr index`, `vfr search \"two dogs on a beach\"`. "
         "`vfr demo` runs the whole thing on built-in sample data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for module in (cmd_store, cmd_index, cmd_search, cmd_serve, cmd_keys, cmd_describe, cmd_eval, cmd_calibrate, cmd_tune,
               cmd_models):
    module.register(app)


def main() -> None:
    app()
