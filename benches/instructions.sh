#!/usr/bin/env bash
# benches/instructions.sh: user-space instructions per cached-token small GET, counted by
# valgrind's callgrind inside each proxy (gateway builds, plain nginx, plain HAProxy). A count,
# not a time: repeatable to well under 1 % whatever else the machine is doing, so it can price
# levers worth 1–3 % that wall-clock A/B runs on a shared VM cannot resolve.
#
#   benches/instructions.sh [BIN ...]   # ≈ 1 minute per proxy; default: this checkout's build
#
# Each proxy runs alone under callgrind (one worker / thread, on PROXY_CPU); after a warm-up load
# the counters are zeroed, loadgen sends DUR of keep-alive GETs (CONNS connections, LOAD_CPU),
# the counters are dumped, and the instructions are divided by the requests answered; ROUNDS
# times. Under valgrind, AWS-LC sees no SHA extensions and hashes in plain AVX code, which makes
# SHA-256 about 6× the instructions it costs natively: the table gives the count with and without
# `sha256_block_data_order*`. Kernel work (the socket calls) is not counted at all.
# Writes benches/results/instructions-<date>-<sha>.md. Knobs: ROUNDS [2], DUR [4s], CONNS [32],
# PROXY_CPU [0], LOAD_CPU [1], BASE_PORT [19380], LABELS [one per binary], PEERS [nginx haproxy]
# (a subset, or empty), CARGO_TARGET_DIR [target]. Needs valgrind (installed if missing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-2}
DUR=${DUR:-4s}
CONNS=${CONNS:-32}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-19380}
read -r -a PEERS <<<"${PEERS-nginx haproxy}"
UP=$BASE_PORT
PORT=$((BASE_PORT + 1))

WORK=$(mktemp -d /tmp/gw-instr.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
debian_tool valgrind >/dev/null
debian_tool jq >/dev/null
for peer in "${PEERS[@]}"; do
    case $peer in
    nginx) bash scripts/install-nginx.sh >&2 ;;
    haproxy) HAPROXY=$(debian_tool haproxy) ;;
    *) log "unknown peer $peer (nginx, haproxy)"; exit 2 ;;
    esac
done
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway benches || echo ' + uncommitted changes')"
cargo build --release -q -p gateway -p keys-tool -p loadgen
BIN=$CARGO_TARGET_DIR/release
BUILDS=("$@")
[ ${#BUILDS[@]} -gt 0 ] || BUILDS=("$BIN/gateway")
read -r -a LABELS <<<"${LABELS:-}"
for i in "${!BUILDS[@]}"; do [ -n "${LABELS[$i]:-}" ] || LABELS[i]=$(basename "${BUILDS[$i]}"); done

bench_token "$BIN" "$WORK" # sets K and TOKEN
taskset -c "$LOAD_CPU" "$BIN/loadgen" serve --http "127.0.0.1:$UP" --max-time 30m &
PIDS+=($!)
wait_port "$UP"

gateway_toml "$PORT" "$K" "\"29786\" = $UP" >"$WORK/gateway.toml"
# Its WebSocket location points at a closed port: only plain GETs are sent.
nginx_conf "$WORK" "$PORT" "$UP" "$((BASE_PORT + 2))" 4096 "master_process off;" >"$WORK/nginx.conf"
cat >"$WORK/haproxy.cfg" <<EOF
$(haproxy_head)
frontend plain
    bind 127.0.0.1:$PORT
    default_backend up
backend up
    server up 127.0.0.1:$UP
EOF

load() { # seconds json
    taskset -c "$LOAD_CPU" "$BIN/loadgen" run --quiet --mode cached --connections "$CONNS" \
        --duration "$1" --url "http://127.0.0.1:$PORT" --path /spawner/bench --token "$TOKEN" \
        --json "$2"
}
RESULTS=$WORK/results.tsv
: >"$RESULTS"
measure() { # label command...
    local label=$1 pid dump
    shift
    taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg-$label.%p" \
        "$@" >"$WORK/$label.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    load 2s "$WORK/warm.json"
    for round in $(seq "$ROUNDS"); do
        callgrind_control -z "$pid" >/dev/null
        load "$DUR" "$WORK/$label-$round.json"
        callgrind_control -d "$pid" >/dev/null
        dump=$(ls -t "$WORK/cg-$label.$pid".* | head -n 1)
        # Self cost of every function, summed over the threads; SHA-256's block functions apart.
        callgrind_annotate --threshold=100 --inclusive=no "$dump" 2>/dev/null | awk -v label="$label" \
            -v round="$round" -v ok="$(jq -r .ok "$WORK/$label-$round.json")" '
            /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
            /sha256_block_data_order/ { gsub(",", "", $1); sha += $1 }
            END { printf "%s\t%s\t%s\t%s\t%s\n", label, round, ok, total, sha }' >>"$RESULTS"
        log "round $round $label: $(tail -n 1 "$RESULTS" | cut -f3-)"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
for i in "${!BUILDS[@]}"; do measure "${LABELS[$i]}" "${BUILDS[$i]}" --config "$WORK/gateway.toml"; done
for peer in "${PEERS[@]}"; do
    case $peer in
    nginx) measure nginx /usr/sbin/nginx -c "$WORK/nginx.conf" ;;
    haproxy) measure haproxy "$HAPROXY" -db -f "$WORK/haproxy.cfg" ;;
    esac
done

OUT=benches/results/instructions-$(date +%F)-$(git rev-parse --short HEAD).md
{
    echo "# Instructions per cached-token GET — $COMMIT"
    echo
    echo "\`benches/instructions.sh\`: user-space instructions counted by callgrind in each proxy"
    echo "(one worker), $CONNS keep-alive connections for $DUR after a 2 s warm-up, $ROUNDS rounds;"
    echo "the load generator and the upstream are other processes. Without SHA-256: the count"
    echo "less AWS-LC's SHA-256 block functions, which run without SHA extensions under valgrind."
    echo
    for i in "${!BUILDS[@]}"; do echo "- ${LABELS[$i]}: \`${BUILDS[$i]}\`"; done
    echo
    python3 - "$RESULTS" "${LABELS[0]}" <<'PY'
import sys
from collections import defaultdict
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
first = sys.argv[2]
acc = defaultdict(lambda: ([], []))
for label, _, ok, total, sha in rows:
    acc[label][0].append(float(total) / float(ok))
    acc[label][1].append((float(total) - float(sha or 0)) / float(ok))
mean = lambda v: sum(v) / len(v)
base = [mean(v) for v in acc[first]]
print(f"| proxy | instructions per request | without SHA-256 | / {first} | without SHA-256, / {first} |")
print("|---|---|---|---|---|")
for label, (tot, nosha) in acc.items():
    cells = [f"{mean(v):,.0f} ({' / '.join(f'{x:,.0f}' for x in v)})" for v in (tot, nosha)]
    print(f"| {label} | {cells[0]} | {cells[1]} | {mean(tot) / base[0]:.3f}× | {mean(nosha) / base[1]:.3f}× |")
PY
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
