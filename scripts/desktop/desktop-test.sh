#!/usr/bin/env bash
# A real desktop through the gateway in a real browser (CI: called from .ci/run).
#
# Starts a desktop pod on loopback (Xvfb + xterm, x11vnc, websockify on <pod>:6081), the gateway
# (debug build, or GATEWAY_BIN) with throw-away keys and the noVNC page as its `/` static
# directory, and `gateway demo`; then headless Chromium (browser.mjs) checks that:
#   - noVNC connects through /websockify?jwt_token=… and its canvas equals the X server's screenshot;
#   - the tunnel gauge shows the session; keys typed in the browser run a command in the xterm;
#   - expired, forged, other-key and missing tokens get 401 before any upgrade, and neither
#     websockify nor x11vnc sees a connection;
#   - the `gateway demo` page shows its echo round trip and its spawner answer;
# and this script checks that no token appears in any log. It measures page load → connected
# through the gateway and straight to websockify, and the bytes each way.
#
# Screenshots go to a temporary folder (printed; DESKTOP_SHOTS to choose it). Skips, with a
# message and exit 0, only when the packages cannot be installed (DESKTOP_REQUIRED=1: fail).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

start=$SECONDS
set +e
bash "$DESKTOP_HERE/install.sh"
rc=$?
set -e
if [ "$rc" -eq 3 ] && [ "${DESKTOP_REQUIRED:-0}" != 1 ]; then
    echo "desktop-test: SKIPPED: the Debian/npm packages it needs cannot be installed here"
    exit 0
fi
[ "$rc" -eq 0 ] || exit "$rc"
echo "desktop-test: packages ready in $((SECONDS - start)) s"

desktop_build
WORK="$(mktemp -d /tmp/desktop-test.XXXXXX)"
SHOTS="${DESKTOP_SHOTS:-$WORK/screenshots}"
mkdir -p "$SHOTS"
DEMO_PID=""
on_exit() {
    local rc=$?
    [ -z "$DEMO_PID" ] || kill "$DEMO_PID" 2>/dev/null || true
    desktop_cleanup
    if [ "$rc" -ne 0 ]; then
        echo "desktop-test: FAILED (rc $rc); logs and screenshots kept in $WORK" >&2
        for f in "$WORK"/*.log; do
            echo "----- $f (last 30 lines)" >&2
            tail -n 30 "$f" >&2
        done
    fi
}
trap on_exit EXIT

desktop_www "$WORK"
desktop_pod "$WORK"
desktop_log "pod: display $DISPLAY_NUM, x11vnc 127.0.0.1:$VNC_PORT, websockify $POD_ADDR:6081"
desktop_keys "$WORK"
"$KEYS_TOOL_BIN" gen --out "$WORK/other-keys" --bits 2048 >/dev/null 2>&1
TOKEN="$(mint "$KEYS" "$POD_ADDR")"
TOKEN_EXPIRED="$(mint "$KEYS" "$POD_ADDR" -60)"
TOKEN_OTHER_KEY="$(mint "$WORK/other-keys" "$POD_ADDR")"
# Forged: the claims changed (a day more of life) under the original signature.
TOKEN_FORGED="$(python3 - "$TOKEN" <<'PY'
import base64, json, sys
h, p, s = sys.argv[1].split(".")
claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
claims["exp"] += 86400
p2 = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
print(f"{h}.{p2}.{s}")
PY
)"
desktop_gateway "$WORK"
desktop_log "gateway http://$GATEWAY_ADDR (admin $ADMIN_ADDR)"

# `gateway demo` on a kernel-chosen port; its address is on its first stdout line that has one.
"$GATEWAY_BIN" demo --listen 127.0.0.1:0 >"$WORK/demo.out" 2>"$WORK/demo.err" &
DEMO_PID=$!
wait_for 60 "gateway demo to print its address" grep -q "gateway on http://" "$WORK/demo.out"
DEMO_ADDR="$(sed -n 's|.*gateway on http://\([0-9.:]*\).*|\1|p' "$WORK/demo.out" | head -n1)"

export GATEWAY_ADDR ADMIN_ADDR DISPLAY_NUM POD_ADDR VNC_PASSWORD X11VNC_LOG WEBSOCKIFY_LOG SHOTS DEMO_ADDR \
    TOKEN TOKEN_EXPIRED TOKEN_FORGED TOKEN_OTHER_KEY
export XTERM_BG="$DESKTOP_XTERM_BG" VIEW_WIDTH="$DESKTOP_WIDTH" VIEW_HEIGHT="$((DESKTOP_HEIGHT + 24))"
timeout 300 node "$DESKTOP_HERE/browser.mjs"

# No token in any log of the desktop side: gateway, websockify, x11vnc, Xvfb, xterm. (The
# demo prints its own token on stdout on purpose; its log lines go to stderr.)
for t in "$TOKEN" "$TOKEN_EXPIRED" "$TOKEN_FORGED" "$TOKEN_OTHER_KEY"; do
    for f in "$WORK"/*.log "$WORK/demo.err"; do
        if grep -qF "$t" "$f"; then desktop_die "a token appears in $f"; fi
        # The signature alone is the secret part a log could leak in pieces.
        if grep -qF "${t##*.}" "$f"; then desktop_die "a token's signature appears in $f"; fi
    done
done
[ "$(grep -c "Got connection from client" "$X11VNC_LOG")" -gt 0 ] || desktop_die "x11vnc log shows no connection at all"
echo "ok   no token in the gateway, websockify, x11vnc or demo logs"

for f in "$SHOTS"/*.png; do echo "screenshot: $f"; done
echo "desktop-test: passed in $((SECONDS - start)) s"
