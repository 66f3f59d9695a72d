#!/usr/bin/env bash
# Installs what the real-desktop browser test and `scripts/desktop-demo.sh` need, from Debian
# packages and npm only (no browser download):
#   - the desktop pod: Xvfb, an xterm, x11vnc, websockify;
#   - the X server's own screenshot: xwd (x11-apps); xwininfo (x11-utils) to see the window;
#   - the client: Chromium, and (npm, pinned by package-lock.json in this folder) noVNC and
#     puppeteer-core, which drives the system Chromium over the DevTools protocol.
# Idempotent: does nothing when everything is already there. Exit 3 (with a message) when the
# packages cannot be installed, so callers can skip with a clear reason.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

need=()
for pair in Xvfb:xvfb x11vnc:x11vnc websockify:websockify xterm:xterm xwd:x11-apps \
            xwininfo:x11-utils chromium:chromium node:nodejs npm:npm; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
# xterm's default font, and a font for the pages Chromium renders.
[ -e /usr/share/fonts/X11/misc/6x13-ISO8859-1.pcf.gz ] || need+=(xfonts-base)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)

if [ "${#need[@]}" -gt 0 ]; then
    echo "desktop/install: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt run instead of failing on its lock.
    apt_opts=(-o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
    if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq \
           && apt-get install "${apt_opts[@]}" "${need[@]}" >/dev/null; }; then
        echo "desktop/install: cannot install the Debian packages ${need[*]}" >&2
        exit 3
    fi
fi

if ! [ -f "$here/node_modules/@novnc/novnc/core/rfb.js" ] \
   || ! [ -f "$here/node_modules/puppeteer-core/package.json" ] \
   || ! cmp -s "$here/package-lock.json" "$here/node_modules/.installed-lock.json" 2>/dev/null; then
    echo "desktop/install: npm ci (noVNC, puppeteer-core)"
    # No browser download: puppeteer-core never fetches one; the env var is belt and braces.
    if ! PUPPETEER_SKIP_DOWNLOAD=1 npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null; then
        echo "desktop/install: npm ci failed" >&2
        exit 3
    fi
    cp "$here/package-lock.json" "$here/node_modules/.installed-lock.json"
fi
