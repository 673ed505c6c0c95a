#!/usr/bin/env bash
# The main job on the embedded default: a local chrysalis-agent with the
# SIMULATED TEE playing the published release chrysalis-0.2.0-cpu (its SNP
# configuration) in front of a small real engine (llama.cpp's OpenAI server
# on a tiny generated model, installed by ci/engine.sh), then, as a client:
# `chrysalis verify` (rejected by default: simulated; accepted with
# --allow-sim and named as the published configuration, with fresh evidence
# bound to a nonce), a second simulated node with its own registers rejected
# as no published release even with --allow-sim, and a streamed chat through
# the verified connection. Then the offline evidence check for TDX and SNP.
# Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/engine.sh
venv=${CHRYSALIS_ENGINE_VENV:-target/enginevenv}
cargo build --release --locked -q -p chrysalis-host-tools -p chrysalis-agent
chrysalis=target/release/chrysalis
work=$(mktemp -d)
agent_pid=""
rogue_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$rogue_pid" ] && kill "$rogue_pid" 2>/dev/null && wait "$rogue_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
engine_port=$(free_port)
agent_port=$(free_port)
rogue_port=$(free_port)
metrics_port=$(free_port)
release=chrysalis-0.2.0-cpu
configuration=snp-2cpu-EPYC-v4

echo "=== agent: chrysalis-agent --provider sim (SIMULATED TEE) playing $release / $configuration, in front of llama.cpp on 127.0.0.1:$engine_port"
target/release/chrysalis-agent --provider sim \
  --sim-tee snp --sim-release "$release" --sim-configuration "$configuration" \
  --listen "127.0.0.1:$agent_port" --upstream "http://127.0.0.1:$engine_port" \
  --metrics-listen "127.0.0.1:$metrics_port" \
  --engine-cmd "exec '$venv/bin/python' -m llama_cpp.server --model '$venv/tiny.gguf' --n_ctx 256 --host 127.0.0.1 --port $engine_port" \
  >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 240); do
  grep -q ready "$work/agent.log" && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; echo "demo: the agent exited" >&2; exit 1; }
  sleep 0.5
done
grep -q ready "$work/agent.log" || { cat "$work/agent.log"; echo "demo: the agent did not become ready in 120 s" >&2; exit 1; }
grep ready "$work/agent.log" | head -1
url="https://127.0.0.1:$agent_port"

echo
echo "=== client: chrysalis verify $url (default policy: must be REJECTED, simulated)"
set +e
"$chrysalis" verify "$url"
code=$?
set -e
echo "(exit code $code)"
[ "$code" = 4 ] || { echo "expected exit 4 (rejected), got $code" >&2; exit 1; }

echo
echo "=== client: chrysalis verify $url --allow-sim (ACCEPTED, loudly SIMULATED, named as the published configuration; fresh evidence)"
"$chrysalis" verify "$url" --allow-sim | tee "$work/verify.txt"
grep -q "node:     $release / $configuration" "$work/verify.txt" || { echo "demo: the node was not named $release / $configuration" >&2; exit 1; }

echo
echo "=== a second simulated node with the simulator's own registers (no published release), same engine"
target/release/chrysalis-agent --provider sim --sim-tee snp \
  --listen "127.0.0.1:$rogue_port" --upstream "http://127.0.0.1:$engine_port" \
  >"$work/rogue.log" 2>&1 &
rogue_pid=$!
for _ in $(seq 1 60); do
  grep -q "certificate created" "$work/rogue.log" && break
  sleep 0.5
done
echo "=== client: chrysalis verify https://127.0.0.1:$rogue_port --allow-sim (REJECTED: not a published release)"
set +e
"$chrysalis" verify "https://127.0.0.1:$rogue_port" --allow-sim
code=$?
set -e
echo "(exit code $code)"
[ "$code" = 4 ] || { echo "expected exit 4 (rejected: no published release), got $code" >&2; exit 1; }
kill "$rogue_pid"; wait "$rogue_pid" 2>/dev/null || true; rogue_pid=""

echo
echo "=== client: streamed chat through the verified connection"
"$chrysalis" chat "$url" --allow-sim --max-tokens 24 -m "Hello, who are you?"
echo "(the tiny model has random weights: its text is nonsense by design; the tokens streamed one by one)"
echo

echo
echo "=== metrics (loopback-only listener): request counters"
python3 - "$metrics_port" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(("chrysalis_agent_requests_total", "chrysalis_agent_tokens_total")):
        print(line)
PY
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""

nonce=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for tee in tdx snp; do
  echo
  echo "=== $tee: generate simulated evidence bound to report_data $nonce"
  "$chrysalis" attest generate --provider sim --tee "$tee" --report-data "$nonce" --out "$work/$tee.bin"
  collateral=$(ls "$work/$tee.bin".*)
  echo "=== $tee: verify with the default policy (must be REJECTED: simulated)"
  set +e
  "$chrysalis" attest verify "$work/$tee.bin" --collateral "$collateral" --report-data "$nonce"
  code=$?
  set -e
  echo "(exit code $code)"
  [ "$code" = 4 ] || { echo "expected exit 4 (rejected), got $code" >&2; exit 1; }
  echo "=== $tee: verify with --allow-sim (ACCEPTED, loudly marked SIMULATED)"
  "$chrysalis" attest verify "$work/$tee.bin" --collateral "$collateral" --report-data "$nonce" --allow-sim
done
echo
echo "demo: OK"
