#!/usr/bin/env bash
# The full benchmark as recorded in bench/RESULTS.md: sets up the LiteLLM proxy's own venv
# once, then runs the side-by-side harness and writes its table into RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv-litellm/bin/litellm ]; then
  python -m venv bench/.venv-litellm
  bench/.venv-litellm/bin/pip install -q 'litellm[proxy]==1.108.7'
fi
command -v wrk >/dev/null || echo "wrk not found: the aiohttp load generator stands in (lower absolute numbers)" >&2
exec python -m bench --write-results "$@"
