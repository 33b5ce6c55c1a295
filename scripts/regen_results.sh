#!/usr/bin/env bash
# Regenerate docs/results.md (and out/results/BENCH/{runs,plots,metrics.json,results.md}) from ../shared/data.
# Indexes, document embeddings and query embeddings are cached under ~/.cache/vfr/eval (or $VFR_CACHE/eval),
# so a second run only searches and scores. Extra arguments go to `vfr eval` (e.g. --encoder DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" -m vfr eval all --no-progress --out out/results --results-md docs/results.md "$@"
