"""Every numeric option of every command is bounded (issue 11, item 7): NaN, infinities and out-of-range
numbers are refused as usage errors before any work starts (a float with an open side would let NaN or
infinity through). JSON output never holds NaN: see test_cli_defects.py and the allow_nan checks."""
import typing

import pytest
import typer
from typer.testing import CliRunner

from vfr.cli import app


def _numeric_options():
    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
            return
        for p in cmd.params:
            ann = p.type_descriptor.annotation
            kind = next((t for t in (ann, *typing.get_args(ann)) if t in (int, float)), None)
            if kind is not None and p.opts[0].startswith("--"):
                yield path, p, kind
    return list(walk(typer.main.get_command(app), []))


OPTIONS = _numeric_options()


def test_the_walk_finds_the_known_numeric_options():
    names = {(" ".join(path), p.opts[0]) for path, p, _ in OPTIONS}
    assert {("search", "--k"), ("search", "--depth"), ("index", "--k1"), ("calibrate", "--lr"),
            ("describe", "--gpu-memory-utilization")} <= names and len(names) >= 30


@pytest.mark.parametrize("path,param,kind", OPTIONS, ids=[f"{' '.join(p)} {o.opts[0]}" for p, o, _ in OPTIONS])
def test_numeric_option_is_bounded_and_refuses_bad_numbers(path, param, kind):
    assert param.min is not None, f"{' '.join(path)} {param.opts[0]} has no lower bound"
    bad = [str(param.min - 1)]
    if kind is float:
        assert param.max is not None, f"{' '.join(path)} {param.opts[0]} lets infinity and NaN through"
        bad += ["nan", "inf", "-inf", "NaN"]
    for value in bad:
        r = CliRunner().invoke(app, [*path, param.opts[0], value])
        assert r.exit_code == 2 and (r.exception is None or isinstance(r.exception, SystemExit)), (value, r.output)
        assert "Invalid value" in r.output and param.opts[0] in r.output, (value, r.output)


@pytest.mark.parametrize("weights", [(float("nan"), 1.0), (float("inf"), 1.0), (1.0, -float("inf")), (1e300, 1e300)])
def test_fusion_config_refuses_non_finite_weights_in_the_library_too(weights):
    from vfr.retrieve.fusion import FusionConfig

    with pytest.raises(ValueError, match="finite"):
        FusionConfig(weights=weights)


def test_json_text_never_holds_nan_or_infinity():
    import json

    from vfr.store.textfiles import json_dumps

    text = json_dumps({"a": float("nan"), "b": [float("inf"), 1.5, {"c": -float("inf")}], "d": (2, float("nan"))})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in output")) == \
        {"a": None, "b": [None, 1.5, {"c": None}], "d": [2, None]}


def test_every_json_document_the_cli_prints_is_standard():
    """`--json` outputs go through json_dumps (non-finite numbers become null); search results use
    json.dumps(..., allow_nan=False) on finite scores."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    calls = [(path, n, line) for path in (root / "vfr").rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"print_json\(", line)]
    assert len(calls) >= 5
    offenders = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p, n, line in calls if "json_dumps(" not in line]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("name", ["VFR_LOCK_TIMEOUT", "VFR_JOB_LOCK_TIMEOUT"])
@pytest.mark.parametrize("value", ["nan", "-1", "soon"])
def test_numeric_environment_variables_are_checked(tmp_path, monkeypatch, name, value):
    """A bad number in the environment is one line naming the variable (it was a silent 0 or a traceback)."""
    import json

    from vfr.describe.jobstore import job_lock_timeout
    from vfr.store.store import Store, StoreError, lock_timeout_s

    Store(tmp_path / "s.duckdb").close()  # a store exists: each command gets as far as reading the setting
    monkeypatch.setenv(name, value)
    read = lock_timeout_s if name == "VFR_LOCK_TIMEOUT" else job_lock_timeout
    with pytest.raises(StoreError, match=name):
        read()
    if name == "VFR_LOCK_TIMEOUT":
        f = tmp_path / "a.jsonl"
        f.write_text(json.dumps({"id": "a", "text": "b"}) + "\n")
        for args in (["import", str(f)], ["search", "x"], ["stats"], ["delete", "a"]):
            r = CliRunner().invoke(app, [*args, "--db", str(tmp_path / "s.duckdb")])
            assert r.exit_code == 1 and isinstance(r.exception, SystemExit) and name in r.output, (args, r.output)


def test_infinite_lock_timeout_means_wait_as_long_as_it_takes(monkeypatch):
    import math

    from vfr.store.env import env_number

    monkeypatch.setenv("VFR_LOCK_TIMEOUT", "inf")
    assert math.isinf(env_number("VFR_LOCK_TIMEOUT", 10.0, minimum=0.0))
    monkeypatch.setenv("VFR_LUCENE_THREADS", "0")
    with pytest.raises(ValueError, match="VFR_LUCENE_THREADS='0': give a whole number from 1 to 256"):
        env_number("VFR_LUCENE_THREADS", 4, minimum=1, maximum=256, integer=True)
