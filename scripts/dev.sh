#!/usr/bin/env bash
# The two quick-start entry points: `scripts/dev.sh demo` and `scripts/dev.sh test [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cmd=${1:-demo}; shift || true
case "$cmd" in
  demo) exec .venv/bin/vfr demo "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: scripts/dev.sh demo|test [args]" >&2; exit 2 ;;
esac
