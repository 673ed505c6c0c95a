#!/usr/bin/env bash
# Runs the whole test suite: every cargo test (unit, integration, doc), the
# suites that need outside tools (reference measurement tools, the
# independent Python RA-TLS client, a real CPU engine, the TON sandbox), then
# the Python client's tests.
#
# By default it first installs what those suites need (idempotent: a second
# run installs nothing; the first engine build takes ~6 min) and makes each
# of them required, so nothing skips. With --no-install (or
# CHRYSALIS_TEST_INSTALL=0) it installs nothing; each suite whose tools are
# missing skips, and the run ends with a summary naming every skipped suite
# and the command that enables it — never a silent skip.
#
# A CHRYSALIS_REQUIRE_* variable set beforehand (CI sets all of them) makes a
# failed install an error instead of a skip.
#
# Tests that need ../shared/vectors skip with a message when it is absent.
# --image also runs the guest image suite (ci/image.sh, ~20 min fresh),
# which CI runs as a step of its own. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

install="${CHRYSALIS_TEST_INSTALL:-1}"
image=0
cargo_args=()
for a in "$@"; do
    case "$a" in
        --no-install) install=0 ;;
        --image) image=1 ;;
        *) cargo_args+=("$a") ;;
    esac
done

TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
skipped=()

# suite NAME ENV_VAR INSTALLER CHECK...: installs (unless --no-install) and
# requires the suite when its tools are there; records it as skipped if not.
suite() {
    local name=$1 var=$2 installer=$3
    shift 3
    if [ "$install" = 1 ]; then
        bash "$installer" || echo "test: installing for '$name' failed ($installer)" >&2
    fi
    if "$@"; then
        export "$var=1"
    elif [ -n "${!var:-}" ]; then
        echo "test: $var is set but the '$name' tools are missing; run: bash $installer" >&2
        exit 1
    else
        skipped+=("$name|bash $installer")
    fi
}
have_model_tools() {
    command -v veritysetup >/dev/null 2>&1 && { [ -x /usr/bin/mkfs.erofs ] || [ -x /usr/sbin/mkfs.erofs ]; } &&
        [ -x "${REFVENV:-$TARGET_DIR/refvenv}/bin/python" ]
}
have_pyclient() { [ -x "${PYVENV:-$TARGET_DIR/pyvenv}/bin/python" ]; }
have_engine() { [ -s "${CHRYSALIS_ENGINE_VENV:-target/enginevenv}/tiny.gguf" ]; }
have_ton() { [ -d host-tools/ton/contract/node_modules/@ton/sandbox ]; }
# The pinned QEMU (RTMR0's ACPI tables): ci/qemu-pinned.sh caches it here and
# the tests find it through CHRYSALIS_QEMU.
PINNED_QEMU="${CHRYSALIS_QEMU_DIR:-$TARGET_DIR/qemu-pinned}/bin/qemu-system-x86_64"
have_pinned_qemu() {
    [ -x "$PINNED_QEMU" ] && "$PINNED_QEMU" --version 2>/dev/null | grep -q '^QEMU emulator version 11\.1\.3 ' &&
        export CHRYSALIS_QEMU="$PINNED_QEMU"
}

suite "reference measurement tools (sev-snp-measure, veritysetup, mkfs.erofs)" \
    CHRYSALIS_REQUIRE_MODEL_TOOLS ci/measure-tools.sh have_model_tools
suite "independent Python RA-TLS client (cryptography)" \
    CHRYSALIS_REQUIRE_PYCLIENT ci/pyclient.sh have_pyclient
suite "real CPU engine (llama.cpp server, agent end to end)" \
    CHRYSALIS_REQUIRE_ENGINE ci/engine.sh have_engine
suite "TON registry and payment channel on @ton/sandbox" \
    CHRYSALIS_REQUIRE_TON ci/ton.sh have_ton
suite "pinned QEMU 11.1.3 (TDX RTMR0: ACPI tables under qtest)" \
    CHRYSALIS_REQUIRE_QEMU ci/qemu-pinned.sh have_pinned_qemu

cargo test --workspace --all-targets --locked "${cargo_args[@]}"
# Doc tests (not part of --all-targets).
cargo test --workspace --doc --locked
# The Python client (`import chrysalis`): wheel built with maturin, pytest
# with the OpenAI SDK against the agent (installs pinned packages in a venv).
bash ci/python.sh
# The guest image suite (firmware, mkosi build, TCG boot, verify + chat):
# ~20 min on a fresh machine, so only with --image (CI runs it separately).
if [ "$image" = 1 ]; then
    bash ci/image.sh
else
    skipped+=("guest image build + boot under TCG (~20 min fresh; CI runs it)|bash ci/image.sh  (or bash ci/test.sh --image)")
fi

if [ ${#skipped[@]} -gt 0 ]; then
    echo
    echo "test: SKIPPED SUITES (not run by this command; their checks did not run):"
    for s in "${skipped[@]}"; do
        printf '  - %s\n      enable with: %s\n' "${s%%|*}" "${s#*|}"
    done
    echo "test: or run 'bash ci/test.sh' without --no-install to install them all"
else
    echo "test: every suite ran (none skipped)"
fi
