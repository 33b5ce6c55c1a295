"""The real vLLM (CPU build) engine with the tiny model: structured decoding, the job, resume after kill -9."""
from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from vfr.describe import job, tiny_vlm
from vfr.describe.describer import ValidatingDescriber
from vfr.describe.job import JobConfig, StoreSink
from vfr.describe.prompt import prompt_version
from vfr.describe.reader import ImageRef, ReaderLimits, read
from vfr.describe.schema import SceneDescription
from vfr.store.store import Store
from tests.describe_helpers import make_bad_files, make_images
from tests.describe_vllm import subprocess_env, tiny_model, vllm_engine  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

SIZES = [(8, 8), (28, 28), (64, 48), (224, 224), (300, 200), (640, 480), (1200, 900), (2000, 20), (20, 1500),
         (3000, 2000), (1024, 1024), (97, 333)]


def test_tiny_model_is_deterministic(tmp_path, tiny_model):
    again = tiny_vlm.build(tmp_path / "a", seed=0)
    assert tiny_vlm.fingerprint(again) == tiny_vlm.fingerprint(tiny_model)
    assert tiny_vlm.fingerprint(tiny_vlm.build(tmp_path / "b", seed=1)) != tiny_vlm.fingerprint(tiny_model)
    assert (tiny_model / "model.safetensors").stat().st_size < 2_000_000


def test_structured_outputs_are_all_schema_valid(tmp_path, vllm_engine):
    paths = make_images(tmp_path, 12, sizes=SIZES)          # 12 sizes, each of the 6 formats twice
    refs = [read(p, ReaderLimits(max_pixels=vllm_engine.max_pixels)) for p in paths]
    assert all(isinstance(r, ImageRef) for r in refs)
    describer = ValidatingDescriber(vllm_engine)
    results = []
    for i in range(0, len(refs), 6):
        results += describer.describe(refs[i:i + 6])
    valid = sum(isinstance(r, SceneDescription) for r in results)
    print(f"schema-valid: {valid}/{len(results)}, first-try invalid: {describer.stats.retried}")
    assert valid == len(results) == 12
    assert describer.stats.invalid == 0 and describer.stats.retried <= 1   # a retry only for a cut output
    # Outputs depend on the image: a model that ignored it would give one output for all 12. The random-weight
    # tiny model can still map two images to the same text now and then (seen once in CI: 11 of 12 distinct),
    # so most, not all, must differ; test_images_reach_the_model checks the image path with controlled images.
    assert len({r.model_dump_json() for r in results}) >= 10


def test_images_reach_the_model(vllm_engine):
    from PIL import Image

    def ref(w, h, color):
        return ImageRef(f"{w}{h}{color}", "", 0, w, h, Image.new("RGB", (w, h), color))

    budget = vllm_engine.opts.max_tokens
    vllm_engine.opts.max_tokens = 48  # enough to tell outputs apart; they need not be complete here
    try:
        small, large, large2 = vllm_engine.generate([ref(28, 28, "red"), ref(224, 224, "red"), ref(224, 224, "blue")])
    finally:
        vllm_engine.opts.max_tokens = budget
    assert large.prompt_tokens - small.prompt_tokens >= 60   # 64 vs 1 image tokens after 2x2 merging
    assert large.prompt_tokens == large2.prompt_tokens
    assert large.text != large2.text                         # same size, other pixels: other output


def test_job_with_bad_files_and_duplicates(tmp_path, vllm_engine, tiny_model):
    good = make_images(tmp_path / "img", 8, sizes=SIZES[2:7])
    expected = make_bad_files(tmp_path / "img", good[1])
    shutil.copy(good[0], tmp_path / "img" / "same-bytes.jpg")
    cfg = JobConfig(model=str(tiny_model), prompt_version=prompt_version(True), batch_size=4,
                    limits=ReaderLimits(max_pixels=vllm_engine.max_pixels))
    with Store(tmp_path / "db.duckdb") as store:
        counts = job.run([tmp_path / "img"], ValidatingDescriber(vllm_engine), StoreSink(store), cfg)
        assert counts["described"] == 8 and counts["duplicates"] == 1
        assert counts["failed"] == {reason: 1 for reason in expected.values()}
        assert counts["completion_tokens"] > 0 and counts["tokens_per_s"] > 0
        for doc in store.get([r[0] for r in store.con.execute("SELECT id FROM images").fetchall()]).values():
            SceneDescription.model_validate(doc.json)
        again = job.run([tmp_path / "img"], ValidatingDescriber(vllm_engine), StoreSink(store), cfg)
        assert again["described"] == 0 and again["skipped"] == 8


def test_cli_resume_after_kill_9(tmp_path, tiny_model):
    """Kill the real `describe` process at random moments, rerun: every image once, nothing lost."""
    n = 21
    make_images(tmp_path / "img", n, sizes=SIZES)
    db = tmp_path / "db.duckdb"
    cmd = [sys.executable, "-m", "vfr.cmd_describe", "describe", str(tmp_path / "img"), "--db", str(db),
           "--model", str(tiny_model), "--batch-size", "3", "--max-model-len", "4096", "--log-batches"]
    rng = random.Random(7)
    kills = []
    for attempt in range(3):
        proc = subprocess.Popen(cmd, env=subprocess_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and not any("committed" in l for l in lines):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))   # land anywhere: mid-batch, mid-commit, between batches
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(sum("committed" in l for l in lines))
        proc.wait(30)
    final = subprocess.run(cmd + ["--json"], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    result = json.loads(final.stdout)           # stdout is the JSON alone: vLLM's log lines went to stderr
    assert "vllm" in final.stderr.lower()       # (they were there)
    print(f"kills after committed batches: {kills}")
    assert len(kills) >= 2
    with Store(db, read_only=True) as store:
        rows = store.con.execute("SELECT image_id, count(*) FROM descriptions GROUP BY 1").fetchall()
        assert len(rows) == n and all(c == 1 for _, c in rows)                 # nothing lost, nothing twice
        assert store.con.execute("SELECT count(*) FROM images").fetchone()[0] == n
        jobs = store.jobs()
        assert jobs[0]["status"] == "done" and jobs[0]["counts"]["described"] == result["described"]
        assert result["described"] + result["skipped"] == n
        assert sum(j["counts"]["described"] for j in jobs if j["counts"]) == n  # job counts match the rows
        assert all(j["status"] == "interrupted" for j in jobs[1:] if j["id"] <= len(kills))
        for d in store.get([r[0] for r in rows]).values():
            SceneDescription.model_validate(d.json)


def test_cli_check_and_json_with_the_real_engine(tmp_path, tiny_model):
    """`vfr describe --check` loads vLLM, describes generated images, validates them, and reports the
    engine, model, device and speed; with --json, stdout is that report alone."""
    cmd = [sys.executable, "-m", "vfr.cmd_describe", "describe", "--check", "--json", "--model", str(tiny_model),
           "--max-model-len", "4096", "--batch-size", "4"]
    r = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    print({k: report[k] for k in ("engine", "device", "valid", "images", "images_per_s", "load_s")})
    assert report["ok"] and report["valid"] == report["images"] == 5
    assert report["engine"].startswith("vLLM ") and report["model"] == str(tiny_model)
    assert report["source"] == f"local folder {tiny_model.resolve()}" and report["device"].startswith("CPU (")
    assert report["images_per_s"] > 0 and report["tokens_per_s"] > 0 and report["load_s"] > 0
    assert "vllm" in r.stderr.lower() and not list(tmp_path.iterdir())   # no ./vfr.duckdb: the store is untouched
