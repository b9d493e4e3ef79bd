#!/usr/bin/env bash
# Builds the Python binding into a virtualenv, checks the stubs against the module and runs
# the pytest suite. Exits non-zero on any failure.
#
#   bindings/python/run-tests.sh            # venv at <repo>/target/py-venv
#   MEMWARDEN_VENV=/some/venv bindings/python/run-tests.sh
#   bindings/python/run-tests.sh -k middleware   # extra arguments go to pytest
#
# Installs with `pip install bindings/python`, exactly as a user would (maturin builds the
# wheel in an isolated environment, ~50 s). For quicker local iterations,
# `MEMWARDEN_PY_DEVELOP=1` uses `maturin develop --release` instead (~5 s warm).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${MEMWARDEN_VENV:-$repo/target/py-venv}"

if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating virtualenv $venv"
    python3 -m venv "$venv"
fi
py="$venv/bin/python"

if ! "$py" -c "import maturin, pytest, mypy, psutil" 2>/dev/null; then
    echo "==> installing maturin pytest mypy psutil"
    "$py" -m pip install --quiet --disable-pip-version-check maturin pytest mypy psutil
fi
# DB-API drivers for the ChunkedDatabaseProcessor tests against PostgreSQL and MariaDB.
if ! "$py" -c "import psycopg, pymysql" 2>/dev/null; then
    echo "==> installing psycopg[binary] pymysql"
    "$py" -m pip install --quiet --disable-pip-version-check "psycopg[binary]" pymysql
fi

# A real SMTP server on loopback for the MemoryAlertingService e-mail tests.
if ! "$py" -c "import aiosmtpd" 2>/dev/null; then
    echo "==> installing aiosmtpd"
    "$py" -m pip install --quiet --disable-pip-version-check aiosmtpd
fi

# Real web stacks for the middleware tests: Flask under werkzeug (WSGI), Starlette under uvicorn (ASGI).
if ! "$py" -c "import flask, starlette, uvicorn" 2>/dev/null; then
    echo "==> installing flask starlette uvicorn"
    "$py" -m pip install --quiet --disable-pip-version-check flask starlette uvicorn
fi

if [ -n "${MEMWARDEN_PY_DEVELOP:-}" ]; then
    echo "==> building memwarden (maturin develop --release)"
    VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
        "$venv/bin/maturin" develop --release --quiet --manifest-path "$here/Cargo.toml"
else
    echo "==> pip install bindings/python"
    # A development build leaves its extension beside the sources; keep it out of the wheel.
    rm -f "$here"/python/memwarden/*.so
    "$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$here"
fi

echo "==> stubtest memwarden._memwarden"
# From inside the venv, so mypy's cache lands there and not in the repository.
(cd "$venv" && "$py" -m mypy.stubtest memwarden._memwarden)

echo "==> pytest bindings/python/tests"
(cd "$repo" && "$py" -m pytest -q bindings/python/tests "$@")
