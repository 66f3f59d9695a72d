#!/usr/bin/env bash
# benches/soak.sh: a long run of mixed load against one release gateway, watching its memory
# and file descriptors. Not run in CI.
#
#   benches/soak.sh                      # ≈ 10 min of load + build + settle; writes
#                                        # benches/results/soak-<date>-<shortsha>.md
#   SOAK_SECONDS=200 CACHE_MAX_ENTRIES=20000 benches/soak.sh
#                                        # a short trial: the RSS windows shrink to fit, and a
#                                        # smaller token cache is full before they start
#
# For SOAK_SECONDS it runs, all at once and at saturation, in back-to-back chunks (so client
# connections and tunnels are also opened and closed all along):
#   cached     one token, keep-alive GETs to the spawner route        (from 127.0.0.1)
#   unique     a fresh token per request, pools minted chunk by chunk  (from 127.0.0.1)
#   websocket  echo round trips through /websockify tunnels            (from 127.0.0.1)
#   forged-*   distinct bad-signature tokens, one loadgen per source address: ::1 and the
#              machine's own IPv4/IPv6 addresses when it has them; the gateway listens on [::]
#              and keeps its default [abuse] throttling, so these get 401, then 429.
# Every SAMPLE_SECONDS it records the gateway's VmRSS, open fds, threads, CPU time and a few
# metrics to a CSV. After the load it waits (at most SETTLE_SECONDS) for the fd count to come
# back to its pre-load baseline. benches/soak_report.py then checks:
#   - RSS is flat after warm-up: the mean of the last minute of load is within RSS_TOL_PCT %
#     (or RSS_TOL_MIB MiB, whichever is larger) above the mean of the minute after warm-up.
#     Warm-up is the first minute, or longer if the token cache has not reached its cap yet
#     (the cache is most of the gateway's memory and fills as fast as unique tokens arrive);
#   - the fd count returns to its baseline once the load stops;
#   - valid traffic saw only 2xx/101 and no errors; forged traffic only 401/429;
#   - the gateway process is still alive, and it exits 0 on SIGTERM at the end;
# prints a summary, writes the markdown report and exits 1 on any violation.
#
# Knobs (defaults in brackets): SOAK_SECONDS [600], SAMPLE_SECONDS [5], CHUNK_SECONDS [30],
# SETTLE_SECONDS [240], KEY_BITS [1024], CACHED_CONNS [16], UNIQUE_CONNS [8], UNIQUE_POOL
# [30000], FORGED_CONNS [4 per source], WS_TUNNELS [16], CACHE_MAX_ENTRIES [100000, the shipped
# default], RSS_TOL_PCT [10], RSS_TOL_MIB [4], SOAK_REV [empty: build the working tree; HEAD or
# any revision: build that commit, exported, so other people's edits in progress stay out],
# CARGO_TARGET_DIR [target], OUT [benches/results/soak-<date>-<shortsha>.md]. Ports are picked
# free at start (other benchmarks may share the machine), and each process must own its port.
# Tokens never reach the terminal, the report or the CSV.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_REV=${SOAK_REV:-}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-5}
CHUNK_SECONDS=${CHUNK_SECONDS:-30}
SETTLE_SECONDS=${SETTLE_SECONDS:-240}
KEY_BITS=${KEY_BITS:-1024}
CACHED_CONNS=${CACHED_CONNS:-16}
UNIQUE_CONNS=${UNIQUE_CONNS:-8}
UNIQUE_POOL=${UNIQUE_POOL:-30000}
FORGED_CONNS=${FORGED_CONNS:-4}
WS_TUNNELS=${WS_TUNNELS:-16}
CACHE_MAX_ENTRIES=${CACHE_MAX_ENTRIES:-100000}
RSS_TOL_PCT=${RSS_TOL_PCT:-10}
RSS_TOL_MIB=${RSS_TOL_MIB:-4}
if [ "$SOAK_SECONDS" -lt 120 ]; then
    echo "SOAK_SECONDS must be at least 120" >&2
    exit 2
fi

WORK=$(mktemp -d /tmp/gw-soak.XXXXXX)
JSON=$WORK/json
mkdir -p "$JSON"
PIDS=()
cleanup() {
    # The load loops' current `loadgen run` first (by parent pid), then everything started here.
    for p in "${PIDS[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 143' TERM INT
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- build -----------------------------------------------------------------------------------
if [ -n "$SOAK_REV" ]; then
    # A committed revision, exported: other people's uncommitted edits stay out of the run.
    COMMIT=$(git rev-parse --short "$SOAK_REV")
    mkdir -p "$WORK/src"
    git archive "$SOAK_REV" | tar -x -C "$WORK/src"
    log "building release binaries at $COMMIT (exported to $WORK/src)"
    (cd "$WORK/src" && cargo build --release -q --locked -p gateway -p keys-tool -p loadgen)
else
    COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway benches/loadgen Cargo.lock || echo ' + uncommitted changes')"
    log "building release binaries at $COMMIT"
    cargo build --release -q -p gateway -p keys-tool -p loadgen
fi
BIN=$CARGO_TARGET_DIR/release

# --- keys ------------------------------------------------------------------------------------
mkdir -p "$WORK/keys"
"$BIN/keys-tool" gen --bits "$KEY_BITS" --out "$WORK/keys" >/dev/null 2>&1
KEYARGS=(--signing-key "$WORK/keys/abcdesktop_jwt_desktop_signing_private_key.pem"
    --payload-key "$WORK/keys/abcdesktop_jwt_desktop_payload_public_key.pem")

# --- ports: free now; wait_port checks that each is really ours -----------------------------
free_port() { python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::", 0)); print(s.getsockname()[1])'; }
UP_HTTP=$(free_port)
UP_WS=$(free_port)
GW_PORT=$(free_port)
ADMIN_PORT=$(free_port)

# --- where forged traffic comes from ---------------------------------------------------------
# The source address is the one the kernel picks for the destination: 127.0.0.1 for any
# 127/8 address, ::1 for ::1, and the interface's own address for it. Valid traffic keeps
# 127.0.0.1, so per-address throttling of the forgeries never touches it.
FORGED_URLS=()
if [ -e /proc/net/if_inet6 ] && grep -q ' lo$' /proc/net/if_inet6; then
    FORGED_URLS+=("http://[::1]:$GW_PORT")
fi
if command -v ip >/dev/null; then
    v4=$(ip -o -4 addr show scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
    v6=$(ip -o -6 addr show scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
    [ -n "$v4" ] && FORGED_URLS+=("http://$v4:$GW_PORT")
    [ -n "$v6" ] && FORGED_URLS+=("http://[$v6]:$GW_PORT")
fi
AUTH_FAILURES_PER_IP=300 # the shipped default
if [ ${#FORGED_URLS[@]} -eq 0 ]; then
    # Only 127.0.0.1: forgeries would get valid traffic throttled, so throttling goes off.
    FORGED_URLS=("http://127.0.0.1:$GW_PORT")
    AUTH_FAILURES_PER_IP=0
fi
log "forged traffic from ${#FORGED_URLS[@]} source address(es); auth_failures_per_ip=$AUTH_FAILURES_PER_IP"

# --- processes -------------------------------------------------------------------------------
# wait_port PID PORT: until PORT listens, and it is PID's (not another benchmark's).
wait_port() {
    for _ in $(seq 100); do
        if ss -Hltnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"; then return 0; fi
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    log "process $1 never listened on port $2"
    return 1
}

"$BIN/loadgen" serve --http "127.0.0.1:$UP_HTTP" --ws "127.0.0.1:$UP_WS" \
    --max-time "$((SOAK_SECONDS + SETTLE_SECONDS + 600))s" &
UP_PID=$!
PIDS+=($UP_PID)

cat >"$WORK/gateway.toml" <<EOF
listen = "[::]:$GW_PORT"
[keys]
signing_public_key = "$WORK/keys/abcdesktop_jwt_desktop_signing_public_key.pem"
payload_private_key = "$WORK/keys/abcdesktop_jwt_desktop_payload_private_key.pem"
[auth]
allow_loopback = true
cache_max_entries = $CACHE_MAX_ENTRIES
[limits]
max_connections = 20000
[upstream]
port_map = { "29786" = $UP_HTTP, "6081" = $UP_WS }
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[shutdown]
drain_delay = "0s"
[log]
access_log = false
[abuse]
auth_failures_per_ip = $AUTH_FAILURES_PER_IP
EOF
"$BIN/gateway" --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_port "$UP_PID" "$UP_HTTP"
wait_port "$UP_PID" "$UP_WS"
wait_port "$GW_PID" "$GW_PORT"
wait_port "$GW_PID" "$ADMIN_PORT"

metrics() { curl -sf --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics"; }
sample_metric() { # name: the sum of every sample of that family (0 if absent)
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }'
}
fds() { find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
TICKS=$(getconf CLK_TCK)

# A request of each kind before the baseline, so the baseline holds what stays open for good
# (listeners, runtime, resolver), then a pause for those connections to close.
curl -sf -o /dev/null "http://127.0.0.1:$GW_PORT/healthz"
metrics >"$WORK/metrics-start.txt"
sleep 2
FD_BASE=$(fds)
RSS_BASE=$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status")
log "gateway pid $GW_PID: baseline RSS ${RSS_BASE} kB, ${FD_BASE} fds"

# --- sampler ---------------------------------------------------------------------------------
echo load >"$WORK/phase"
LOAD_AVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
LOAD_START=$(date +%s.%N)
sampler() {
    echo "t_s,phase,rss_kb,fds,threads,cpu_s,cache_entries,tunnels_open,requests_total,load1"
    local k=0
    while [ ! -e "$WORK/stop-sampler" ] && [ -e "/proc/$GW_PID/status" ]; do
        local now t rss thr cpu m
        now=$(date +%s.%N)
        t=$(awk -v a="$LOAD_START" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null || echo 0)
        thr=$(awk '/^Threads/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null || echo 0)
        cpu=$(awk -v hz="$TICKS" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$GW_PID/stat" 2>/dev/null || echo 0)
        m=$(metrics 2>/dev/null || true)
        echo "$t,$(cat "$WORK/phase"),$rss,$(fds),$thr,$cpu,$(sample_metric gateway_token_cache_entries <<<"$m"),$(sample_metric gateway_websocket_tunnels_open <<<"$m"),$(sample_metric gateway_requests_total <<<"$m"),$(cut -d' ' -f1 /proc/loadavg)"
        k=$((k + 1))
        local next
        next=$(awk -v a="$LOAD_START" -v k="$k" -v s="$SAMPLE_SECONDS" -v now="$(date +%s.%N)" \
            'BEGIN { d = a + k * s - now; printf "%.3f", d < 0 ? 0 : d }')
        sleep "$next"
    done
}
sampler >"$WORK/samples.csv" &
SAMPLER_PID=$!
PIDS+=($SAMPLER_PID)

# --- load ------------------------------------------------------------------------------------
LOAD_END=$(awk -v a="$LOAD_START" -v s="$SOAK_SECONDS" 'BEGIN { printf "%.0f", a + s }')

# loop KIND URL loadgen-args...: back-to-back `loadgen run` chunks until the load ends.
loop() {
    local kind=$1 url=$2 i=0
    shift 2
    while true; do
        local left=$((LOAD_END - $(date +%s)))
        [ "$left" -lt 2 ] && break
        local dur=$((left < CHUNK_SECONDS ? left : CHUNK_SECONDS))
        if ! "$BIN/loadgen" run --quiet --url "$url" --duration "${dur}s" \
            --json "$JSON/$kind-$(printf %04d $i).json" "$@" 2>>"$WORK/loadgen-$kind.err"; then
            echo "$kind chunk $i: loadgen failed" >>"$WORK/loadgen-failures.txt"
            sleep 1
        fi
        i=$((i + 1))
    done
}

log "load for ${SOAK_SECONDS}s"
LOOPS=()
loop cached "http://127.0.0.1:$GW_PORT" --mode cached --connections "$CACHED_CONNS" \
    --path /spawner/soak "${KEYARGS[@]}" &
LOOPS+=($!)
# Tokens live an hour, so none expires while a pool is in use.
loop unique "http://127.0.0.1:$GW_PORT" --mode unique --connections "$UNIQUE_CONNS" \
    --pool "$UNIQUE_POOL" --lifetime 3600 --path /spawner/soak "${KEYARGS[@]}" &
LOOPS+=($!)
loop websocket "http://127.0.0.1:$GW_PORT" --mode websocket --connections "$WS_TUNNELS" \
    "${KEYARGS[@]}" &
LOOPS+=($!)
n=0
for url in "${FORGED_URLS[@]}"; do
    loop "forged$n" "$url" --mode forged --connections "$FORGED_CONNS" --pool 100000 \
        --path /spawner/soak "${KEYARGS[@]}" &
    LOOPS+=($!)
    n=$((n + 1))
done
PIDS+=("${LOOPS[@]}")
for p in "${LOOPS[@]}"; do wait "$p"; done
metrics >"$WORK/metrics-load-end.txt" || true
log "load done; waiting for the fd count to come back to $FD_BASE (at most ${SETTLE_SECONDS}s)"

# --- settle ----------------------------------------------------------------------------------
echo settle >"$WORK/phase"
SETTLE_START=$(date +%s)
SETTLED_AFTER=-1
while [ $(($(date +%s) - SETTLE_START)) -lt "$SETTLE_SECONDS" ]; do
    if [ "$(fds)" -le "$FD_BASE" ]; then
        SETTLED_AFTER=$(($(date +%s) - SETTLE_START))
        break
    fi
    sleep 1
done
# A few more samples of the idle gateway.
sleep $((SAMPLE_SECONDS * 2))
touch "$WORK/stop-sampler"
wait "$SAMPLER_PID" || true
metrics >"$WORK/metrics-end.txt" || true
FD_END=$(fds)
# What is still open, for the report: the gateway's TCP sockets by peer.
leftover() {
    ss -Htanp 2>/dev/null | grep "pid=$GW_PID," | awk -v up="$UP_HTTP" -v ws="$UP_WS" -v gw="$GW_PORT" -v ad="$ADMIN_PORT" '
        $1 == "LISTEN" { next }
        { n = split($4, l, ":"); m = split($5, r, ":"); lp = l[n]; rp = r[m]
          if (rp == up) k = "to upstream HTTP"; else if (rp == ws) k = "to upstream WebSocket";
          else if (lp == gw) k = "from clients"; else if (lp == ad) k = "admin"; else k = "other"
          c[k " (" $1 ")"]++ }
        END { for (k in c) printf "%s%d %s", (s++ ? ", " : ""), c[k], k }'
}
LEFTOVER=$(leftover)
RSS_END=$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null || echo 0)
GW_ALIVE=0
kill -0 "$GW_PID" 2>/dev/null && GW_ALIVE=1

# --- shutdown --------------------------------------------------------------------------------
GW_EXIT=-1
if [ "$GW_ALIVE" = 1 ]; then
    kill -TERM "$GW_PID"
    for _ in $(seq 300); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$GW_PID" 2>/dev/null; then
        GW_EXIT=timeout
    else
        set +e
        wait "$GW_PID"
        GW_EXIT=$?
        set -e
    fi
fi

# --- report ----------------------------------------------------------------------------------
SHA=${COMMIT%% *}
DATE=$(date -u +%Y-%m-%d)
OUT=${OUT:-benches/results/soak-$DATE-$SHA.md}
mkdir -p "$(dirname "$OUT")"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit=$COMMIT"
    echo "nproc=$(nproc)"
    echo "cpu=$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')"
    echo "rustc=$(rustc --version)"
    echo "load_start=$LOAD_AVG_START"
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "soak_seconds=$SOAK_SECONDS"
    echo "sample_seconds=$SAMPLE_SECONDS"
    echo "chunk_seconds=$CHUNK_SECONDS"
    echo "settle_seconds=$SETTLE_SECONDS"
    echo "key_bits=$KEY_BITS"
    echo "conns=cached $CACHED_CONNS, unique $UNIQUE_CONNS (pools of $UNIQUE_POOL), websocket $WS_TUNNELS tunnels, forged $FORGED_CONNS per source"
    echo "forged_sources=${#FORGED_URLS[@]}"
    echo "auth_failures_per_ip=$AUTH_FAILURES_PER_IP"
    echo "rss_tol_pct=$RSS_TOL_PCT"
    echo "rss_tol_mib=$RSS_TOL_MIB"
    echo "rss_base_kb=$RSS_BASE"
    echo "rss_end_kb=$RSS_END"
    echo "fd_base=$FD_BASE"
    echo "fd_end=$FD_END"
    echo "settled_after_s=$SETTLED_AFTER"
    echo "leftover_sockets=$LEFTOVER"
    echo "cache_max_entries=$CACHE_MAX_ENTRIES"
    echo "gateway_alive=$GW_ALIVE"
    echo "gateway_exit=$GW_EXIT"
    echo "loadgen_failures=$(cat "$WORK/loadgen-failures.txt" 2>/dev/null | wc -l)"
} >"$WORK/meta.txt"
set +e
python3 "$ROOT/benches/soak_report.py" "$WORK" "$OUT"
STATUS=$?
set -e
log "wrote $OUT (samples, JSON and logs in $WORK)"
exit "$STATUS"
