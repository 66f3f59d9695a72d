#!/usr/bin/env bash
# benches/compare.sh: the gateway against its peers on this machine, in one run, alternating
# nginx / HAProxy / HAProxy checking the token / gateway (A B C D A B C D ...), on 127.0.0.1.
#
#   benches/compare.sh            # ≈ 9 minutes; writes benches/results/<date>-<shortsha>.{md,svg}
#
# Environment knobs (defaults in brackets): DUR [6s] per HTTP/WS run, ROUNDS [2], CONNS [32],
# IDLE_TUNNELS [5000], IDLE_HOLD [12s], PROXY_CPU [0] (the proxy under test), LOAD_CPU [1]
# (loadgen and the upstream), CARGO_TARGET_DIR [target], BASE_PORT [18080].
#
# Installs Debian's nginx and HAProxy if they are missing (needs root and the network once),
# builds the release binaries, starts `loadgen serve` (23-byte answers, `?size=N` bodies,
# WebSocket echo), nginx (1 worker, upstream keep-alive, no access log), HAProxy (1 thread,
# `http-reuse always`, no log) as a plain proxy and, on a second frontend of the same process,
# verifying the RS256 signature of every token itself (`jwt_verify`, 401 on failure; HAProxy can
# neither decrypt `hash` nor cache a verdict), and the gateway (1 worker thread, throw-away keys,
# allow_loopback, port_map to the upstream, no access log), then runs `loadgen run` against
# each. Every figure in the report is a ratio between runs of this one invocation.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DUR=${DUR:-6s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-32}
IDLE_TUNNELS=${IDLE_TUNNELS:-5000}
IDLE_HOLD=${IDLE_HOLD:-12s}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-18080}
UP_HTTP=$BASE_PORT
UP_WS=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 10))
HAPROXY_PORT=$((BASE_PORT + 15))     # plain proxy
HAPROXY_JWT_PORT=$((BASE_PORT + 16)) # the same process, verifying the token's signature
GW_PORT=$((BASE_PORT + 11))      # 1024-bit keys, access log off
GW_LOG_PORT=$((BASE_PORT + 12))  # 1024-bit keys, access log on (forged flood)
GW_2048_PORT=$((BASE_PORT + 13)) # 2048-bit keys, access log off (unique tokens)
GW_THR_PORT=$((BASE_PORT + 14))  # 1024-bit keys, access log on, default [abuse] throttling
BIG=1073741824

WORK=$(mktemp -d /tmp/gw-compare.XXXXXX)
JSON=$WORK/json
mkdir -p "$JSON" "$WORK/nginx-tmp"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n)"

# --- nginx -----------------------------------------------------------------------------------
bash scripts/install-nginx.sh >&2
NGINX=/usr/sbin/nginx
HAPROXY=$(debian_tool haproxy)

# --- build -----------------------------------------------------------------------------------
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway benches Cargo.lock || echo ' + uncommitted changes')"
log "building release binaries at $COMMIT"
cargo build --release -q -p gateway -p keys-tool -p loadgen
BIN=$CARGO_TARGET_DIR/release
LOADGEN=(taskset -c "$LOAD_CPU" "$BIN/loadgen")

# --- keys and tokens -------------------------------------------------------------------------
for bits in 1024 2048; do
    mkdir -p "$WORK/keys$bits"
    "$BIN/keys-tool" gen --bits "$bits" --out "$WORK/keys$bits" >/dev/null
done
SIGNING=abcdesktop_jwt_desktop_signing_private_key.pem
SIGNING_PUB=abcdesktop_jwt_desktop_signing_public_key.pem
PAYLOAD=abcdesktop_jwt_desktop_payload_public_key.pem
PAYLOAD_PRIV=abcdesktop_jwt_desktop_payload_private_key.pem
keyargs() { echo --signing-key "$WORK/keys$1/$SIGNING" --payload-key "$WORK/keys$1/$PAYLOAD"; }

# --- processes -------------------------------------------------------------------------------

taskset -c "$LOAD_CPU" "$BIN/loadgen" serve --http "127.0.0.1:$UP_HTTP" --ws "127.0.0.1:$UP_WS" \
    --max-time 30m &
PIDS+=($!)

nginx_conf "$WORK" "$NGINX_PORT" "$UP_HTTP" "$UP_WS" 12000 "worker_processes 1;
worker_rlimit_nofile 30000;" \
    >"$WORK/nginx.conf"
taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

# `haproxy_head`: one thread, no log. The `jwt` frontend takes the token where the gateway
# does (ABCAuthorization bearer, else ?jwt_token=), pins the algorithm and checks the
# signature on every request.
cat >"$WORK/haproxy.cfg" <<EOF
$(haproxy_head)
frontend plain
    bind 127.0.0.1:$HAPROXY_PORT
    use_backend ws if { path_beg /websockify }
    default_backend up
frontend jwt
    bind 127.0.0.1:$HAPROXY_JWT_PORT
    http-request set-var(txn.bearer) http_auth_bearer(abcauthorization)
    http-request set-var(txn.bearer) url_param(jwt_token) unless { var(txn.bearer) -m len 1: }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(RS256,"$WORK/keys1024/$SIGNING_PUB") -m int 1 }
    use_backend ws if { path_beg /websockify }
    default_backend up
backend up
    server up 127.0.0.1:$UP_HTTP
backend ws
    server ws 127.0.0.1:$UP_WS
EOF
taskset -c "$PROXY_CPU" "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)

gateway_conf() { # port bits access_log auth_failures_per_ip
    cat <<EOF
listen = "127.0.0.1:$1"
[keys]
signing_public_key = "$WORK/keys$2/$SIGNING_PUB"
payload_private_key = "$WORK/keys$2/$PAYLOAD_PRIV"
[auth]
allow_loopback = true
[limits]
max_connections = 20000
shutdown_grace = "1s"
workers = 1
[upstream]
port_map = { "29786" = $UP_HTTP, "29783" = $UP_HTTP, "6081" = $UP_WS }
[admin]
listen = "off"
[shutdown]
drain_delay = "0s"
[log]
access_log = $3
[abuse]
auth_failures_per_ip = $4
EOF
}
start_gateway() { # port bits access_log logfile [auth_failures_per_ip, 0 = off]
    gateway_conf "$1" "$2" "$3" "${5:-0}" >"$WORK/gateway-$1.toml"
    taskset -c "$PROXY_CPU" "$BIN/gateway" --config "$WORK/gateway-$1.toml" \
        >"$4" 2>&1 &
    PIDS+=($!)
}
start_gateway "$GW_PORT" 1024 false "$WORK/gateway.log"
GW_PID=$!
start_gateway "$GW_LOG_PORT" 1024 true "$WORK/gateway-accesslog.log"
GW_LOG_PID=$!
start_gateway "$GW_2048_PORT" 2048 false "$WORK/gateway-2048.log"
GW_2048_PID=$!
start_gateway "$GW_THR_PORT" 1024 true "$WORK/gateway-throttled.log" 300
GW_THR_PID=$!
for p in "$UP_HTTP" "$UP_WS" "$NGINX_PORT" "$HAPROXY_PORT" "$HAPROXY_JWT_PORT" "$GW_PORT" "$GW_LOG_PORT" "$GW_2048_PORT" "$GW_THR_PORT"; do
    wait_port "$p"
done

TICKS=$(getconf CLK_TCK)
# The compared proxies, in round order: name, port, pid (haproxy_jwt is the plain HAProxy
# process's second frontend, so both share a pid; they are never measured at once).
PROXIES=(nginx haproxy haproxy_jwt gateway)
declare -A PORT_OF=([nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [haproxy_jwt]=$HAPROXY_JWT_PORT [gateway]=$GW_PORT)
declare -A PID_OF=([nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [haproxy_jwt]=$HAPROXY_PID [gateway]=$GW_PID)

# run NAME PROXY_NAME PORT PID loadgen-args...: one measured run, JSON + proxy CPU seconds.
run() {
    local name=$1 proxy=$2 port=$3 pid=$4
    shift 4
    local out=$JSON/$name-$proxy-$ROUND.json
    local u0 s0 u1 s1
    read -r u0 s0 < <(cpu_ticks "$pid")
    "${LOADGEN[@]}" run --quiet --url "http://127.0.0.1:$port" --json "$out" "$@"
    read -r u1 s1 < <(cpu_ticks "$pid")
    local user=$((u1 - u0)) sys=$((s1 - s0)) cpu
    cpu=$(awk -v t=$((user + sys)) -v hz="$TICKS" 'BEGIN { printf "%.3f", t / hz }')
    jq --argjson cpu "$cpu" --argjson u "$user" --argjson s "$sys" --argjson hz "$TICKS" \
        '. + {proxy_cpu_s: $cpu, proxy_user_s: ($u / $hz), proxy_sys_s: ($s / $hz)}' "$out" \
        >"$out.tmp" && mv "$out.tmp" "$out"
    log "$name $proxy round $ROUND: $(jq -r '"\(.requests_per_s | floor)/s  \(.bytes_per_s / 1e6 | floor) MB/s  p99 \(.latency.p99_us)µs  ok \(.ok) refused \(.refused) errors \(.errors)"' "$out")  proxy CPU ${cpu}s"
}

# --- token pools for `unique` (one file per round, so no token repeats across rounds) -------
log "minting unique-token pools"
for ROUND in $(seq "$ROUNDS"); do
    "$BIN/loadgen" mint $(keyargs 1024) --count 30000 --out "$WORK/tokens1024-$ROUND.txt" 2>/dev/null
    "$BIN/loadgen" mint $(keyargs 2048) --count 9000 --out "$WORK/tokens2048-$ROUND.txt" 2>/dev/null
done

# --- A/B rounds ------------------------------------------------------------------------------
for ROUND in $(seq "$ROUNDS"); do
    log "round $ROUND"
    for proxy in "${PROXIES[@]}"; do
        port=${PORT_OF[$proxy]} pid=${PID_OF[$proxy]}
        run cached $proxy "$port" "$pid" --mode cached --connections "$CONNS" --duration "$DUR" \
            $(keyargs 1024) --path /spawner/bench
        run close $proxy "$port" "$pid" --mode cached --close --connections "$CONNS" \
            --duration "$DUR" $(keyargs 1024) --path /spawner/bench
        run stream $proxy "$port" "$pid" --mode stream --connections 1 --duration "$DUR" \
            $(keyargs 1024) --path "/filer/bench?size=$BIG"
        run websocket $proxy "$port" "$pid" --mode websocket --connections "$CONNS" \
            --duration "$DUR" $(keyargs 1024)
        run ws64k $proxy "$port" "$pid" --mode websocket --msg-size 65536 --connections 8 \
            --duration "$DUR" $(keyargs 1024)
    done
    # The gateway only: the peers decrypt no token.
    run unique1024 gateway "$GW_PORT" "$GW_PID" --mode unique --connections "$CONNS" \
        --duration 5s --tokens "$WORK/tokens1024-$ROUND.txt" --path /spawner/bench
    run unique2048 gateway "$GW_2048_PORT" "$GW_2048_PID" --mode unique --connections "$CONNS" \
        --duration 5s --tokens "$WORK/tokens2048-$ROUND.txt" --path /spawner/bench
    # Throttling off: every forgery reaches the token check. Then the shipped default (300
    # failures per address and 10 s, then 429): one client address floods, as in an attack.
    for forged in 1000:"$GW_LOG_PORT":"$GW_LOG_PID":gateway-accesslog \
        300000:"$GW_LOG_PORT":"$GW_LOG_PID":gateway-accesslog \
        throttled:"$GW_THR_PORT":"$GW_THR_PID":gateway-throttled; do
        IFS=: read -r pool port pid logname <<<"$forged"
        [ "$pool" = throttled ] && n=300000 || n=$pool
        before=$(stat -c %s "$WORK/$logname.log")
        run "forged$pool" gateway "$port" "$pid" --mode forged --pool "$n" \
            --connections "$CONNS" --duration 4s $(keyargs 1024) --path /spawner/bench
        after=$(stat -c %s "$WORK/$logname.log")
        f=$JSON/forged$pool-gateway-$ROUND.json
        jq --argjson b $((after - before)) '. + {log_bytes: $b, log_bytes_per_s: ($b / .elapsed_s)}' \
            "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    done
done

# --- idle tunnels: RSS per tunnel ------------------------------------------------------------
ROUND=1
for proxy in nginx haproxy gateway; do
    port=${PORT_OF[$proxy]} pid=${PID_OF[$proxy]}
    f=$JSON/idle-$proxy-1.json
    idle_rss "$pid" "$WORK/ready" "${LOADGEN[@]}" run --quiet --url "http://127.0.0.1:$port" \
        --mode websocket --idle --connections "$IDLE_TUNNELS" --duration "$IDLE_HOLD" \
        $(keyargs 1024) --ready-file "$WORK/ready" --json "$f"
    jq --argjson a "$RSS0" --argjson b "$RSS1" '. + {rss_before_kb: $a, rss_held_kb: $b}' "$f" \
        >"$f.tmp" && mv "$f.tmp" "$f"
    log "idle $proxy: $(jq -r '"held \(.tunnels_held)/\(.connections)"' "$f"), RSS $RSS0 → $RSS1 kB"
    sleep 2
done

# --- report ----------------------------------------------------------------------------------
SHA=${COMMIT%% *}
DATE=$(date -u +%Y-%m-%d)
mkdir -p benches/results
OUT=benches/results/$DATE-$SHA
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit=$COMMIT"
    echo "nproc=$(nproc)"
    echo "cpu=$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')"
    echo "rustc=$(rustc --version)"
    echo "nginx=$("$NGINX" -v 2>&1)"
    echo "haproxy=$("$HAPROXY" -v | head -n 1)"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings=DUR=$DUR ROUNDS=$ROUNDS CONNS=$CONNS IDLE_TUNNELS=$IDLE_TUNNELS PROXY_CPU=$PROXY_CPU LOAD_CPU=$LOAD_CPU"
} >"$WORK/meta.txt"
python3 "$ROOT/benches/report.py" "$JSON" "$WORK/meta.txt" "$OUT.md" "$OUT.svg"
log "wrote $OUT.md and $OUT.svg (raw JSON in $JSON)"
