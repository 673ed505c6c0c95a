#!/usr/bin/env bash
# First contact with a real Intel TDX host: launch a published
# configuration, fetch the node's quote and event logs, compare MRTD and
# RTMR0-3 with measurements.json, and on a mismatch replay the firmware's
# event log to the first event our model gets wrong. Run on the TDX host
# (root, KVM with TDX, QEMU with upstream TDX) in a checkout:
#   bash ci/tdx-real.sh [--release DIR] [--vm 2:2G:0] [--gpu PCI]... [--dry-run]
# Options and outputs: ci/tee-real.sh (bash ci/tdx-real.sh --help).
exec bash "$(dirname "$0")/tee-real.sh" tdx "$@"
