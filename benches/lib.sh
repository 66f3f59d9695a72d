# benches/lib.sh: what compare.sh, hostile.sh and ab.sh share (sourced). A proxy pid equal to
# NGINX_PID (set by the caller once nginx runs) stands for nginx's master and its workers.
#   PIDS+=(pid)       processes killed on exit (TERM, then KILL)
#   log TEXT          a timestamped line on stderr
#   debian_tool NAME [PACKAGE]   NAME's path (on PATH or in /usr/sbin), after installing Debian's
#                     PACKAGE [NAME] when it is in neither (stdout: the path only)
#   wait_port PORT    until 127.0.0.1:PORT accepts (10 s at most)
#   proc_pids PID     PID, or nginx's master and workers
#   cpu_ticks PID     user and system clock ticks of those processes ("USER SYS")
#   rss_kb PID        their resident memory, KiB
#   idle_rss PID READY CMD...  runs CMD (a `loadgen run --idle --ready-file READY ...`) and sets
#                     RSS0 (PID's RSS before) and RSS1 (with every tunnel open), KiB
#   gateway_toml PORT KEYDIR PORT_MAP [LIMITS]   a bench gateway's configuration (stdout);
#                     WORKERS [1] worker threads
#   nginx_temp_paths DIR                          nginx's temporary paths under DIR (stdout)
#   nginx_conf DIR PORT UP WS_PORT CONNECTIONS [MAIN]   the bench nginx's whole configuration
#                     (stdout; makes DIR/nginx-tmp): pid, log and temporary paths under DIR, listening on PORT,
#                     upstream keep-alive to UP, `nginx_proxy_locations WS_PORT`, CONNECTIONS
#                     worker connections; MAIN: more main-context lines (worker_processes, ...)
#   haproxy_head                  the bench HAProxy's `global` and `defaults` (stdout): one
#                     thread, no log, HTTP mode, keep-alive to the servers (`http-reuse always`)
#   nginx_proxy_locations WS_PORT   the bench nginx's locations (stdout): /websockify to the
#                     WebSocket echo on WS_PORT, everything else to `upstream up` (the caller's)
#   bench_token BIN DIR   1024-bit keys in DIR/keys (K) and one token minted with them (TOKEN)
PIDS=()
bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap bench_cleanup EXIT
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
debian_tool() {
    if ! command -v "$1" >/dev/null && [ ! -x "/usr/sbin/$1" ]; then
        log "installing Debian's ${2:-$1}"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${2:-$1}"; } >&2
    fi
    command -v "$1" || echo "/usr/sbin/$1"
}
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "port $1 never opened"
    return 1
}
proc_pids() { if [ "$1" = "${NGINX_PID:-}" ]; then echo "$1" $(ps -o pid= --ppid "$1"); else echo "$1"; fi; }
cpu_ticks() {
    local u=0 s=0 pu ps p
    for p in $(proc_pids "$1"); do
        read -r pu ps < <(awk '{print $14, $15}' "/proc/$p/stat")
        u=$((u + pu)) s=$((s + ps))
    done
    echo "$u $s"
}
rss_kb() { local t=0; for p in $(proc_pids "$1"); do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
idle_rss() {
    local pid=$1 ready=$2 lg
    shift 2
    rm -f "$ready"
    RSS0=$(rss_kb "$pid")
    "$@" &
    lg=$!
    for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
    sleep 1 # let the last handshakes' transient buffers go
    RSS1=$(rss_kb "$pid")
    wait "$lg"
}
# One worker thread, no admin listener, no drain delay, no access log; PORT_MAP is the inside
# of the TOML inline table, LIMITS extra lines for [limits].
gateway_toml() {
    cat <<EOF
listen = "127.0.0.1:$1"
[keys]
signing_public_key = "$2/abcdesktop_jwt_desktop_signing_public_key.pem"
payload_private_key = "$2/abcdesktop_jwt_desktop_payload_private_key.pem"
[auth]
allow_loopback = true
[limits]
workers = ${WORKERS:-1}
${4:-}
[upstream]
port_map = { $3 }
[admin]
listen = "off"
[shutdown]
drain_delay = "0s"
[log]
access_log = false
EOF
}
nginx_temp_paths() {
    local t
    for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $1/$t;"; done
}
nginx_conf() {
    mkdir -p "$1/nginx-tmp"
    cat <<EOF
${6:-}
daemon off;
pid $1/nginx.pid;
error_log $1/nginx-error.log warn;
events { worker_connections $5; }
http {
    access_log off;
$(nginx_temp_paths "$1/nginx-tmp")
    keepalive_requests 1000000;
    upstream up { server 127.0.0.1:$3; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$2 backlog=4096;
$(nginx_proxy_locations "$4")
    }
}
EOF
}
haproxy_head() {
    # `maxconn` stays under the open-files limit (HAProxy refuses to start otherwise).
    printf '%s\n' global '    nbthread 1' '    maxconn 9000' defaults '    mode http' \
        '    timeout connect 5s' '    timeout client 60s' '    timeout server 60s' \
        '    timeout tunnel 3600s' '    http-reuse always'
}
nginx_proxy_locations() {
    cat <<EOF
        location /websockify {
            proxy_pass http://127.0.0.1:$1/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
EOF
}
bench_token() {
    "$1/keys-tool" gen --bits 1024 --out "$2/keys" >/dev/null
    K=$2/keys
    "$1/loadgen" mint --signing-key "$K/abcdesktop_jwt_desktop_signing_private_key.pem" \
        --payload-key "$K/abcdesktop_jwt_desktop_payload_public_key.pem" --count 1 \
        --lifetime 3600 --out "$2/token.txt" 2>/dev/null
    TOKEN=$(head -n 1 "$2/token.txt")
}
