#!/usr/bin/env bash
# First contact with a real AMD SEV-SNP host: launch a published
# configuration, fetch the node's attestation report, compare the launch
# digest and HOST_DATA with measurements.json, and on a mismatch name the
# launch input that explains the digest. Run on the SNP host (root, KVM
# with SNP, QEMU with sev-snp-guest) in a checkout:
#   bash ci/snp-real.sh [--release DIR] [--vm 2:2G:0] [--gpu PCI]... [--dry-run]
# Options and outputs: ci/tee-real.sh (bash ci/snp-real.sh --help).
exec bash "$(dirname "$0")/tee-real.sh" snp "$@"
