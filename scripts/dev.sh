#!/usr/bin/env bash
# The two quick-start entry points: `scripts/dev.sh demo` and `scripts/dev.sh test [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-demo}
# The tests need the Ray extra (the Ray describe tests) and a browser for the page tests (setup.sh test
# checks for Debian's chromium and installs it with apt-get when missing); the quick start needs neither.
if [ "$cmd" = test ]; then VFR_EXTRAS=ray bash scripts/setup.sh test; else bash scripts/setup.sh; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
shift || true
case "$cmd" in
  demo) exec .venv/bin/vfr demo "$@" ;;
  test)
    if [ $# -gt 0 ]; then exec .venv/bin/python -m pytest "$@"; fi
    # The in-process vLLM engine must start in a process where no training (torch.distributed /
    # accelerate state) has run, so the vLLM tests get a pytest process of their own. The Ray tests
    # (a local Ray cluster whose actors run vLLM) get one too: that process is a Ray driver.
    vllm_tests=(tests/integration/test_describe_vllm.py tests/integration/test_describe_vllm_serve.py)
    ray_tests=(tests/integration/test_describe_ray.py)
    rc=0
    .venv/bin/python -m pytest "${vllm_tests[@]}" || rc=$?
    .venv/bin/python -m pytest "${ray_tests[@]}" || rc=$?
    .venv/bin/python -m pytest "${vllm_tests[@]/#/--ignore=}" "${ray_tests[@]/#/--ignore=}" || rc=$?
    exit $rc ;;
  *) echo "usage: scripts/dev.sh demo|test [args]" >&2; exit 2 ;;
esac
