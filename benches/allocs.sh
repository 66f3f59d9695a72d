#!/usr/bin/env bash
# benches/allocs.sh: allocations per cached-token small GET, counted inside the gateway
# (benches/src/bin/allocs.rs: the gateway under a counting allocator, driven by loadgen from
# another process, as in ab.sh). A count, not a time: it does not depend on the machine's load.
#
#   benches/allocs.sh     # ≈ 1 minute after the build; writes benches/results/allocs-<date>-<sha>.md
#
# Knobs: DUR [5s], CONNS [32], BASE_PORT [19280], CARGO_TARGET_DIR [target].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DUR=${DUR:-5s}
CONNS=${CONNS:-32}
BASE_PORT=${BASE_PORT:-19280}
UP=$BASE_PORT
GW_PORT=$((BASE_PORT + 1))
WORK=$(mktemp -d /tmp/gw-allocs.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway benches || echo ' + uncommitted changes')"
cargo build --release -q -p benches --bin allocs -p keys-tool -p loadgen
BIN=$CARGO_TARGET_DIR/release

bench_token "$BIN" "$WORK" # sets K and TOKEN
"$BIN/loadgen" serve --http "127.0.0.1:$UP" --max-time 30m &
PIDS+=($!)
wait_port "$UP"
gateway_toml "$GW_PORT" "$K" "\"29786\" = $UP" >"$WORK/gateway.toml"

row() { # label path
    "$BIN/allocs" "$WORK/gateway.toml" -- "$BIN/loadgen" run --quiet --mode cached \
        --connections "$CONNS" --duration "$DUR" --url "http://127.0.0.1:$GW_PORT" \
        --path "$2" --token "$TOKEN" --json "$WORK/load.json" >"$WORK/allocs.json"
    printf '| %s | %s | %.1f | %.0f |\n' "$1" "$(jq -r .requests "$WORK/allocs.json")" \
        "$(jq -r .allocations_per_request "$WORK/allocs.json")" \
        "$(jq -r .bytes_per_request "$WORK/allocs.json")"
}
OUT=benches/results/allocs-$(date +%F)-$(git rev-parse --short HEAD).md
{
    echo "# Allocations per request — $COMMIT"
    echo
    echo "\`benches/allocs.sh\`: the gateway under a counting allocator (one worker thread,"
    echo "access log off), $CONNS keep-alive connections for $DUR after a warm-up run of the same"
    echo "length; the load generator and the upstream are other processes."
    echo
    echo "| request | requests counted | allocations per request | bytes allocated per request |"
    echo "|---|---|---|---|"
    row "cached-token GET /spawner/bench" /spawner/bench
    row "GET /healthz (answered by the gateway)" /healthz
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
