#!/usr/bin/env bash
# benches/hostile.sh: a legitimate client beside hostile ones, gateway and nginx in one run,
# everything on 127.0.0.1.
#
#   benches/hostile.sh      # ≈ 6 minutes; writes benches/results/hostile-<date>-<shortsha>.md
#
# For each kind of hostile client (loadgen hostile: silent, slowloris, slow-body, slow-reader,
# idle-keepalive, idle-h2), HOSTILE connections (10 000 by default) misbehave and reconnect
# when closed, while `loadgen run --mode cached` (32 keep-alive connections) measures the
# legitimate requests/s and p99; the proxy's RSS and open descriptors are sampled during the
# run and again after the hostile clients stop. A quiet run (no hostile clients) of each proxy
# comes first, in the same invocation. Both proxies keep their default limits and timeouts:
# the gateway as shipped (max_connections 1024, header 30 s, keep-alive 120 s, body 60 s,
# send 60 s; h2c on for the idle-h2 kind only), nginx with its compiled-in defaults
# (client_header_timeout 60 s, keepalive_timeout 75 s, client_body_timeout 60 s, send_timeout
# 60 s) and worker_connections 1024 to match the gateway's cap (nginx's own default is 512);
# for idle-h2, nginx 1.22 needs a listener of its own for h2c (`listen … http2`; the hostile
# clients go there, the legitimate one to the HTTP/1 listener of the same worker), the gateway
# sniffs (a second gateway process with h2c on takes both).
#
# Knobs: HOSTILE [10000], DUR [15s] per measured run, KINDS [all six], PROXY_CPU [0], LOAD_CPU [1],
# BASE_PORT [19080], CARGO_TARGET_DIR [target].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HOSTILE=${HOSTILE:-10000}
DUR=${DUR:-15s}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-19080}
UP=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
GW_PORT=$((BASE_PORT + 2))
GW_H2C_PORT=$((BASE_PORT + 3))
NGINX_H2C_PORT=$((BASE_PORT + 4)) # the same nginx worker, HTTP/2 with prior knowledge
# KINDS: which hostile kinds to run (all by default).
read -r -a KINDS <<<"${KINDS:-silent slowloris slow-body slow-reader idle-keepalive idle-h2}"

WORK=$(mktemp -d /tmp/gw-hostile.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n)"

bash scripts/install-nginx.sh >&2
NGINX=/usr/sbin/nginx
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway benches || echo ' + uncommitted changes')"
log "building release binaries at $COMMIT"
cargo build --release -q -p gateway -p keys-tool -p loadgen
BIN=$CARGO_TARGET_DIR/release
ON_LOAD=(taskset -c "$LOAD_CPU")

mkdir -p "$WORK/keys" "$WORK/nginx"
bench_token "$BIN" "$WORK" # sets K and TOKEN

"${ON_LOAD[@]}" "$BIN/loadgen" serve --http "127.0.0.1:$UP" --max-time 30m &
PIDS+=($!)

cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 30000;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log crit;
events { worker_connections 1024; }
http {
    access_log off;
$(nginx_temp_paths "$WORK/nginx")
    upstream up { server 127.0.0.1:$UP; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        listen 127.0.0.1:$NGINX_H2C_PORT http2 backlog=4096;
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

start_gateway() { # port h2c
    gateway_toml "$1" "$K" "\"29786\" = $UP" "h2c = $2" >"$WORK/gateway-$1.toml"
    taskset -c "$PROXY_CPU" "$BIN/gateway" --config "$WORK/gateway-$1.toml" \
        >"$WORK/gateway-$1.log" 2>&1 &
    PIDS+=($!)
}
start_gateway "$GW_PORT" false
GW_PID=$!
start_gateway "$GW_H2C_PORT" true
GW_H2C_PID=$!
for p in "$UP" "$NGINX_PORT" "$NGINX_H2C_PORT" "$GW_PORT" "$GW_H2C_PORT"; do
    wait_port "$p"
done

fds() { local t=0; for p in $(proc_pids "$1"); do t=$((t + $(ls "/proc/$p/fd" | wc -l))); done; echo "$t"; }
# Samples the largest RSS and descriptor count of PID into FILE until it is killed.
sampler() { # pid file
    local max_rss=0 max_fds=0 r f
    while true; do
        r=$(rss_kb "$1"); f=$(fds "$1")
        [ "$r" -gt "$max_rss" ] && max_rss=$r
        [ "$f" -gt "$max_fds" ] && max_fds=$f
        echo "$max_rss $max_fds" >"$2"
        sleep 0.5
    done
}

# measure NAME PROXY PORT PID [KIND [HOSTILE_PORT]]: one legitimate run, hostile clients
# beside it if KIND (on HOSTILE_PORT, default PORT).
RESULTS=$WORK/results.tsv
measure() {
    local name=$1 proxy=$2 port=$3 pid=$4 kind=${5:-} hport=${6:-$3}
    local path=/spawner/bench hostile_pid=""
    local rss0 fds0
    rss0=$(rss_kb "$pid"); fds0=$(fds "$pid")
    if [ -n "$kind" ]; then
        local hpath=/spawner/bench
        [ "$kind" = slow-reader ] && hpath="/spawner/big?size=1073741824"
        "${ON_LOAD[@]}" "$BIN/loadgen" hostile --target "127.0.0.1:$hport" --kind "$kind" \
            --connections "$HOSTILE" --hold "$(( ${DUR%s} + 8 ))s" --token "$TOKEN" \
            --path "$hpath" --json >"$WORK/$name-$proxy-hostile.json" &
        hostile_pid=$!
        sleep 5 # the hostile connections ramp up first
    fi
    sampler "$pid" "$WORK/$name-$proxy-peak" &
    local sampler_pid=$!
    "${ON_LOAD[@]}" "$BIN/loadgen" run --quiet --mode cached --connections 32 --duration "$DUR" \
        --url "http://127.0.0.1:$port" --path "$path" --token "$TOKEN" \
        --json "$WORK/$name-$proxy.json" || true
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    [ -n "$hostile_pid" ] && { wait "$hostile_pid" || true; }
    sleep 3
    local rss1 fds1 peak
    rss1=$(rss_kb "$pid"); fds1=$(fds "$pid")
    peak=$(cat "$WORK/$name-$proxy-peak")
    local rps p99 errors
    rps=$(jq -r '.requests_per_s | floor' "$WORK/$name-$proxy.json" 2>/dev/null || echo 0)
    p99=$(jq -r '.latency.p99_us' "$WORK/$name-$proxy.json" 2>/dev/null || echo 0)
    errors=$(jq -r '.errors' "$WORK/$name-$proxy.json" 2>/dev/null || echo "?")
    local closed="-"
    [ -n "$kind" ] && closed=$(jq -r '"\(.opened) opened, \(.closed_by_server) closed by the proxy"' \
        "$WORK/$name-$proxy-hostile.json" 2>/dev/null || echo "?")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$proxy" "$rps" "$p99" "$errors" \
        "$rss0 $fds0" "$peak" "$rss1 $fds1" "$closed" "$kind" >>"$RESULTS"
    log "$name $proxy: $rps req/s p99 ${p99}µs errors $errors; RSS/fds before $rss0/$fds0 peak $peak after $rss1/$fds1; hostile: $closed"
}

: >"$RESULTS"
measure quiet nginx "$NGINX_PORT" "$NGINX_PID"
measure quiet gateway "$GW_PORT" "$GW_PID"
for kind in "${KINDS[@]}"; do
    if [ "$kind" = idle-h2 ]; then
        measure "$kind" nginx "$NGINX_PORT" "$NGINX_PID" "$kind" "$NGINX_H2C_PORT"
        measure quiet-h2c gateway "$GW_H2C_PORT" "$GW_H2C_PID"
        measure "$kind" gateway "$GW_H2C_PORT" "$GW_H2C_PID" "$kind"
    else
        measure "$kind" nginx "$NGINX_PORT" "$NGINX_PID" "$kind"
        measure "$kind" gateway "$GW_PORT" "$GW_PID" "$kind"
    fi
done
measure quiet-again nginx "$NGINX_PORT" "$NGINX_PID"
measure quiet-again gateway "$GW_PORT" "$GW_PID"

OUT=benches/results/hostile-$(date +%F)-$(git rev-parse --short HEAD).md
python3 - "$RESULTS" "$COMMIT" "$HOSTILE" "$DUR" >"$OUT" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
commit, hostile, dur = sys.argv[2:5]
quiet = {(r[0], r[1]): (float(r[2]), float(r[3])) for r in rows if r[0].startswith("quiet")}
def baseline(name, proxy):
    # The h2c gateway is its own process: its quiet run is its baseline.
    key = ("quiet-h2c", proxy) if (name, proxy) in (("idle-h2", "gateway"), ("quiet-h2c", "gateway")) else ("quiet", proxy)
    return quiet.get(key, (0, 0))
print(f"# Hostile clients beside a legitimate one — {commit}\n")
print(f"{hostile} hostile connections of one kind at a time (reconnecting when closed), "
      f"a legitimate cached-GET client (32 keep-alive connections, {dur}) beside them; "
      "proxy pinned to one core, load generators on the other. Ratios are against the same "
      "proxy's quiet run in this invocation. RSS in MiB, peak during the run; fds = open "
      "descriptors.\n")
print("| run | proxy | legit req/s | × quiet | p99 µs | × quiet | errors | RSS/fds before | peak | after | hostile clients |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    name, proxy, rps, p99, errors, before, peak, after, closed, _ = r
    q = baseline(name, proxy)
    mib = lambda pair: "{:.1f} / {}".format(int(pair.split()[0]) / 1024, pair.split()[1])
    rr = f"{float(rps) / q[0]:.2f}" if q[0] else "-"
    pr = f"{float(p99) / q[1]:.2f}" if q[1] else "-"
    print(f"| {name} | {proxy} | {rps} | {rr} | {p99} | {pr} | {errors} | {mib(before)} | {mib(peak)} | {mib(after)} | {closed} |")
PY
log "wrote $OUT"
cat "$OUT"
