#!/usr/bin/env bash
# benches/ab.sh: the cached-token small GET through two (or more) gateway builds and plain
# nginx, in alternating rounds of one invocation (same upstream, same pinning), for
# before/after figures.
#
#   benches/ab.sh BASELINE_BIN [CANDIDATE_BIN ...]   # ≈ 1 minute per round
#
# With one binary, the candidate is this checkout's release build (built first). Each binary is
# started as `BIN --config FILE` with a gateway configuration. Writes
# benches/results/ab-<date>-<shortsha>.md: requests/s, p99, requests per proxy CPU-second and
# user / kernel microseconds per request for each, and the ratios each / baseline and
# each / nginx. Knobs: ROUNDS [3], DUR [8s], CONNS [32], PROXY_CPU [0], LOAD_CPU [1],
# BASE_PORT [19180], WORKERS [1] (the gateways' worker threads; e.g. WORKERS=2 PROXY_CPU=0,1
# LOAD_CPU=0,1 to share both cores), CARGO_TARGET_DIR [target], LABELS [baseline candidate] (one per binary;
# LABEL_A and LABEL_B name the first two), LOADGEN_ARGS [] (extra `loadgen run` arguments,
# e.g. `--close` for a connection per request), MODE [cached], URL_PATH [/spawner/bench] (e.g.
# MODE=stream CONNS=1 URL_PATH='/filer/bench?size=1073741824' for the download, MODE=websocket
# LOADGEN_ARGS='--msg-size 65536' for WebSocket frames of 64 KiB).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
: "${1:?usage: benches/ab.sh BASELINE_BIN [CANDIDATE_BIN ...]}"
BUILDS=("$@")
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8s}
CONNS=${CONNS:-32}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-19180}
read -r -a LABELS <<<"${LABELS:-${LABEL_A:-baseline} ${LABEL_B:-candidate}}"
read -r -a EXTRA <<<"${LOADGEN_ARGS:-}"
MODE=${MODE:-cached}
URL_PATH=${URL_PATH:-/spawner/bench}
UP=$BASE_PORT
UP_WS=$((BASE_PORT + 20))
NGINX_PORT=$((BASE_PORT + 1))

WORK=$(mktemp -d /tmp/gw-ab.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bash scripts/install-nginx.sh >&2
NGINX=/usr/sbin/nginx
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway benches || echo ' + uncommitted changes')"
cargo build --release -q -p gateway -p keys-tool -p loadgen
BIN=$CARGO_TARGET_DIR/release
[ ${#BUILDS[@]} -eq 1 ] && BUILDS+=("$BIN/gateway")
for i in "${!BUILDS[@]}"; do [ -n "${LABELS[$i]:-}" ] || LABELS[i]="build$i"; done
ON_LOAD=(taskset -c "$LOAD_CPU")

bench_token "$BIN" "$WORK" # sets K and TOKEN

"${ON_LOAD[@]}" "$BIN/loadgen" serve --http "127.0.0.1:$UP" --ws "127.0.0.1:$UP_WS" --max-time 30m &
PIDS+=($!)
nginx_conf "$WORK" "$NGINX_PORT" "$UP" "$UP_WS" 4096 "worker_processes ${WORKERS:-1};" >"$WORK/nginx.conf"
taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

start_gateway() { # binary port
    gateway_toml "$2" "$K" "\"29786\" = $UP, \"29783\" = $UP, \"6081\" = $UP_WS" >"$WORK/gateway-$2.toml"
    taskset -c "$PROXY_CPU" "$1" --config "$WORK/gateway-$2.toml" >"$WORK/gateway-$2.log" 2>&1 &
    PIDS+=($!)
}
declare -A PORT_OF PID_OF
PORT_OF[nginx]=$NGINX_PORT
for i in "${!BUILDS[@]}"; do
    port=$((BASE_PORT + 2 + i))
    start_gateway "${BUILDS[$i]}" "$port"
    PORT_OF[${LABELS[$i]}]=$port PID_OF[${LABELS[$i]}]=$!
done
for p in "$UP" "${PORT_OF[@]}"; do wait_port "$p"; done
# CPU time of one process each (nginx: its workers and master, see lib.sh's proc_pids).
PID_OF[nginx]=$NGINX_PID

RESULTS=$WORK/results.tsv
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    for which in nginx "${LABELS[@]:0:${#BUILDS[@]}}"; do
        port=${PORT_OF[$which]} pid=${PID_OF[$which]}
        read -r u0 s0 < <(cpu_ticks "$pid")
        "${ON_LOAD[@]}" "$BIN/loadgen" run --quiet --mode "$MODE" --connections "$CONNS" \
            --duration "$DUR" --url "http://127.0.0.1:$port" --path "$URL_PATH" \
            --token "$TOKEN" --json "$WORK/$which-$round.json" "${EXTRA[@]}"
        read -r u1 s1 < <(cpu_ticks "$pid")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$which" "$round" \
            "$(jq -r .ok "$WORK/$which-$round.json")" \
            "$(jq -r .requests_per_s "$WORK/$which-$round.json")" \
            "$(jq -r .latency.p99_us "$WORK/$which-$round.json")" \
            $((u1 - u0)) $((s1 - s0)) "$(jq -r .bytes "$WORK/$which-$round.json")" >>"$RESULTS"
        log "round $round $which: $(tail -n 1 "$RESULTS" | cut -f3-)"
    done
done

OUT=benches/results/ab-$(date +%F)-$(git rev-parse --short HEAD).md
BUILD_LIST=""
for i in "${!BUILDS[@]}"; do BUILD_LIST+="${LABELS[$i]}=${BUILDS[$i]}"$'\n'; done
python3 - "$RESULTS" "$(getconf CLK_TCK)" "$COMMIT" "$BUILD_LIST" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$DUR" "$CONNS" "${LOADGEN_ARGS:-}" "$MODE" "$URL_PATH" \
    "${WORKERS:-1}" "$PROXY_CPU" "$LOAD_CPU" >"$OUT" <<'PY'
import sys
from collections import defaultdict
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
hz = float(sys.argv[2])
commit, build_list, load, dur, conns, extra, mode, path, workers, proxy_cpu, load_cpu = sys.argv[3:14]
builds = [line.split("=", 1) for line in build_list.splitlines() if line]
labels = [label for label, _ in builds]
acc = defaultdict(lambda: defaultdict(list))
for name, _, ok, rps, p99, ut, st, nbytes in rows:
    ok = float(ok)
    a = acc[name]
    a["rps"].append(float(rps)); a["p99"].append(float(p99))
    a["per_cpu"].append(ok / ((float(ut) + float(st)) / hz))
    a["mb_per_cpu"].append(float(nbytes) / 1e6 / ((float(ut) + float(st)) / hz))
    per = (lambda t: float(t) / hz / ok * 1e6) if ok else (lambda t: float("nan"))
    a["user_us"].append(per(ut)); a["sys_us"].append(per(st))
mean = lambda v: sum(v) / len(v)
def cell(name, key, fmt):
    v = acc[name][key]
    return f"{fmt.format(mean(v))} ({' / '.join(fmt.format(x) for x in v)})"
first = labels[0]
print(f"# A/B: `{mode} {path}`, {', '.join(labels[1:])} vs {first} — {commit}\n")
how = f"`loadgen run {extra}`, " if extra else ""
print(f"`benches/ab.sh`, rounds alternating nginx, {', '.join(labels)}; {how}{conns} connections, "
      f"{dur} per run; {workers} nginx worker(s) and gateway worker thread(s) on CPU {proxy_cpu}, "
      f"load generator and upstream on CPU {load_cpu}. Load average at the end: {load}.\n")
print("".join(f"- {label}: `{path}`\n" for label, path in builds))
metrics = [("requests/s", "rps", "{:,.0f}", True), ("p99 µs", "p99", "{:,.0f}", False),
           ("requests per proxy CPU-second", "per_cpu", "{:,.0f}", True),
           ("user µs per request", "user_us", "{:.2f}", False),
           ("kernel µs per request", "sys_us", "{:.2f}", False),
           ("MB per proxy CPU-second", "mb_per_cpu", "{:,.0f}", True)]
head = ["metric", "nginx", *labels, *[f"{l} / {first}" for l in labels[1:]],
        *[f"{l} / nginx" for l in labels]]
print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
for label, key, fmt, _ in metrics:
    n = mean(acc["nginx"][key])
    means = {l: mean(acc[l][key]) for l in labels}
    cells = [label, cell("nginx", key, fmt), *[cell(l, key, fmt) for l in labels],
             *[f"**{means[l] / means[first]:.2f}×**" for l in labels[1:]],
             *[f"{means[l] / n:.2f}×" for l in labels]]
    print("| " + " | ".join(cells) + " |")
PY
log "wrote $OUT"
cat "$OUT"
