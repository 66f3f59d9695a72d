#!/usr/bin/env bash
# The image's build, without a container engine: runs the `cargo build` command of the
# Dockerfile's build stage exactly as the Dockerfile writes it (read from the Dockerfile, so the
# two cannot drift), then checks what the final stage would ship:
#   - both binaries the Dockerfile copies exist and report this workspace's version;
#   - they need nothing but what gcr.io/distroless/cc-debian12 provides (glibc, libgcc_s) and no
#     glibc symbol newer than Debian 12's 2.36;
#   - they work together: keys-tool generates keys, the gateway accepts them (--check-config),
#     keys-tool mints a token and inspects it with the gateway's verdict;
#   - the HTTPS overlay's two gateway configs serve side by side (see https_pair).
# What this cannot do here (no Docker engine, no registry): pull the base images, build the
# image itself, push it. The release workflow does those.
#
#   bash scripts/check-release-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The RUN line with `cargo build`, continuation lines joined, up to the `&&` that copies out.
instructions="$(grep -v '^[[:space:]]*#' Dockerfile | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')"
build="$(grep -m1 -o 'cargo build[^&]*' <<<"$instructions" | sed 's/ *$//')"
[ -n "$build" ] || { echo "check-release-build: no cargo build line in the Dockerfile" >&2; exit 1; }
binaries=(gateway keys-tool)
for bin in "${binaries[@]}"; do
    grep -q "target/release/$bin" <<<"$instructions" \
        || { echo "check-release-build: the Dockerfile does not ship $bin" >&2; exit 1; }
done

# The build runs in a copy of what `COPY . .` puts in the image: the files git knows (tracked,
# or untracked and not ignored) minus what .dockerignore excludes (last matching pattern wins,
# `!` re-includes, a pattern excluding a directory excludes what is below it, `**/` any depth).
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
context="$work/context"
git ls-files -co --exclude-standard -z | python3 -c '
import fnmatch, os, shutil, sys
dest = sys.argv[1]
rules = []
for line in open(".dockerignore"):
    line = line.strip()
    if line and not line.startswith("#"):
        rules.append((line.startswith("!"), line.lstrip("!").strip("/")))
def excluded(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for keep, pattern in rules:
        tail = pattern[3:] if pattern.startswith("**/") else None
        hit = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or (
            tail is not None and any(fnmatch.fnmatchcase(part, tail) for part in parts))
        if hit:
            verdict = not keep
    return verdict
for path in sys.stdin.read().split("\0"):
    if path and os.path.isfile(path) and not excluded(path):
        os.makedirs(os.path.join(dest, os.path.dirname(path)), exist_ok=True)
        shutil.copy2(path, os.path.join(dest, path))
' "$context"

echo "check-release-build: in the image's build context ($(find "$context" -type f | wc -l) files): $build"
# Word splitting is wanted: the command is a plain word list (checked: no quotes, no variables).
case "$build" in *[\"\'\$\`]*) echo "check-release-build: unexpected shell syntax in: $build" >&2; exit 1 ;; esac
# The dependencies build into the usual target dir (reused across runs); the workspace's own
# crates, found at the context's paths, are rebuilt from the context's copy.
target="$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"
# shellcheck disable=SC2086
(cd "$context" && CARGO_TARGET_DIR="$target" $build)

release="$target/release"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
status=0
fail() { echo "check-release-build: $*" >&2; status=1; }

for bin in "${binaries[@]}"; do
    path="$release/$bin"
    [ -x "$path" ] || { fail "$path missing"; continue; }
    out="$("$path" --version)"
    [[ "$out" == *"$version"* ]] || fail "$bin --version says '$out', not $version"
    # Shared libraries: only glibc's and libgcc_s, which the distroless cc image carries.
    while read -r lib; do
        case "$lib" in
            libc.so.6 | libm.so.6 | libgcc_s.so.1 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-*.so.*) ;;
            *) fail "$bin needs $lib, which gcr.io/distroless/cc-debian12 does not have" ;;
        esac
    done < <(readelf -d "$path" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    newest="$(readelf -V "$path" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
    [ "$(printf '%s\n' "$newest" GLIBC_2.36 | sort -V | tail -1)" = GLIBC_2.36 ] \
        || fail "$bin needs $newest; Debian 12 (the runtime image) has GLIBC_2.36"
done

if [ "$status" -eq 0 ]; then
    "$release/keys-tool" gen --out "$work/keys" --bits 2048 >"$work/gen.log" 2>&1 \
        || { cat "$work/gen.log" >&2; fail "keys-tool gen fails"; }
    cat >"$work/gateway.toml" <<EOF
listen = "127.0.0.1:30443"
[keys]
signing_public_key = "$work/keys/abcdesktop_jwt_desktop_signing_public_key.pem"
payload_private_key = "$work/keys/abcdesktop_jwt_desktop_payload_private_key.pem"
[admin]
listen = "127.0.0.1:9090"
EOF
    "$release/gateway" --config "$work/gateway.toml" --check-config >"$work/check.log" 2>&1 \
        || { cat "$work/check.log" >&2; fail "gateway --check-config refuses keys-tool's keys"; }
    token="$("$release/keys-tool" mint \
        --signing-key "$work/keys/abcdesktop_jwt_desktop_signing_private_key.pem" \
        --payload-key "$work/keys/abcdesktop_jwt_desktop_payload_public_key.pem" --target 10.244.1.23)"
    "$release/keys-tool" inspect "$token" \
        --signing-key "$work/keys/abcdesktop_jwt_desktop_signing_public_key.pem" \
        --payload-key "$work/keys/abcdesktop_jwt_desktop_payload_private_key.pem" >"$work/inspect.log" 2>&1 \
        || { cat "$work/inspect.log" >&2; fail "keys-tool inspect refuses a token keys-tool minted"; }
fi

# The HTTPS router variant with today's one-listener binary: overlays/router-https runs two
# gateway processes in one network namespace (a pod); their two configs side by side on
# loopback, plain /healthz on one, /healthz over TLS (h2 and http/1.1) on the other, both
# admin listeners up, both stop on SIGTERM. Ports are the configs' with loopback free ports
# instead of 80/443/9090/9091; the certificate is a throw-away self-signed one.
https_pair() {
    local overlay=manifests/overlays/router-https dir="$work/https" ports pids=() i
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -keyout "$dir/tls.key" -out "$dir/tls.crt" >/dev/null 2>&1 || { fail "openssl req"; return; }
    read -r -a ports < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    for i in 0 1; do
        name=("gateway.toml" "gateway-tls.toml")
        sed -e "0,/^listen = / s|^listen = \"0.0.0.0:[0-9]*\"|listen = \"127.0.0.1:${ports[$i]}\"|" \
            -e "/^\[admin\]/,/^listen/ s|^listen = \"0.0.0.0:[0-9]*\"|listen = \"127.0.0.1:${ports[$((i + 2))]}\"|" \
            -e "s|/etc/abcdesktop-gateway-tls/|$dir/|" "$overlay/${name[$i]}" >"$dir/$i.toml"
        JWT_DESKTOP_SIGNING_PUBLIC_KEY="$work/keys/abcdesktop_jwt_desktop_signing_public_key.pem" \
        JWT_DESKTOP_PAYLOAD_PRIVATE_KEY="$work/keys/abcdesktop_jwt_desktop_payload_private_key.pem" \
            "$release/gateway" --config "$dir/$i.toml" >"$dir/$i.log" 2>&1 &
        pids+=("$!")
    done
    local deadline=$((SECONDS + 20)) up=0
    while [ "$SECONDS" -lt "$deadline" ]; do
        up=0
        for i in 2 3; do curl -fs -o /dev/null "http://127.0.0.1:${ports[$i]}/livez" && up=$((up + 1)); done
        [ "$up" -eq 2 ] && break
        sleep 0.2
    done
    if [ "$up" -ne 2 ]; then
        fail "the HTTPS overlay's two gateways did not both start"; cat "$dir"/*.log >&2
    else
        [ "$(curl -fs "http://127.0.0.1:${ports[0]}/healthz")" = OK ] || fail "plain /healthz"
        [ "$(curl -fsk --http2 -w '%{http_version}' -o /dev/null "https://127.0.0.1:${ports[1]}/healthz")" = 2 ] \
            || fail "/healthz over TLS with h2"
        [ "$(curl -fsk --http1.1 "https://127.0.0.1:${ports[1]}/healthz")" = OK ] || fail "/healthz over TLS, http/1.1"
        curl -fs -o /dev/null "http://127.0.0.1:${ports[1]}/healthz" 2>/dev/null \
            && fail "the TLS listener answers plain HTTP"
    fi
    kill -TERM "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    for i in "${pids[@]}"; do
        while kill -0 "$i" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if kill -0 "$i" 2>/dev/null; then kill -KILL "$i"; fail "a gateway ignored SIGTERM"; fi
        wait "$i" || fail "a gateway exited $? after SIGTERM"
    done
}
[ "$status" -eq 0 ] && https_pair

[ "$status" -eq 0 ] && echo "check-release-build: ${binaries[*]} $version build as the Dockerfile builds them and run on Debian 12's glibc; the HTTPS overlay's two gateways serve side by side"
exit "$status"
