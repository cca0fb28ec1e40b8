#!/usr/bin/env bash
# System packages the test suite needs, installed with apt-get when missing. CI runs as root
# on a fresh Debian machine (`make test` calls this first); elsewhere it only says what is
# missing. Each area adds its own packages to PACKAGES, with the command that proves each one
# is there.
set -euo pipefail

# package -> a file that exists once it is installed
declare -A PACKAGES=(
  [chromium]=/usr/bin/chromium                # the report's browser test (tests/report)
  [chromium-driver]=/usr/bin/chromedriver     # selenium drives chromium through it
  # tests/scale start their own PostgreSQL server (initdb/pg_ctl) for the shared Optuna study
  [postgresql]='/usr/lib/postgresql/*/bin/initdb'
)

missing=()
for pkg in "${!PACKAGES[@]}"; do
  compgen -G "${PACKAGES[$pkg]}" >/dev/null || missing+=("$pkg")  # a path or a glob
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "system-deps: missing ${missing[*]}; install them with: apt-get install -y ${missing[*]}" >&2
  exit 0  # the tests that need them fail with the same hint
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
