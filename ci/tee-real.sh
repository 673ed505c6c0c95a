#!/usr/bin/env bash
# First contact with a real TDX or SEV-SNP host, in one command: launch a
# published configuration, fetch the node's evidence and event logs,
# compare every register with measurements.json, and on a mismatch show
# where our model departs from the machine (TDX: the first diverging event
# of the firmware log, `chrysalis measure replay`; SNP: which launch input
# the digest fits). Not part of CI: it needs the hardware. Called as
#
#   bash ci/tdx-real.sh [OPTIONS]      bash ci/snp-real.sh [OPTIONS]
#
# Options (all optional):
#   --release DIR   a release directory (chrysalis image build / a published
#                   one) [default: build one: chrysalis image build --profile
#                   cpu|gpu --out OUT/release, firmware included]
#   --vm V:MEM[:G]  the VM shape; must be one measurements.json measured
#                   [default 2:2G:0, or 8:64G:1 with --gpu]
#   --gpu PCI       pass this GPU through (repeatable; the gpu profile)
#   --config FILE   the host configuration (JSON) [default: {}]
#   --model DIR     a model volume (chrysalis image model)
#   --port N        host port for the agent [default 18443]
#   --out DIR       where evidence, logs and the report go [default
#                   target/tee-real-TEE-DATE]
#   --keep          leave the VM running at the end
#   --dry-run       print every command instead of running it (works here,
#                   without the hardware or a release)
# Exit: 0 every register matches; 3 a register differs (the report says
# which and why); 1 the run could not get that far (host, build, launch).
# Everything it saw is under OUT: attestation.json (as served), evidence.bin,
# evidence.json (decoded), the event logs the node served, compare.txt,
# replay.txt, console.log, verify.json. Send OUT to the developers.
set -euo pipefail
tee_kind=${1:?usage: tee-real.sh tdx|snp [OPTIONS]}
shift
case "$tee_kind" in tdx | snp) ;; *) echo "tee-real.sh: tdx or snp, not $tee_kind" >&2; exit 1 ;; esac
cd "$(dirname "$0")/.."
root=$(pwd)

release='' vm='' config='' model='' port=18443 out='' keep='' dry=''
gpus=()
while [ $# -gt 0 ]; do
    case "$1" in
    --release) release=$2; shift 2 ;;
    --vm) vm=$2; shift 2 ;;
    --gpu) gpus+=("$2"); shift 2 ;;
    --config) config=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --dry-run) dry=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tee-real.sh: unknown option $1 (--help)" >&2; exit 1 ;;
    esac
done
[ -n "$vm" ] || { if [ ${#gpus[@]} -gt 0 ]; then vm=8:64G:${#gpus[@]}; else vm=2:2G:0; fi; }
IFS=: read -r vcpus memory ngpus <<< "$vm"
ngpus=${ngpus:-0}
if [ "$ngpus" != "${#gpus[@]}" ]; then
    echo "tee-real.sh: --vm $vm names $ngpus GPU(s) but ${#gpus[@]} --gpu given" >&2; exit 1
fi
profile=cpu; [ "$ngpus" = 0 ] || profile=gpu
out=${out:-$root/target/tee-real-$tee_kind-$(date -u +%Y%m%dT%H%M%SZ)}
chrysalis=${CHRYSALIS:-$root/target/release/chrysalis}

# run CMD...: runs it, or prints it (shell-quoted) under --dry-run.
run() {
    if [ -n "$dry" ]; then printf '+'; printf ' %q' "$@"; printf '\n'; return 0; fi
    "$@"
}
say() { printf '\n=== %s\n' "$*"; }

say "$tee_kind on this host: ${vcpus} vCPUs, ${memory}, ${ngpus} GPU(s); profile $profile; output $out"
run mkdir -p "$out"
if [ -z "$dry" ] || [ ! -x "$chrysalis" ]; then
    run cargo build --release --locked -p chrysalis-host-tools --bin chrysalis
fi

say "host: chrysalis host check --tee $tee_kind"
run "$chrysalis" host check --tee "$tee_kind" ${release:+--image "$release"} || {
    echo "the host is not ready for $tee_kind (see above)"; exit 1; }

if [ -z "$release" ]; then
    release=$out/release
    say "release: chrysalis image build --profile $profile (firmware built too when not cached)"
    run "$chrysalis" image build --profile "$profile" --out "$release" --vm "$vm"
fi
if [ -z "$config" ]; then
    config=$out/host-config.json
    if [ -n "$dry" ]; then echo "+ printf '{}' > $config"; else printf '{}' > "$config"; fi
fi

# The configuration measurements.json must hold for this shape.
# Memory in MiB, as measurements.json records it (N, NM, NG, NT; binary units).
mib=$(python3 - "$memory" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+)([MGT]?)", sys.argv[1].upper())
if not m:
    sys.exit(f"--vm memory {sys.argv[1]!r}: expected MiB or a number with M/G/T")
print(int(m.group(1)) * {"": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2)])
PY
)
case "$tee_kind" in
tdx) conf_name=tdx-${vcpus}cpu-${mib}m-${ngpus}gpu ;;
snp) conf_name="snp-${vcpus}cpu-(vCPU type)" ;;
esac
say "configuration: $conf_name of $release/measurements.json"
pick() { # prints the configuration as JSON, fails when not published
    python3 - "$release/measurements.json" "$tee_kind" "$vcpus" "$mib" "$ngpus" <<'PY'
import json, sys
path, tee, vcpus, mib, gpus = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
m = json.load(open(path))
for c in m["configurations"]:
    vm = c["vm"]
    if c.get(tee) and (vm["vcpus"], vm["memory_mib"], vm["gpus"]) == (vcpus, mib, gpus):
        print(json.dumps(c))
        sys.exit(0)
names = [c["name"] for c in m["configurations"] if c.get(tee)]
sys.exit(f"{path}: no {tee} configuration for {vcpus} vCPUs, {mib} MiB, {gpus} GPU(s); published: {names}")
PY
}
if [ -n "$dry" ]; then
    echo "+ (python3) select the $tee_kind configuration for $vcpus/$mib MiB/$ngpus GPU(s) from $release/measurements.json > $out/expected.json"
    # Reading only: a dry run with a release at hand already tells whether
    # the shape is published.
    if [ -f "$release/measurements.json" ]; then pick; fi
else
    pick > "$out/expected.json"
    cat "$out/expected.json"; echo
fi

say "launch: chrysalis launch --tee $tee_kind (console $out/console.log)"
launch=("$chrysalis" launch --tee "$tee_kind" --vcpus "$vcpus" --memory "$memory" --forward "$port"
        --config "$config" --console-log "$out/console.log")
for g in "${gpus[@]}"; do launch+=(--gpu "$g"); done
[ -z "$model" ] || launch+=(--model "$model")
launch+=("$release")
run "${launch[@]}" --print
qemu_pid=
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$qemu_pid" ] && [ -z "$keep" ]; then kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
if [ -n "$dry" ]; then
    printf '+'; printf ' %q' "${launch[@]}"; printf ' &\n'
    echo "+ wait (up to 900 s) for 'chrysalis-agent ... ready' in $out/console.log"
else
    rm -f "$out/console.log"
    "${launch[@]}" &
    qemu_pid=$!
    i=0
    until grep -Eq 'chrysalis-agent.*ready|ready.*chrysalis-agent' "$out/console.log" 2>/dev/null; do
        if ! kill -0 "$qemu_pid" 2>/dev/null; then
            echo "the VM stopped before the agent was ready; console:"; tail -60 "$out/console.log" 2>/dev/null; exit 1
        fi
        if [ "$i" -ge 900 ]; then echo "no ready agent after 900 s; console:"; tail -60 "$out/console.log"; exit 1; fi
        sleep 1; i=$((i + 1))
    done
    echo "agent ready after ${i}s"
fi

say "evidence: GET /attestation?nonce=… (fresh, bound to our nonce), and chrysalis verify with the release's policy"
nonce=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
run curl -fsSk --max-time 60 -o "$out/attestation.json" "https://127.0.0.1:$port/attestation?nonce=$nonce"
run "$chrysalis" policy from-measurements "$release/measurements.json" --out "$out/policy.toml"
# The full client check; its verdict is reported, the comparison below says why.
if [ -n "$dry" ]; then
    echo "+ $chrysalis verify https://127.0.0.1:$port --policy $out/policy.toml --nonce --json > $out/verify.json"
else
    "$chrysalis" verify "https://127.0.0.1:$port" --policy "$out/policy.toml" --nonce --json > "$out/verify.json" \
        && echo "chrysalis verify: ACCEPTED under the release's policy" \
        || echo "chrysalis verify: rejected (exit $?; $out/verify.json)"
fi
# Split what the node served: the evidence, and every event log it carries
# (firmware log, runtime log; names as the agent serves them).
split() {
    python3 - "$out" <<'PY'
import base64, binascii, json, os, sys
out = sys.argv[1]
a = json.load(open(os.path.join(out, "attestation.json")))
open(os.path.join(out, "evidence.bin"), "wb").write(binascii.unhexlify(a["evidence"]))
found = []
for key, value in a.items():
    if "log" not in key.lower() or value is None:
        continue
    path = os.path.join(out, key)
    if isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error:
            data = value.encode()
        open(path + ".bin", "wb").write(data)
        found.append(path + ".bin")
    else:
        json.dump(value, open(path + ".json", "w"), indent=2)
        found.append(path + ".json")
print("\n".join(found) if found else "(the node served no event log)")
PY
}
if [ -n "$dry" ]; then
    echo "+ (python3) $out/attestation.json -> $out/evidence.bin and one file per served event log (*log*)"
else
    split | tee "$out/logs.txt"
fi
if [ -n "$dry" ]; then
    echo "+ $chrysalis attest show $out/evidence.bin --json > $out/evidence.json"
else
    "$chrysalis" attest show "$out/evidence.bin" --json > "$out/evidence.json"
fi

say "compare: every register of the node with measurements.json"
compare() {
    python3 - "$out/expected.json" "$out/evidence.json" "$tee_kind" "$config" <<'PY'
import hashlib, json, sys
exp = json.load(open(sys.argv[1]))
ev = json.load(open(sys.argv[2]))["evidence"]
tee, config = sys.argv[3], sys.argv[4]
rows, bad = [], []
def row(name, want, got):
    if want is None:
        status = "NOT PREDICTED"
    elif want.lower() == got.lower():
        status = "match"
    else:
        status = "DIFFERS"
        bad.append(name)
    rows.append((name, want or "-", got, status))
if tee == "tdx":
    body, want = ev["body"], exp["tdx"]
    row("MRTD", want.get("mrtd"), body["mrtd"])
    for i in range(4):
        row(f"RTMR{i}", want.get(f"rtmr{i}"), body["rtmr"][i])
else:
    want = exp["snp"]
    row("MEASUREMENT", want.get("measurement"), ev["measurement"])
    # HOST_DATA: SHA-256 of the canonical host configuration (launch --config).
    canon = json.dumps(json.load(open(config)), sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False).encode()
    row("HOST_DATA", want.get("host_data") or hashlib.sha256(canon).hexdigest(), ev["host_data"])
for name, w, g, s in rows:
    print(f"{name:<12} {s:<14} expected {w}\n{'':<27} node     {g}")
if bad:
    print("DIFFERS: " + ", ".join(bad))
    sys.exit(3)
print("every predicted register matches")
PY
}
rc=0
if [ -n "$dry" ]; then
    echo "+ (python3) compare $out/evidence.json with $out/expected.json > $out/compare.txt (exit 3 on a difference)"
else
    compare | tee "$out/compare.txt" || rc=${PIPESTATUS[0]}
fi

if [ "$rc" = 3 ] || [ -n "$dry" ]; then
    say "where the model departs from this machine"
    case "$tee_kind" in
    tdx)
        # The firmware's log (CCEL) replayed against the quote and against
        # the events our model computes from the launch inputs: the first
        # event that differs names the input (ACPI table, variable, kernel,
        # command line, initrd, runtime event).
        replay=("$chrysalis" measure replay --quote "$out/evidence.bin"
                --firmware "$release/firmware-tdx.fd" --kernel "$release/vmlinuz"
                --initrd "$release/initrd" --cmdline "$(cat "$release/cmdline" 2>/dev/null || echo '<release cmdline>')"
                --vcpus "$vcpus" --memory "$memory" --gpus "$ngpus"
                --qemu-version "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vm"].get("vmm_version") or "9.2.0")' "$out/expected.json" 2>/dev/null || echo 9.2.0)")
        logs=()
        if [ -z "$dry" ]; then
            while IFS= read -r l; do [ -f "$l" ] && logs+=("$l"); done < "$out/logs.txt"
        else
            logs=("$out/<each event log the node served>")
        fi
        if [ ${#logs[@]} -eq 0 ]; then
            echo "the node served no event log: only the register values above can be compared"
        fi
        for l in "${logs[@]}"; do
            echo "--- replay $l"
            if [ -n "$dry" ]; then
                printf '+'; printf ' %q' "${replay[@]}" "$l"; printf ' > %q\n' "$out/replay.txt"
            else
                "${replay[@]}" "$l" 2>&1 | tee -a "$out/replay.txt" || true
            fi
        done
        # The agent's RTMR3 runtime events (runtime_events of the answer),
        # each against the release's prediction: config for {}, on a gpu
        # release the gpu event for this GPU count and the image's driver
        # (rtmr3_events.gpu_driver), boot-done; RTMR3 against the quote.
        gpu_driver=$(python3 -c 'import json,sys; print((json.load(open(sys.argv[1])).get("rtmr3_events") or {}).get("gpu_driver") or "")' "$release/measurements.json" 2>/dev/null || true)
        runtime=("$chrysalis" measure replay --runtime-log "$out/attestation.json" --quote "$out/evidence.bin")
        if [ -n "$gpu_driver" ]; then runtime+=(--gpus "$ngpus" --gpu-driver "$gpu_driver"); fi
        echo "--- replay the runtime events (RTMR3)"
        if [ -n "$dry" ]; then
            printf '+'; printf ' %q' "${runtime[@]}"; printf ' >> %q\n' "$out/replay.txt"
        else
            "${runtime[@]}" 2>&1 | tee -a "$out/replay.txt" || true
        fi
        ;;
    snp)
        # SNP has no event log: the digest covers firmware, vCPU count and
        # type, guest features and the kernel/initrd/cmdline hashes. Try the
        # usual vCPU types to name the input that differs.
        explained=
        for t in EPYC-v4 EPYC EPYC-Milan EPYC-Genoa EPYC-Turin; do
            m=("$chrysalis" measure --tee snp --firmware "$release/firmware-snp.fd" --kernel "$release/vmlinuz"
               --initrd "$release/initrd" --cmdline "$(cat "$release/cmdline" 2>/dev/null || echo '<release cmdline>')"
               --vcpus "$vcpus" --memory "$memory" --vcpu-type "$t" --json)
            if [ -n "$dry" ]; then printf '+'; printf ' %q' "${m[@]}"; printf '\n'; continue; fi
            d=$("${m[@]}" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["snp"]["measurement"])' || true)
            node=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["evidence"]["measurement"])' "$out/evidence.json")
            if [ -n "$d" ] && [ "$d" = "$node" ]; then
                explained=$t
                echo "the node's digest is the one computed for vCPU type $t (measurements.json assumed $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snp"].get("vcpu_type"))' "$out/expected.json"))" | tee -a "$out/replay.txt"
            fi
        done
        if [ -z "$explained" ] && [ -z "$dry" ]; then
            echo "no vCPU type explains it: the firmware, kernel, initrd or command line the host used differ from the release's (check SHA256SUMS, launch --print), or the guest features / VMM model do" | tee -a "$out/replay.txt"
        fi
        ;;
    esac
fi

say "done: $out (exit $rc)"
if [ -n "$keep" ] && [ -n "$qemu_pid" ]; then echo "the VM keeps running (pid $qemu_pid); stop it with: kill $qemu_pid"; fi
exit "$rc"
