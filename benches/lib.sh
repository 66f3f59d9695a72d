# benches/lib.sh: what compare.sh and hostile.sh share (sourced). A proxy pid equal to
# NGINX_PID (set by the caller once nginx runs) stands for nginx's master and its workers.
#   PIDS+=(pid)       processes killed on exit (TERM, then KILL)
#   log TEXT          a timestamped line on stderr
#   wait_port PORT    until 127.0.0.1:PORT accepts (10 s at most)
#   proc_pids PID     PID, or nginx's master and workers
#   cpu_ticks PID     user + system clock ticks of those processes
#   rss_kb PID        their resident memory, KiB
PIDS=()
bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap bench_cleanup EXIT
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "port $1 never opened"
    return 1
}
proc_pids() { if [ "$1" = "${NGINX_PID:-}" ]; then echo "$1" $(ps -o pid= --ppid "$1"); else echo "$1"; fi; }
cpu_ticks() { local t=0; for p in $(proc_pids "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_kb() { local t=0; for p in $(proc_pids "$1"); do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
