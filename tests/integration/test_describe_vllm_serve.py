"""The server engine against a real `vllm serve` (vLLM's OpenAI-compatible server, CPU build) on loopback."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from vfr.describe import job
from vfr.describe.describer import ValidatingDescriber
from vfr.describe.engine_server import ServerEngine, ServerOptions
from vfr.describe.job import JobConfig, StoreSink
from vfr.describe.prompt import prompt_version
from vfr.describe.reader import ReaderLimits
from vfr.describe.schema import SceneDescription
from vfr.store.store import Store
from tests.describe_helpers import make_bad_files, make_images
from tests.describe_vllm import subprocess_env, tiny_model  # noqa: F401 - fixture
from tests.server_helpers import free_port, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def vllm_server(tiny_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model),
           "--served-model-name", "tiny-vlm", "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", "4096", "--enforce-eager",
           # as the offline engine: no free whitespace, else a random model pads JSON until max_tokens
           "--structured-outputs-config", '{"backend": "guidance", "disable_any_whitespace": true}',
           "--limit-mm-per-prompt", '{"image": 1, "video": 0}']
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_http(f"{url}/models", proc, log, 420, "vllm serve")
    except RuntimeError as e:
        proc.kill()
        pytest.fail(str(e))
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_server_engine_describes_and_stores(tmp_path, vllm_server):
    good = make_images(tmp_path / "img", 10, sizes=[(64, 48), (300, 200), (1200, 900), (20, 700), (224, 224)])
    make_bad_files(tmp_path / "img", good[1])
    eng = ServerEngine(ServerOptions(url=vllm_server, max_tokens=1024, concurrency=4, timeout_s=300))
    assert eng.model == "tiny-vlm"                      # discovered from /v1/models
    cfg = JobConfig(model=eng.model, prompt_version=prompt_version(True), batch_size=5,
                    limits=ReaderLimits(max_pixels=224 * 224))
    with Store(tmp_path / "db.duckdb") as store:
        describer = ValidatingDescriber(eng)
        counts = job.run([tmp_path / "img"], describer, StoreSink(store), cfg, engine_name="server")
        assert counts["described"] == 10 and sum(counts["failed"].values()) == 4
        assert counts["prompt_tokens"] > 0 and counts["completion_tokens"] > 0
        assert describer.stats.invalid == 0
        docs = store.get([r[0] for r in store.con.execute("SELECT id FROM images").fetchall()])
        assert len(docs) == 10
        for d in docs.values():
            SceneDescription.model_validate(d.json)
        assert len({d.text for d in docs.values()}) == 10


def test_server_unreachable_is_an_engine_error(tmp_path):
    eng = ServerEngine(ServerOptions(url=f"http://127.0.0.1:{free_port()}/v1", model="x", max_retries=1,
                                     backoff_s=0.01, timeout_s=2))
    from PIL import Image

    from vfr.describe.reader import ImageRef
    out = ValidatingDescriber(eng).describe([ImageRef("a", "a", 1, 8, 8, Image.new("RGB", (8, 8)))])
    assert out[0].reason == "engine_error" and "ConnectError" in out[0].detail
