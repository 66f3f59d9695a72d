#!/usr/bin/env bash
# benches/idle_tunnels.sh: resident memory per idle WebSocket tunnel, for two gateway builds in
# the same run, alternating (A B A B), on 127.0.0.1.
#
#   bash benches/idle_tunnels.sh BASELINE_BIN CANDIDATE_BIN
#
# Knobs: N [3000] tunnels, ROUNDS [2], BIN [target/debug] (loadgen and keys-tool). Each round
# starts the build fresh, opens N tunnels through it to `loadgen serve`'s echo, waits until all
# are open, and reads the gateway's RSS before and with them held.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
A=${1:?baseline gateway binary}
B=${2:?candidate gateway binary}
N=${N:-3000}
ROUNDS=${ROUNDS:-2}
BIN=${BIN:-target/debug}
W=$(mktemp -d /tmp/gw-idle.XXXXXX)
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bench_token "$BIN" "$W"
"$BIN/loadgen" serve --http 127.0.0.1:19080 --ws 127.0.0.1:19081 --max-time 10m &
PIDS+=($!)
wait_port 19080
gateway_toml 19090 "$K" '"29786" = 19080, "6081" = 19081' 'max_connections = 20000' >"$W/gw.toml"
for round in $(seq "$ROUNDS"); do
    for label in baseline candidate; do
        [ $label = baseline ] && gw=$A || gw=$B
        "$gw" --config "$W/gw.toml" >"$W/gw-$label.log" 2>&1 &
        gp=$!
        wait_port 19090
        sleep 0.5
        idle_rss "$gp" "$W/ready" "$BIN/loadgen" run --quiet --url http://127.0.0.1:19090 \
            --mode websocket --idle --connections "$N" --duration 20s --token "$TOKEN" \
            --ready-file "$W/ready" --json "$W/idle.json"
        r0=$RSS0 r1=$RSS1
        echo "round $round $label: held $(jq .tunnels_held "$W/idle.json")/$N, RSS $r0 → $r1 kB, $(((r1 - r0) * 1024 / N)) B per tunnel"
        kill "$gp"
        wait "$gp" 2>/dev/null || true
    done
done
rm -rf "$W"
