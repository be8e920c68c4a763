#!/usr/bin/env bash
# Installs the LiteLLM proxy into bench/.venv-litellm (git-ignored) so `fluxway bench` can measure it
# beside Fluxway against the same mock upstream. Safe to re-run; pass a version to pin: ./install_litellm.sh 1.77.0
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-litellm"
spec="litellm[proxy]"
if [[ $# -ge 1 && -n "$1" ]]; then spec="litellm[proxy]==$1"; fi
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [[ ! -x "$venv/bin/python" ]]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$spec"
"$venv/bin/python" -c "import importlib.metadata as m; print('litellm', m.version('litellm'))"
test -x "$venv/bin/litellm" && echo "proxy: $venv/bin/litellm"
