"""`vfr jobs`, `vfr ingest`, `--shard` parsing and lazy imports, with the describe commands alone."""
from __future__ import annotations

import subprocess
import sys

import typer
from typer.testing import CliRunner

from vfr.describe import job
from vfr.describe.describer import ValidatingDescriber
from vfr.describe.job import JobConfig
from vfr.describe.shards import ShardSink
from tests.describe_helpers import FakeEngine, make_images
from vfr import cmd_describe


def _app():
    app = typer.Typer()
    cmd_describe.register(app)
    return app


def test_ingest_then_jobs(tmp_path):
    make_images(tmp_path / "img", 3)
    job.run([tmp_path / "img"], ValidatingDescriber(FakeEngine()), ShardSink(tmp_path / "sh"),
            JobConfig(model="fake", prompt_version="p1"))
    db = tmp_path / "x.duckdb"
    r = CliRunner().invoke(_app(), ["ingest", str(tmp_path / "sh"), "--db", str(db)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(_app(), ["jobs", "--db", str(db), "--json"])
    assert r.exit_code == 0 and '"ingest"' in r.output
    r = CliRunner().invoke(_app(), ["ingest", str(tmp_path / "nothing"), "--db", str(db)])
    assert r.exit_code == 1


def test_bad_options_fail_fast(tmp_path):
    r = CliRunner().invoke(_app(), ["describe", str(tmp_path), "--engine", "gpu"])
    assert r.exit_code == 1
    r = CliRunner().invoke(_app(), ["describe", str(tmp_path), "--shard", "3/3"])
    assert r.exit_code == 1


def test_help_does_not_import_vllm_or_torch():
    code = ("import sys, vfr.cmd_describe as m, typer; from typer.testing import CliRunner; a = typer.Typer(); "
            "m.register(a); CliRunner().invoke(a, ['describe', '--help']); "
            "print(sorted(x for x in ('vllm', 'torch', 'transformers') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
