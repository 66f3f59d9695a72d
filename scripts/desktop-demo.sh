#!/usr/bin/env bash
# A live desktop through the gateway, for a browser on this machine:
#   bash scripts/desktop-demo.sh [--listen 127.0.0.1:PORT]
# Installs what it needs (Debian packages and npm, see scripts/desktop/install.sh), starts a
# desktop pod on loopback (Xvfb + xterm, x11vnc, websockify on <pod>:6081), the gateway
# (release build) with throw-away keys and the noVNC page as its `/`, and prints one URL. The
# token travels in the URL's fragment, which the browser keeps to itself; the page hands it to
# /websockify?jwt_token=… as abcdesktop's client does. Ctrl-C stops everything.
set -euo pipefail
source "$(dirname "$0")/desktop/lib.sh"

listen="127.0.0.1:0"
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) listen="$2"; shift 2 ;;
        *) echo "usage: $0 [--listen 127.0.0.1:PORT]" >&2; exit 2 ;;
    esac
done
case "$listen" in
    127.*:*) GATEWAY_PORT="${listen##*:}" ;;
    *) echo "desktop-demo: --listen must be a 127.x.x.x:PORT address (the demo stays on loopback)" >&2; exit 2 ;;
esac

bash "$DESKTOP_HERE/install.sh"
desktop_build release
WORK="$(mktemp -d /tmp/desktop-demo.XXXXXX)"
trap 'desktop_cleanup; rm -rf "$WORK"' EXIT
trap 'echo; echo "desktop-demo: stopping"; exit 0' INT TERM

desktop_www "$WORK"
desktop_pod "$WORK"
desktop_keys "$WORK"
TOKEN="$(mint "$KEYS" "$POD_ADDR" $((8 * 3600)))"
GATEWAY_PORT="$GATEWAY_PORT" desktop_gateway "$WORK"
GATEWAY_PID="${DESKTOP_PIDS[-1]}"

cat <<TXT

abcdesktop gateway desktop demo: a desktop pod on $POD_ADDR (display $DISPLAY_NUM,
x11vnc 127.0.0.1:$VNC_PORT, websockify $POD_ADDR:6081), the gateway on http://$GATEWAY_ADDR
(metrics on http://$ADMIN_ADDR/metrics). Open this in a browser on this machine:

  http://$GATEWAY_ADDR/#token=$TOKEN&password=$VNC_PASSWORD

Logs: $WORK/*.log. Ctrl-C to stop.
TXT
# Until Ctrl-C (the gateway gets it too and stops gracefully), or until the gateway stops.
rc=0
wait "$GATEWAY_PID" || rc=$?
if [ "$rc" -ne 0 ]; then
    tail -n 20 "$GATEWAY_LOG" >&2
fi
echo "desktop-demo: stopped (gateway exit status $rc)"
exit "$rc"
