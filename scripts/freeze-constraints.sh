#!/usr/bin/env bash
# Regenerate constraints.txt: the exact versions of every dependency of undertow[dev], which
# scripts/setup.sh (make setup, CI) and the Dockerfile both install with `-c constraints.txt`,
# so that a laptop, CI and the image run the same code.
#
# Run it after changing a dependency in pyproject.toml, then run `make test` and commit both
# files together. It resolves in a throw-away venv (never the project's .venv), so the result
# is what pip picks today for pyproject.toml's ranges, not whatever a working venv has piled up.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$tmp/venv/bin/python" -m pip install -q ".[dev]"

{
    cat <<'EOF'
# Exact versions of undertow's dependencies (runtime and the `dev` extra), used as a pip
# constraints file by scripts/setup.sh (`make setup`, CI) and by the Dockerfile, so that
# every environment runs the same versions. The project itself is not listed.
#
# Do not edit by hand. To regenerate after changing pyproject.toml:
#     scripts/freeze-constraints.sh
# (pip install .[dev] into a throw-away venv, then pip freeze without undertow).
EOF
    "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable \
        | grep -viE '^(undertow|pip|setuptools|wheel)( @|==)' | LC_ALL=C sort -f -t= -k1,1
} >constraints.txt
echo "wrote constraints.txt ($(grep -c '==' constraints.txt) pins)" >&2
