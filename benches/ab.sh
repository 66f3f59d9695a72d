#!/usr/bin/env bash
# benches/ab.sh: the cached-token small GET through two gateway builds and plain nginx, in
# alternating rounds of one invocation (same upstream, same pinning), for before/after figures.
#
#   benches/ab.sh BASELINE_BIN [CANDIDATE_BIN]   # ≈ 1 minute per round
#
# CANDIDATE_BIN defaults to this checkout's release build (built first). Writes
# benches/results/ab-<date>-<shortsha>.md: requests/s, p99, requests per proxy CPU-second and
# user / kernel microseconds per request for each, and the ratios candidate / baseline and
# each / nginx. Knobs: ROUNDS [3], DUR [8s], CONNS [32], PROXY_CPU [0], LOAD_CPU [1],
# BASE_PORT [19180], CARGO_TARGET_DIR [target], LABEL_A [baseline], LABEL_B [candidate],
# LOADGEN_ARGS [] (extra `loadgen run` arguments, e.g. `--close` for a connection per request).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BASELINE=${1:?usage: benches/ab.sh BASELINE_BIN [CANDIDATE_BIN]}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8s}
CONNS=${CONNS:-32}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-19180}
LABEL_A=${LABEL_A:-baseline}
LABEL_B=${LABEL_B:-candidate}
read -r -a EXTRA <<<"${LOADGEN_ARGS:-}"
UP=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
A_PORT=$((BASE_PORT + 2))
B_PORT=$((BASE_PORT + 3))

WORK=$(mktemp -d /tmp/gw-ab.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bash scripts/install-nginx.sh >&2
NGINX=/usr/sbin/nginx
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway benches || echo ' + uncommitted changes')"
cargo build --release -q -p gateway -p keys-tool -p loadgen
BIN=$CARGO_TARGET_DIR/release
CANDIDATE=${2:-$BIN/gateway}
ON_LOAD=(taskset -c "$LOAD_CPU")

bench_token "$BIN" "$WORK" # sets K and TOKEN

"${ON_LOAD[@]}" "$BIN/loadgen" serve --http "127.0.0.1:$UP" --max-time 30m &
PIDS+=($!)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$WORK/nginx")
    keepalive_requests 1000000;
    upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

start_gateway() { # binary port
    gateway_toml "$2" "$K" "\"29786\" = $UP" >"$WORK/gateway-$2.toml"
    taskset -c "$PROXY_CPU" "$1" --config "$WORK/gateway-$2.toml" >"$WORK/gateway-$2.log" 2>&1 &
    PIDS+=($!)
}
start_gateway "$BASELINE" "$A_PORT"
A_PID=$!
start_gateway "$CANDIDATE" "$B_PORT"
B_PID=$!
for p in "$UP" "$NGINX_PORT" "$A_PORT" "$B_PORT"; do wait_port "$p"; done

# CPU time of one process each (nginx: its worker).
RESULTS=$WORK/results.tsv
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    for which in nginx "$LABEL_A" "$LABEL_B"; do
        case $which in
        nginx) port=$NGINX_PORT pid=$(ps -o pid= --ppid "$NGINX_PID" | head -n 1 | tr -d ' ') ;;
        "$LABEL_A") port=$A_PORT pid=$A_PID ;;
        *) port=$B_PORT pid=$B_PID ;;
        esac
        read -r u0 s0 < <(cpu_ticks "$pid")
        "${ON_LOAD[@]}" "$BIN/loadgen" run --quiet --mode cached --connections "$CONNS" \
            --duration "$DUR" --url "http://127.0.0.1:$port" --path /spawner/bench \
            --token "$TOKEN" --json "$WORK/$which-$round.json" "${EXTRA[@]}"
        read -r u1 s1 < <(cpu_ticks "$pid")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$which" "$round" \
            "$(jq -r .ok "$WORK/$which-$round.json")" \
            "$(jq -r .requests_per_s "$WORK/$which-$round.json")" \
            "$(jq -r .latency.p99_us "$WORK/$which-$round.json")" \
            $((u1 - u0)) $((s1 - s0)) >>"$RESULTS"
        log "round $round $which: $(tail -n 1 "$RESULTS" | cut -f3-)"
    done
done

OUT=benches/results/ab-$(date +%F)-$(git rev-parse --short HEAD).md
python3 - "$RESULTS" "$(getconf CLK_TCK)" "$COMMIT" "$BASELINE" "$CANDIDATE" "$LABEL_A" "$LABEL_B" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$DUR" "$CONNS" "${LOADGEN_ARGS:-}" >"$OUT" <<'PY'
import sys
from collections import defaultdict
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
hz = float(sys.argv[2]); commit, base, cand, la, lb, load, dur, conns, extra = sys.argv[3:12]
acc = defaultdict(lambda: defaultdict(list))
for name, _, ok, rps, p99, ut, st in rows:
    ok = float(ok)
    a = acc[name]
    a["rps"].append(float(rps)); a["p99"].append(float(p99))
    a["per_cpu"].append(ok / ((float(ut) + float(st)) / hz))
    a["user_us"].append(float(ut) / hz / ok * 1e6); a["sys_us"].append(float(st) / hz / ok * 1e6)
mean = lambda v: sum(v) / len(v)
def cell(name, key, fmt):
    v = acc[name][key]
    return f"{fmt.format(mean(v))} ({' / '.join(fmt.format(x) for x in v)})"
print(f"# A/B: cached-token GET, {lb} vs {la} — {commit}\n")
how = f"`loadgen run {extra}`, " if extra else ""
print(f"`benches/ab.sh`, rounds alternating nginx, {la}, {lb}; {how}{conns} connections, "
      f"{dur} per run; each proxy on one core (one nginx worker, one gateway worker thread), "
      f"load generator and upstream on the other. Load average at the end: {load}.\n")
print(f"- {la}: `{base}`\n- {lb}: `{cand}`\n")
metrics = [("requests/s", "rps", "{:,.0f}", True), ("p99 µs", "p99", "{:,.0f}", False),
           ("requests per proxy CPU-second", "per_cpu", "{:,.0f}", True),
           ("user µs per request", "user_us", "{:.2f}", False),
           ("kernel µs per request", "sys_us", "{:.2f}", False)]
print(f"| metric | nginx | {la} | {lb} | {lb} / {la} | {la} / nginx | {lb} / nginx |")
print("|---|---|---|---|---|---|---|")
for label, key, fmt, _ in metrics:
    n, a, b = (mean(acc[x][key]) for x in ("nginx", la, lb))
    print(f"| {label} | {cell('nginx', key, fmt)} | {cell(la, key, fmt)} | {cell(lb, key, fmt)} "
          f"| **{b / a:.2f}×** | {a / n:.2f}× | {b / n:.2f}× |")
PY
log "wrote $OUT"
cat "$OUT"
