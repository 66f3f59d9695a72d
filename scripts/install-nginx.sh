#!/usr/bin/env bash
# Installs Debian's nginx, the reference the path-semantics test (gateway-bin/tests/proxy/paths_nginx.rs)
# compares the gateway with. Only the binary is used: the test runs it as its own process on
# 127.0.0.1 with a temporary prefix; the package's service is never started.
# Idempotent: does nothing when /usr/sbin/nginx is already there. Needs root (apt-get).
set -euo pipefail

NGINX=/usr/sbin/nginx
if [ -x "$NGINX" ]; then
    exit 0
fi

echo "install-nginx: apt-get install nginx"
# Keep the package scripts from starting a system nginx on port 80: invoke-rc.d asks
# policy-rc.d, and 101 means "not allowed". Only a policy file made here is removed again.
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
[ -x "$NGINX" ] || { echo "install-nginx: $NGINX still missing" >&2; exit 1; }
