#!/usr/bin/env bash
# Agent benchmarks on this machine, same run, same client and stub engine:
#   direct to the engine (plain HTTP/1.1), through chrysalis-agent (TLS 1.3,
#   RA-TLS with the sim provider), through nginx (Debian package, TLS 1.3
#   reverse proxy with the same engine behind it).
# Usage: bash agent/benches/compare.sh [latency] [throughput] [stream] [idle] | all
#   default: latency throughput stream;  `idle` = 10,000 idle TLS connections
#   + slowloris clients + new clients, with RSS per connection (agent, nginx).
# Needs nginx for the comparison rows: apt-get install nginx-light (or nginx).
set -euo pipefail
cd "$(dirname "$0")/../.."
# 10,000 connections need file descriptors on both ends (client and server
# processes each raise their soft limit to this hard limit too).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
  echo "compare: open-file limit $(ulimit -n) < 12000; the idle scenario will fail to open all connections" >&2
fi
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ||
  echo "compare: nginx not installed (apt-get install nginx-light): nginx rows skipped" >&2
exec cargo bench -p chrysalis-agent --bench proxy -- "$@"
