#!/usr/bin/env bash
# The two quick-start entry points: `scripts/dev.sh demo` and `scripts/dev.sh test [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-demo}; shift || true
bash scripts/setup.sh "$cmd"   # `test` also checks for (or installs) the browser the page tests drive
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
case "$cmd" in
  demo) exec .venv/bin/vfr demo "$@" ;;
  test)
    if [ $# -gt 0 ]; then exec .venv/bin/python -m pytest "$@"; fi
    # The in-process vLLM engine must start in a process where no training (torch.distributed /
    # accelerate state) has run, so the vLLM tests get a pytest process of their own.
    vllm_tests=(tests/integration/test_describe_vllm.py tests/integration/test_describe_vllm_serve.py)
    rc=0
    .venv/bin/python -m pytest "${vllm_tests[@]}" || rc=$?
    .venv/bin/python -m pytest "${vllm_tests[@]/#/--ignore=}" || rc=$?
    exit $rc ;;
  *) echo "usage: scripts/dev.sh demo|test [args]" >&2; exit 2 ;;
esac
