#!/usr/bin/env bash
# Create .venv and install interp into it (add --dev for the test tools).
#
# torch is installed first so that a machine without an NVIDIA GPU gets the CPU build
# (about 200 MB) instead of PyPI's default Linux build with several GB of CUDA libraries:
#   1. a torch wheel that pip can find without an index (a --find-links folder in pip.conf);
#   2. otherwise the index in $TORCH_INDEX_URL (for example PyTorch's CPU wheel index), if set;
#   3. otherwise whatever pip's own configuration gives.
# With an NVIDIA GPU (nvidia-smi works) plain PyPI torch, which is the CUDA build.
# To choose a build yourself, install torch into .venv before running this script; it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# pip's notes about index folders it cannot use are noise here; everything else is shown.
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2); }

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip install "torch>=2.6"
  elif pip install -q --no-index --no-deps "torch>=2.6" 2>/dev/null; then
    pip install -q "torch>=2.6"   # the local CPU wheel is now installed; this adds its dependencies
  elif [ -n "${TORCH_INDEX_URL:-}" ]; then
    pip install "torch>=2.6" --index-url "$TORCH_INDEX_URL"   # e.g. PyTorch's own CPU wheel index
  else
    echo "note: no local CPU torch wheel; pip's configured index may install the CUDA build" \
         "(several GB). Set TORCH_INDEX_URL to PyTorch's CPU wheel index to avoid it." >&2
    pip install "torch>=2.6"
  fi
fi

extras=""
if [ "${1:-}" = "--dev" ]; then
  extras="[dev]"
  # The browser test drives Debian's chromium; install it where we may (root, or sudo
  # without a password), else say how. tests/test_app_browser.py fails without it.
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    if $SUDO true 2>/dev/null; then
      echo "installing Debian's chromium for the browser test"
      $SUDO apt-get update -qq >/dev/null && \
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null || \
        echo "warning: could not install chromium; the browser test will fail" >&2
    else
      echo "note: the browser test needs chromium: sudo apt-get install chromium" >&2
    fi
  fi
fi
pip install -q -e ".${extras}"
.venv/bin/python -c "import interp, torch; print(f'interp installed in .venv (torch {torch.__version__})')"
