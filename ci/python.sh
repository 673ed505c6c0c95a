#!/usr/bin/env bash
# The Python client (attestation/python, `import chrysalis`): builds its
# wheel with maturin, installs it into a venv with pinned pytest, openai and
# httpx from PyPI, and runs its tests against the agent (simulated TEE) in
# front of a stub engine and against the RA-TLS test servers (genuine and
# impostors), all on 127.0.0.1.
#
# Idempotent: the venv ($PYCLIENTVENV, default
# ${CARGO_TARGET_DIR:-<repo>/target}/pyclientvenv) is created once and the
# pinned packages installed only when missing; the wheel is rebuilt (cargo
# reuses its build) and reinstalled every run. Exits non-zero when a build
# or a test fails, and when pytest runs no test at all (its exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."

MATURIN_VERSION="1.16.0"
PYTEST_VERSION="9.2.0"
OPENAI_VERSION="3.51.0"
HTTPX_VERSION="0.28.1"
HTTPCORE_VERSION="1.0.9"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="${PYCLIENTVENV:-$TARGET_DIR/pyclientvenv}"
WHEELS="$TARGET_DIR/wheels"

say() { printf 'python: %s\n' "$*"; }

if ! command -v python3 >/dev/null 2>&1; then
    say "python3 not found" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "python3 -m venv $VENV ($(python3 --version 2>&1))"
    if ! python3 -m venv "$VENV"; then
        # Debian's python3 keeps venv/ensurepip in a separate package.
        rm -rf "$VENV"
        if [ "$(id -u)" -ne 0 ]; then
            say "venv failed and apt-get needs root: install python3-venv" >&2
            exit 1
        fi
        say "apt-get install python3-venv, then retry"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
fi
PY="$VENV/bin/python"

PINS=(
    "maturin==$MATURIN_VERSION"
    "pytest==$PYTEST_VERSION"
    "openai==$OPENAI_VERSION"
    "httpx==$HTTPX_VERSION"
    "httpcore==$HTTPCORE_VERSION"
)
if "$PY" - "${PINS[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    if version(name) != want:
        sys.exit(1)
PY
then
    say "pinned packages already in $VENV"
else
    say "pip install ${PINS[*]}"
    "$PY" -m pip install -q --disable-pip-version-check "${PINS[@]}"
fi

# The servers the tests talk to: the agent and the RA-TLS test servers.
say "cargo build -p chrysalis-agent; cargo build -p chrysalis-py --example test_server"
cargo build -q -p chrysalis-agent
cargo build -q -p chrysalis-py --example test_server
export CHRYSALIS_AGENT_BIN="$TARGET_DIR/debug/chrysalis-agent"
export CHRYSALIS_TEST_SERVER_BIN="$TARGET_DIR/debug/examples/test_server"

say "maturin build --release (wheel into $WHEELS)"
rm -f "$WHEELS"/chrysalis_client-*.whl
"$VENV/bin/maturin" build --release --quiet -m attestation/python/Cargo.toml \
    --interpreter "$PY" -o "$WHEELS"
WHEEL=$(ls -t "$WHEELS"/chrysalis_client-*.whl | head -n 1)
say "pip install $WHEEL"
"$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
# The tests must exercise the installed wheel, not the source tree.
(cd "$TARGET_DIR" && "$PY" -c 'import chrysalis; print("python: chrysalis", chrysalis.__version__, "from", chrysalis.__file__)')

set +e
PYTHONDONTWRITEBYTECODE=1 "$PY" -m pytest -p no:cacheprovider -q attestation/python/tests
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    say "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
