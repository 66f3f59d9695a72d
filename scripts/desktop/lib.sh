# Shared by desktop-test.sh and ../desktop-demo.sh (sourced, not run): a desktop pod on
# loopback, throw-away keys, tokens, the gateway in front of it, and the page.
#
# The pod is what an abcdesktop desktop pod runs, minus Kubernetes: Xvfb on a private display
# with an xterm on it, x11vnc (with a VNC password) on that display listening on 127.0.0.1
# only, and websockify on port 6081 of the "pod address", a random 127.0.0.x, forwarding to
# x11vnc. Tokens carry that address in `hash`, exactly as pyos's carry a pod IP; the gateway
# (allow_loopback) dials <pod address>:6081 for /websockify, with no port translation.
#
# Every process started is recorded in DESKTOP_PIDS; desktop_cleanup stops them (call it from
# an EXIT trap). Every wait has a deadline.

DESKTOP_PIDS=()
DESKTOP_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DESKTOP_ROOT="$(cd "$DESKTOP_HERE/../.." && pwd)"
# Something recognizable on the desktop: the xterm's colours and its first line.
DESKTOP_BANNER="abcdesktop-gateway-desktop"
DESKTOP_XTERM_BG="#1d4f91"
DESKTOP_WIDTH=1024
DESKTOP_HEIGHT=768

desktop_log() { echo "desktop: $*" >&2; }
desktop_die() { echo "desktop: FAIL: $*" >&2; exit 1; }

desktop_cleanup() {
    local pid
    for pid in "${DESKTOP_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${DESKTOP_PIDS[@]}"; do
        # Bounded: a process that ignores SIGTERM for 5 s gets SIGKILL.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    DESKTOP_PIDS=()
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_for() {
    local secs="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || desktop_die "timed out after ${secs}s waiting for $what"
        sleep 0.1
    done
}

# A TCP port nobody listens on at HOST (the kernel picks it; free again when we bind it).
free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

port_is_free() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],int(sys.argv[2])))' "$1" "$2" 2>/dev/null
}

# The TCP sockets PID listens on, one HOST:PORT a line ([::] for the IPv6 wildcard).
listeners_of() {
    python3 - "$1" <<'PY'
import ipaddress, os, sys
pid = sys.argv[1]
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if link.startswith("socket:["):
        inodes.add(link[8:-1])
out = []
for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
    for line in open(table).read().splitlines()[1:]:
        f = line.split()
        if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
            continue
        hexaddr, hexport = f[1].split(":")
        raw = bytes.fromhex(hexaddr)
        # /proc prints each 32-bit word in host (little-endian) order.
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        addr = ipaddress.ip_address(raw)
        out.append(f"[{addr}]:{int(hexport, 16)}" if v6 else f"{addr}:{int(hexport, 16)}")
print("\n".join(sorted(out)))
PY
}

listening() { # HOST PORT
    python3 -c 'import socket,sys; socket.create_connection((sys.argv[1],int(sys.argv[2])),1).close()' "$1" "$2" 2>/dev/null
}

# desktop_build [debug|release]: the gateway and keys-tool binaries, unless GATEWAY_BIN is set
# (keys-tool is then taken from beside it).
desktop_build() {
    if [ -z "${GATEWAY_BIN:-}" ]; then
        local profile="${1:-debug}" flag=()
        [ "$profile" = debug ] || flag=(--release)
        desktop_log "cargo build ${flag[*]} -p gateway -p keys-tool"
        (cd "$DESKTOP_ROOT" && cargo build --quiet --locked "${flag[@]}" -p gateway -p keys-tool)
        GATEWAY_BIN="$DESKTOP_ROOT/target/$profile/gateway"
        KEYS_TOOL_BIN="$DESKTOP_ROOT/target/$profile/keys-tool"
    fi
    GATEWAY_BIN="$(realpath "$GATEWAY_BIN")"
    KEYS_TOOL_BIN="${KEYS_TOOL_BIN:-$(dirname "$GATEWAY_BIN")/keys-tool}"
    [ -x "$GATEWAY_BIN" ] && [ -x "$KEYS_TOOL_BIN" ] || desktop_die "no gateway/keys-tool binary at $GATEWAY_BIN"
}

# desktop_pod WORKDIR: starts Xvfb, the xterm, x11vnc and websockify. Sets DISPLAY_NUM,
# POD_ADDR, VNC_PORT, VNC_PASSWORD and the log paths X11VNC_LOG, WEBSOCKIFY_LOG.
desktop_pod() {
    local work="$1" i
    # Xvfb picks a free display itself and writes its number to fd 3.
    Xvfb -displayfd 3 -screen 0 "${DESKTOP_WIDTH}x${DESKTOP_HEIGHT}x24" -nolisten tcp \
        3>"$work/display" >"$work/xvfb.log" 2>&1 &
    DESKTOP_PIDS+=($!)
    wait_for 20 "Xvfb to choose a display" test -s "$work/display"
    DISPLAY_NUM=":$(head -n1 "$work/display")"

    # The xterm fills the screen; its shell prints the banner and waits for keys.
    DISPLAY="$DISPLAY_NUM" xterm -geometry 160x55+0+0 -bg "$DESKTOP_XTERM_BG" -fg white \
        -fa '' -fn fixed -title "$DESKTOP_BANNER" \
        -e bash --norc --noprofile -c "echo $DESKTOP_BANNER; exec bash --norc --noprofile -i" \
        >"$work/xterm.log" 2>&1 &
    DESKTOP_PIDS+=($!)
    wait_for 20 "the xterm window" env DISPLAY="$DISPLAY_NUM" xwininfo -name "$DESKTOP_BANNER"

    VNC_PORT="$(free_port 127.0.0.1)"
    X11VNC_LOG="$work/x11vnc.log"
    # Loopback only, IPv4 only (-noipv6: no [::] listener), no password (the gateway is the
    # gate, as in abcdesktop where only the pod's websockify reaches the VNC server).
    # A VNC password, as abcdesktop's pods have (launchdesktop hands it to the client).
    VNC_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
    x11vnc -storepasswd "$VNC_PASSWORD" "$work/vncpasswd" >/dev/null 2>&1
    # -rfbportv6 -1: without it libvncserver still opens [::]:5900 despite -noipv6.
    x11vnc -display "$DISPLAY_NUM" -rfbport "$VNC_PORT" -listen 127.0.0.1 -noipv6 -rfbportv6 -1 \
        -rfbauth "$work/vncpasswd" -forever -shared -noxdamage -o "$X11VNC_LOG" >/dev/null 2>&1 &
    DESKTOP_PIDS+=($!)
    X11VNC_PID=$!
    wait_for 30 "x11vnc on 127.0.0.1:$VNC_PORT" listening 127.0.0.1 "$VNC_PORT"
    local socks
    socks="$(listeners_of "$X11VNC_PID")"
    [ "$socks" = "127.0.0.1:$VNC_PORT" ] || desktop_die "x11vnc listens on: $socks (want 127.0.0.1:$VNC_PORT only)"

    # The pod address: a random 127.0.0.x whose port 6081 is free.
    POD_ADDR=""
    for i in $(seq 40); do
        local cand="127.0.0.$((RANDOM % 250 + 3))"
        if port_is_free "$cand" 6081; then POD_ADDR="$cand"; break; fi
    done
    [ -n "$POD_ADDR" ] || desktop_die "no 127.0.0.x with a free port 6081"
    WEBSOCKIFY_LOG="$work/websockify.log"
    # --web: the same process also serves the page, for the control measurement (noVNC
    # straight to websockify, no gateway); the gateway only ever sends it upgrades.
    websockify --web "$work/www" "$POD_ADDR:6081" "127.0.0.1:$VNC_PORT" >"$WEBSOCKIFY_LOG" 2>&1 &
    DESKTOP_PIDS+=($!)
    wait_for 30 "websockify on $POD_ADDR:6081" listening "$POD_ADDR" 6081
}

# desktop_www WORKDIR: the page (index.html) and noVNC's modules, served from WORKDIR/www.
desktop_www() {
    local work="$1"
    mkdir -p "$work/www/novnc"
    cp -r "$DESKTOP_HERE/node_modules/@novnc/novnc/core" "$DESKTOP_HERE/node_modules/@novnc/novnc/vendor" \
        "$work/www/novnc/"
    cp "$DESKTOP_HERE/index.html" "$work/www/index.html"
}

# desktop_keys WORKDIR: throw-away keys in WORKDIR/keys. Sets KEYS.
desktop_keys() {
    KEYS="$1/keys"
    "$KEYS_TOOL_BIN" gen --out "$KEYS" --bits 2048 >/dev/null 2>&1
}

# mint KEYDIR TARGET [EXP]: a pyos-shaped desktop token.
mint() {
    "$KEYS_TOOL_BIN" mint --signing-key "$1/abcdesktop_jwt_desktop_signing_private_key.pem" \
        --payload-key "$1/abcdesktop_jwt_desktop_payload_public_key.pem" --target "$2" --exp "${3:-3600}" \
        --allow-loopback
}

# desktop_gateway WORKDIR: writes WORKDIR/gateway.toml and starts the gateway on
# 127.0.0.1:${GATEWAY_PORT:-0} (admin on a free port). Sets GATEWAY_ADDR, ADMIN_ADDR, GATEWAY_LOG.
desktop_gateway() {
    local work="$1"
    ADMIN_ADDR="127.0.0.1:$(free_port 127.0.0.1)"
    GATEWAY_LOG="$work/gateway.log"
    cat >"$work/gateway.toml" <<TOML
listen = "127.0.0.1:${GATEWAY_PORT:-0}"
node_name = "desktop-demo"

[keys]
signing_public_key = "$KEYS/abcdesktop_jwt_desktop_signing_public_key.pem"
payload_private_key = "$KEYS/abcdesktop_jwt_desktop_payload_private_key.pem"

[auth]
allow_loopback = true

[admin]
listen = "$ADMIN_ADDR"

[website]
static_dir = "$work/www"
TOML
    "$GATEWAY_BIN" --config "$work/gateway.toml" >"$GATEWAY_LOG" 2>&1 &
    DESKTOP_PIDS+=($!)
    wait_for 30 "the gateway to listen" grep -q "gateway listening" "$GATEWAY_LOG"
    GATEWAY_ADDR="$(sed -n 's/.*gateway listening.*addr=\([0-9.:]*\).*/\1/p' "$GATEWAY_LOG" | head -n1)"
    [ -n "$GATEWAY_ADDR" ] || desktop_die "cannot read the gateway's address from $GATEWAY_LOG"
    wait_for 30 "the admin listener" listening "${ADMIN_ADDR%:*}" "${ADMIN_ADDR##*:}"
}
