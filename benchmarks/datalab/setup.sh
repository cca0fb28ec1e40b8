#!/usr/bin/env bash
# Build benchmarks/datalab/.venv (git-ignored) with cleanlab's Datalab for
# benchmarks/data_audit.py. Uses the same Python as nnrecipe's .venv; installs no torch.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../../.venv/bin/python}"
"$python" -m venv --clear "$here/.venv"
if [ -f "$here/requirements.lock" ]; then
  "$here/.venv/bin/pip" install --quiet -r "$here/requirements.lock"
else
  "$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
  "$here/.venv/bin/pip" freeze > "$here/requirements.lock"
fi
"$here/.venv/bin/python" -c "import datasets, cleanlab; from cleanlab import Datalab; \
print('Datalab ready: cleanlab', cleanlab.__version__, 'datasets', datasets.__version__)"
if "$here/.venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "error: torch got installed into the Datalab environment" >&2; exit 1
fi
