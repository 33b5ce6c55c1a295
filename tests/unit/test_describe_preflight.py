"""First contact with `vfr describe`: what a user can get wrong is one line and a non-zero exit, found
before any engine loads (no input, empty or unreadable folder, no model, busy store), and `--json`
leaves only JSON on stdout."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from vfr import cmd_describe
from vfr.describe import models
from vfr.describe.jobstore import JobLock
from vfr.store.store import Store
from tests.describe_helpers import FakeEngine, make_images

REPO = Path(__file__).resolve().parents[2]


def _app():
    app = typer.Typer()
    cmd_describe.register(app)
    return app


@pytest.fixture
def no_engine(monkeypatch):
    """Any attempt to load an engine fails the test: every check here must come first."""
    def refuse(*a, **k):
        raise AssertionError("the engine was loaded before the inputs were checked")
    monkeypatch.setattr(cmd_describe, "_build_engine", refuse)


@pytest.fixture
def model_dir(tmp_path):
    """A folder that passes the model check (config and weights present); the engine itself is faked."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0")
    return d


def _one_line_error(r, code=1) -> str:
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


def _describe(*args):
    return CliRunner().invoke(_app(), ["describe", *map(str, args)])


def test_missing_path_says_where_it_looked(tmp_path, no_engine, model_dir):
    line = _describe(tmp_path / "photoz", "--db", tmp_path / "x.duckdb", "--model", model_dir)
    line = _one_line_error(line)
    assert "photoz: no such file or folder" in line and str(tmp_path / "photoz") in line
    assert not (tmp_path / "x.duckdb").exists()          # nothing was created for a job that cannot run


def test_no_input_at_all(tmp_path, no_engine):
    line = _one_line_error(_describe("--db", tmp_path / "x.duckdb"))
    assert "no images given" in line and "vfr describe photos/" in line


def test_empty_folder_and_unmatched_glob(tmp_path, no_engine, model_dir):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not an image suffix")
    line = _one_line_error(_describe(tmp_path / "empty", str(tmp_path / "*.jpg"), "--model", model_dir,
                                     "--db", tmp_path / "x.duckdb"))
    assert "no image files in" in line and str(tmp_path / "empty") in line and "*.jpg" in line
    assert ".jpg" in line and "recursively" in line


def test_unreadable_folder(tmp_path, no_engine, model_dir, monkeypatch):
    locked = tmp_path / "locked"
    make_images(locked, 1)
    locked.chmod(0)
    if os.geteuid() == 0:   # root reads anything: make the folder unreadable the way the OS would say it
        real = os.scandir

        def scandir(path="."):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)
        monkeypatch.setattr(os, "scandir", scandir)
    try:
        line = _one_line_error(_describe(locked, "--model", model_dir, "--db", tmp_path / "x.duckdb"))
    finally:
        locked.chmod(0o755)
    assert f"cannot read folder {locked} (Permission denied)" in line and "permissions" in line


def test_unreadable_file_list(tmp_path, no_engine):
    line = _one_line_error(_describe(f"@{tmp_path / 'list.txt'}", "--db", tmp_path / "x.duckdb"))
    assert "cannot read the file list" in line and str(tmp_path / "list.txt") in line


def test_empty_folder_beside_images_is_a_note_not_an_error(tmp_path):
    from vfr.describe.inputs import collect

    make_images(tmp_path / "img", 2)
    (tmp_path / "empty").mkdir()
    got = collect([str(tmp_path / "img"), str(tmp_path / "empty"), str(tmp_path / "img")])
    assert len(got.files) == 2 and got.empty == [str(tmp_path / "empty")]


# -- the model -------------------------------------------------------------------------------------
def test_model_not_in_cache_offline_is_one_line_in_a_real_process(tmp_path):
    """The first-contact case of the issue, as a user meets it: a real `vfr` process, offline, empty cache."""
    make_images(tmp_path / "img", 1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    r = subprocess.run([sys.executable, "-m", "vfr.cmd_describe", "describe", str(tmp_path / "img"),
                        "--db", str(tmp_path / "x.duckdb")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in line and str(tmp_path / "hf" / "hub") in line   # which, where
    assert "HF_HUB_OFFLINE" in line and "--model PATH" in line and "vfr dev tiny-vlm DIR" in line  # what to do
    assert "loading" not in r.stderr and not (tmp_path / "x.duckdb").exists()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An online hub client with an empty cache; tests say what the hub answers."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    answers = {}

    def model_info(repo, timeout=None):
        if "raise" in answers:
            raise answers["raise"]
        return {"id": repo}
    monkeypatch.setattr("huggingface_hub.model_info", model_info)
    return answers


def test_model_hub_unreachable(hub, tmp_path):
    hub["raise"] = OSError("[Errno -2] Name or service not known")
    with pytest.raises(models.ModelNotFound) as e:
        models.resolve("Qwen/Qwen2.5-VL-3B-Instruct")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "cache") in msg and "cannot be reached" in msg
    assert "Name or service not known" in msg and "hf download Qwen/Qwen2.5-VL-3B-Instruct" in msg


def test_model_not_on_the_hub(hub):
    from huggingface_hub.errors import RepositoryNotFoundError

    response = SimpleNamespace(headers={}, request=None, status_code=404)
    hub["raise"] = RepositoryNotFoundError("404 Client Error: Repository Not Found", response=response)
    with pytest.raises(models.ModelNotFound, match=r"the hub has no such model \(or it is private"):
        models.resolve("someone/no-such-vlm")


def test_model_on_the_hub_is_left_to_vllm(hub):
    assert models.resolve("Qwen/Qwen2.5-VL-3B-Instruct").source.startswith("Hugging Face hub")


def test_model_in_the_cache(hub, tmp_path):
    snap = tmp_path / "cache" / "models--org--vlm" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (tmp_path / "cache" / "models--org--vlm" / "refs").mkdir()
    (tmp_path / "cache" / "models--org--vlm" / "refs" / "main").write_text("abc123")
    (snap / "config.json").write_text("{}")
    hub["raise"] = AssertionError("a cached model must not need the hub")
    with pytest.raises(models.ModelNotFound, match="without its weights"):
        models.resolve("org/vlm")
    (snap / "model-00001-of-00002.safetensors").write_bytes(b"\0")
    assert models.resolve("org/vlm").source == f"Hugging Face cache {snap}"


def test_local_model_folders(tmp_path, model_dir):
    assert models.resolve(str(model_dir)).source == f"local folder {model_dir}"
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(models.ModelNotFound, match="no weights"):
        models.resolve(str(model_dir))
    with pytest.raises(models.ModelNotFound, match="no config.json"):
        models.resolve(str(tmp_path))
    for name in (str(tmp_path / "gone"), "./gone", "a/b/c"):
        with pytest.raises(models.ModelNotFound, match="no model folder at"):
            models.resolve(name)


def test_engine_failure_is_one_line():
    try:
        try:
            raise ValueError("User-specified max_model_len (999999) is greater than the derived max_model_len\n"
                             "details on line two")
        except ValueError as inner:
            raise RuntimeError("Engine core initialization failed. See root cause above.") from inner
    except RuntimeError as e:
        msg = models.engine_failure("m", e)
    assert "\n" not in msg and msg.startswith("vLLM could not start m: RuntimeError: Engine core initialization")
    assert "VFR_DEBUG=1" in msg


# -- the store, before the engine ------------------------------------------------------------------
def test_busy_describe_store_and_folder_as_db(tmp_path, no_engine, model_dir):
    make_images(tmp_path / "img", 1)
    db = tmp_path / "x.duckdb"
    with JobLock(db, "describe"):   # another describe job is running on this store
        line = _one_line_error(_describe(tmp_path / "img", "--db", db, "--model", model_dir))
    assert "another describe job is running on" in line and str(db) in line
    line = _one_line_error(_describe(tmp_path / "img", "--db", tmp_path, "--model", model_dir))
    assert "is a folder" in line
    line = _one_line_error(_describe(tmp_path / "img", "--db", tmp_path / "no" / "x.duckdb", "--model", model_dir))
    assert "does not exist" in line


def test_ingest_and_jobs_and_tiny_vlm_errors_are_one_line(tmp_path):
    runner = CliRunner()
    line = _one_line_error(runner.invoke(_app(), ["ingest", str(tmp_path / "none"), "--db", str(tmp_path / "x.duckdb")]))
    assert "no shard-*.parquet files" in line
    (tmp_path / "sh").mkdir()
    (tmp_path / "sh" / "shard-w0-x-b000000.parquet").write_bytes(b"PAR1 damaged")
    line = _one_line_error(runner.invoke(_app(), ["ingest", str(tmp_path / "sh"), "--db", str(tmp_path / "x.duckdb")]))
    assert "cannot read shard" in line and "shard-w0-x-b000000.parquet" in line
    line = _one_line_error(runner.invoke(_app(), ["jobs", "--db", str(tmp_path / "missing.duckdb")]))
    assert "no database at" in line
    (tmp_path / "file").write_text("x")
    line = _one_line_error(runner.invoke(_app(), ["dev", "tiny-vlm", str(tmp_path / "file" / "m")]))
    assert "cannot write the tiny model" in line


# -- with a fake engine: exit codes, --json and --check --------------------------------------------
class _Engine(FakeEngine):
    """What the CLI needs of an engine, plus the noise a real one makes on stdout."""

    max_pixels = 224 * 224

    def __init__(self, **kw):
        super().__init__(**kw)
        print("INFO 11-30 12:00:00 [vllm] noise printed to stdout")
        log = logging.getLogger("noisy-library")
        log.addHandler(logging.StreamHandler(sys.stdout))
        log.warning("WARNING a library logging to stdout")

    def describe_options(self):
        return {"fake": True}


@pytest.fixture
def fake_engine(monkeypatch):
    made = {}

    def build(*a, **k):
        made["engine"] = _Engine(**made.get("kw", {}))
        return made["engine"]
    monkeypatch.setattr(cmd_describe, "_build_engine", build)
    return made


def test_json_is_the_only_thing_on_stdout(tmp_path, fake_engine, model_dir):
    make_images(tmp_path / "img", 3)
    r = _describe(tmp_path / "img", "--db", tmp_path / "x.duckdb", "--model", model_dir, "--json", "-q")
    assert r.exit_code == 0, r.output
    counts = json.loads(r.stdout)                       # the whole of stdout parses
    assert counts["described"] == 3 and counts["status"] == "done"
    assert "noise printed to stdout" in r.stderr and "a library logging to stdout" in r.stderr


def test_nothing_described_exits_non_zero(tmp_path, fake_engine, model_dir):
    (tmp_path / "img").mkdir()
    for name in ("a.jpg", "b.png"):
        (tmp_path / "img" / name).write_text(f"{name} is not an image")
    r = _describe(tmp_path / "img", "--db", tmp_path / "x.duckdb", "--model", model_dir, "--json", "-q")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["failed"] == {"not_image": 2}   # the counts still come out
    assert r.stderr.strip().splitlines()[-1].startswith("error: nothing was described: all 2 files")
    make_images(tmp_path / "img", 1)                   # one good file among bad ones: a normal job
    r = _describe(tmp_path / "img", "--db", tmp_path / "x.duckdb", "--model", model_dir, "-q")
    assert r.exit_code == 0, r.output
    with Store(tmp_path / "x.duckdb", read_only=True) as s:
        assert [j["status"] for j in s.jobs()] == ["done", "done"]


def test_check_reports_engine_model_device_and_speed(tmp_path, fake_engine, model_dir):
    r = _describe("--check", "--model", model_dir, "--db", tmp_path / "never.duckdb", "--batch-size", 4)
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert out[0] == "engine   fake engine" and out[1] == f"model    {model_dir} (local folder {model_dir})"
    assert out[2].startswith("device   ") and out[3] == "output   5/5 schema-valid (0 retried)"
    assert "images/s" in out[4] and out[-1] == "check passed"
    assert not (tmp_path / "never.duckdb").exists()
    assert "noise printed to stdout" not in r.stdout
    r = _describe("--check", "--json", "--model", model_dir, "--batch-size", 4)
    report = json.loads(r.stdout)
    assert report["ok"] and report["valid"] == report["images"] == 5 and report["images_per_s"] > 0


def test_check_fails_when_the_output_does_not_validate(tmp_path, fake_engine, model_dir):
    from vfr.describe.check import generated_images

    fake_engine["kw"] = {"bad": {generated_images(2)[1].id}, "bad_rounds": 99}
    r = _describe("--check", "--model", model_dir, "--batch-size", 4)
    assert r.exit_code == 1
    assert "output   4/5 schema-valid" in r.stdout and "check FAILED" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("error: the engine's output did not validate")


def test_stdout_guard_sends_every_writer_to_stderr_in_a_real_process():
    """Library log lines reach fd 1 in many ways (print, logging, C code, child processes): all go to
    stderr, and only the result reaches stdout."""
    code = """
import logging, os, subprocess, sys
from vfr.common import stdout_for_results
logging.basicConfig(stream=sys.stdout)
with stdout_for_results() as results:
    print("print")
    logging.getLogger("lib").warning("logging")
    os.write(1, b"fd-level write\\n")
    subprocess.run([sys.executable, "-c", "print('child process')"], check=True)
    results.print_json('{"ok": true}')
print("after")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["{", '  "ok": true', "}", "after"]
    for noise in ("print", "WARNING:lib:logging", "fd-level write", "child process"):
        assert noise in r.stderr.splitlines()
