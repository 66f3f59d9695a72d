#!/usr/bin/env bash
# Builds every cargo-fuzz target (fuzz/, nightly) and runs each for a short time from a copy
# of its committed seed corpus (fuzz/seeds/<target>/, with fuzz/dicts/<target>.dict), so a run
# never touches the tree. Fails if any target crashes, panics (a property is violated), leaks
# or times out; the failing input is left in fuzz/artifacts/<target>/ (fuzz/README.md says how
# to reproduce it).
#
#   bash scripts/fuzz.sh                         # every target, 60 s each (what CI runs)
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh        # longer
#   FUZZ_TARGETS="jws_verify route_match" bash scripts/fuzz.sh
#   FUZZ_JOBS=1 bash scripts/fuzz.sh             # one target at a time (default: one per CPU)
#
# Time on a 2-core machine: the build takes about 7.5 min from scratch (every dependency is
# compiled with AddressSanitizer and coverage instrumentation, at opt-level 3), under a minute
# when only the targets changed; the seven 60 s runs, two at a time, about 4 min.
# Installs cargo-fuzz (cargo install --locked) when it is missing; needs the nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
all_targets="token_pipeline token_extract jws_verify payload_target route_match config_parse http_request"
targets="${FUZZ_TARGETS:-$all_targets}"
jobs="${FUZZ_JOBS:-$(nproc)}"
for n in "$seconds" "$jobs"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: FUZZ_SECONDS and FUZZ_JOBS must be positive integers" >&2; exit 2; }
done

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz has no --locked: check the committed lock file first, as CI does for the rest.
cargo +nightly metadata --locked --format-version 1 >/dev/null
echo "fuzz: building every target"
cargo +nightly fuzz build
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="target/$triple/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Runs one target; its log goes to $work/<target>.log, its exit status to $work/<target>.rc.
run_target() {
    local target="$1"
    local corpus="$work/$target"
    mkdir -p "$corpus" artifacts/"$target"
    cp seeds/"$target"/* "$corpus"/
    # -timeout: one input taking longer than 30 s is a hang (http_request bounds itself at 10 s).
    local options=(-max_total_time="$seconds" -timeout=30 -print_final_stats=1
        -artifact_prefix=artifacts/"$target"/)
    if [ -f dicts/"$target".dict ]; then
        options+=(-dict=dicts/"$target".dict)
    fi
    case "$target" in
    token_pipeline | http_request)
        # These keep the gateway's token caches across inputs, as production does, so most
        # inputs end with more allocations than frees; LeakSanitizer would then scan the
        # whole heap after each of them (4x slower). Nothing cached is unreachable anyway.
        options+=(-detect_leaks=0)
        ;;
    esac
    local rc=0
    "$bin_dir/$target" "${options[@]}" "$corpus" >"$work/$target.log" 2>&1 || rc=$?
    echo "$rc" >"$work/$target.rc"
}

echo "fuzz: running $(wc -w <<<"$targets") targets for ${seconds}s each, $jobs at a time"
for target in $targets; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    run_target "$target" &
done
wait

failed=()
for target in $targets; do
    log="$work/$target.log"
    if [ "$(cat "$work/$target.rc")" = 0 ]; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        # libFuzzer's last status line: coverage (edges) and features.
        cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -n 1)
        echo "fuzz: $target ok: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-no coverage line}"
    else
        echo "fuzz: $target FAILED; last lines of its log:" >&2
        tail -n 40 "$log" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
