#!/usr/bin/env bash
# Installs the independent reference tools that the chrysalis-measurements
# tests and benchmarks compare against:
#   * sev-snp-measure (PyPI, pinned) in a Python venv at $REFVENV
#     (default: ${CARGO_TARGET_DIR:-<repo>/target}/refvenv);
#   * veritysetup (Debian package cryptsetup-bin), mkfs.erofs (erofs-utils,
#     for `chrysalis image model`) and GNU time (package time);
#   * Debian's OVMF builds (package ovmf: /usr/share/ovmf/OVMF.fd and
#     /usr/share/OVMF/OVMF_CODE*.fd), real firmware for firmware-only SNP
#     digests (OvmfPkgX64 with SEV metadata, but no kernel-hashes page).
# Idempotent: a tool that is already there is left alone. Prints what it did.
# Tests that need a tool and do not find it skip with a message, so this script
# is optional for `cargo test`; it is what makes those tests actually compare.
set -euo pipefail
cd "$(dirname "$0")/.."

SEV_SNP_MEASURE_VERSION="0.0.13"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
REFVENV="${REFVENV:-$TARGET_DIR/refvenv}"

say() { printf 'measure-tools: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
need_apt=()
command -v veritysetup >/dev/null 2>&1 || need_apt+=(cryptsetup-bin)
[ -x /usr/bin/mkfs.erofs ] || [ -x /usr/sbin/mkfs.erofs ] || need_apt+=(erofs-utils)
[ -x /usr/bin/time ] || need_apt+=(time)
[ -f /usr/share/ovmf/OVMF.fd ] || need_apt+=(ovmf)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "need root to apt-get install ${need_apt[*]}; skipping (tests will skip those comparisons)"
    else
        say "apt-get install ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    fi
else
    say "veritysetup, mkfs.erofs, /usr/bin/time and ovmf already installed"
fi
if command -v veritysetup >/dev/null 2>&1; then
    say "veritysetup: $(veritysetup --version)"
fi

# --- sev-snp-measure venv ----------------------------------------------------
have_ssm() {
    [ -x "$REFVENV/bin/python" ] &&
        "$REFVENV/bin/python" - "$SEV_SNP_MEASURE_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if version("sev-snp-measure") == sys.argv[1] else 1)
EOF
}
if have_ssm; then
    say "sev-snp-measure $SEV_SNP_MEASURE_VERSION already in $REFVENV"
else
    PY="${PYTHON:-python3}"
    if [ ! -x "$REFVENV/bin/python" ]; then
        say "creating venv $REFVENV with $("$PY" --version 2>&1)"
        mkdir -p "$(dirname "$REFVENV")"
        "$PY" -m venv "$REFVENV"
    fi
    say "pip install sev-snp-measure==$SEV_SNP_MEASURE_VERSION into $REFVENV"
    "$REFVENV/bin/python" -m pip install -q --disable-pip-version-check \
        "sev-snp-measure==$SEV_SNP_MEASURE_VERSION"
fi
say "sev-snp-measure: $("$REFVENV/bin/sev-snp-measure" --version 2>&1 | head -1)"
say "done (REFVENV=$REFVENV)"
