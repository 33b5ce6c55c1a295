"""The `vfr` command. Sub-commands live in small modules that register themselves here;
heavy libraries (JVM, torch, FAISS, vLLM) are imported inside commands so `vfr --help` stays instant."""
from __future__ import annotations

import inspect
import re

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

_KEEP_LINES = re.compile(r"^(\s|[-*•]\s|\d+[.)]\s|\x08|vfr\s|\$\s)")  # \x08: typer's no-rewrap mark


def reflow(text: str) -> str:
    """Docstring help with each prose paragraph on one line. Typer's rich help keeps single newlines as they
    are, so a docstring wrapped at the source's width prints ragged, and the command list, which shows a
    command's first paragraph, cuts it at its first line break. Paragraphs with list items, indented or
    command lines keep their line breaks."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if any(_KEEP_LINES.match(line) for line in p.splitlines()) else " ".join(p.split())
                       for p in paragraphs)


def _reflow_all(typer_app: typer.Typer) -> None:
    """`reflow` the help of every command and sub-app, once, when the app is assembled."""
    for info in typer_app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback)
        if doc:
            info.help = reflow(doc)
    for group in typer_app.registered_groups:
        _reflow_all(group.typer_instance)


_reflow_all(app)


def main() -> None:
    app()
