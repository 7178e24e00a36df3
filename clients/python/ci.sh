#!/usr/bin/env bash
# The Python client's CI: builds the flux-secrets wheel, installs it into a
# fresh venv in a temp folder, and runs the tests with that venv's python
# against the installed package (not the source tree), using the fluxd and
# fluxctl binaries in target/debug (as `cargo test --workspace` leaves them;
# built here with `cargo build -p fluxd -p fluxctl` when missing).
#
# Run from anywhere, e.g. `bash clients/python/ci.sh` from the repository
# root. PYTHON picks the interpreter (default python3, 3.9 or later);
# FLUX_BIN_DIR the folder holding fluxd and fluxctl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else "flux-secrets needs Python 3.9 or later, not " + sys.version.split()[0])'

tmp="$(mktemp -d /tmp/fxpy.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

echo "::: python client: building the wheel ($("$python" --version))"
# Built from a copy, so the source tree gets no build/ or egg-info.
mkdir "$tmp/pkg"
cp -R "$here/pyproject.toml" "$here/README.md" "$here/src" "$tmp/pkg/"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$tmp/dist" "$tmp/pkg"
wheel="$(ls "$tmp"/dist/flux_secrets-*.whl)"
echo "::: python client: $(basename "$wheel")"

echo "::: python client: installing it into a fresh venv"
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --no-index --no-deps "$wheel"

bin_dir="${FLUX_BIN_DIR:-$root/target/debug}"
if [[ ! -x "$bin_dir/fluxd" || ! -x "$bin_dir/fluxctl" ]]; then
  if [[ -z "${FLUX_BIN_DIR:-}" ]] && command -v cargo >/dev/null 2>&1; then
    echo "::: python client: building fluxd and fluxctl"
    (cd "$root" && cargo build -p fluxd -p fluxctl)
  elif [[ "${CI:-}" == "true" ]]; then
    echo "::: python client: no fluxd/fluxctl in $bin_dir and no cargo to build them" >&2
    exit 1
  else
    echo "::: SKIPPED: no fluxd/fluxctl in $bin_dir: the tests against the daemon are skipped" >&2
  fi
fi

echo "::: python client: tests"
# From a neutral folder, so nothing but the venv's site-packages provides
# flux_secrets.
cd "$tmp"
FLUX_SECRETS_EXPECT_INSTALLED=1 FLUX_BIN_DIR="$bin_dir" \
  "$tmp/venv/bin/python" "$here/tests/run.py"
