#!/usr/bin/env bash
# Create .venv and install tava with its pinned stack, only when something is missing or
# pyproject.toml changed. Used by `make demo`, `make test` and CI.
#
# Environment:
#   TAVA_VENV        where the virtual environment lives (default: .venv)
#   TAVA_PYTHON      the Python to build it from (default: python3.11, else python3)
#   PIP_FIND_LINKS   a folder of local wheels (e.g. a CPU torch wheel); passed on to uv
#   TAVA_TORCH_INDEX an extra index for torch, e.g. https://download.pytorch.org/whl/cpu
#                    (without one, PyPI's torch==2.13.0 is the CUDA build on Linux)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TAVA_VENV:-.venv}"
python="${TAVA_PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp="$venv/.tava-installed"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/tava" ]; then
  exit 0
fi

echo "tava: setting up $venv (first run, or pyproject.toml changed)..." >&2
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# uv resolves and installs the stack in seconds; pip would take minutes. Use the uv on PATH,
# else install it into the venv (ensurepip first: venvs made by uv have no pip).
if command -v uv >/dev/null 2>&1; then
  uv=(uv)
else
  "$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$venv/bin/python" -m ensurepip --quiet
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
  uv=("$venv/bin/python" -m uv)
fi
# --compile-bytecode: write the .pyc files once at install time, so every later start (demo, tests,
# Prefect's task processes) skips compiling torch/transformers/prefect, even where
# PYTHONDONTWRITEBYTECODE is set.
args=(--compile-bytecode --python "$venv/bin/python" -e ".[dev]")
if [ -n "${PIP_FIND_LINKS:-}" ]; then
  for links in $PIP_FIND_LINKS; do args+=(--find-links "$links"); done
fi
if [ -n "${TAVA_TORCH_INDEX:-}" ]; then
  args+=(--extra-index-url "$TAVA_TORCH_INDEX" --index-strategy unsafe-best-match)
fi
"${uv[@]}" pip install --quiet "${args[@]}"
echo "$want" > "$stamp"
echo "tava: environment ready ($venv)" >&2
