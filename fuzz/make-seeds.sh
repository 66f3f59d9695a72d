#!/usr/bin/env bash
# Rewrites fuzz/seeds/ from scratch: real tokens minted with the committed throw-away fuzz keys
# (fuzz/keys/) by keys-tool and by pyos's own libraries (PyJWT 2.4.0 + pycryptodome, through
# gateway-bin/tests/interop/pyos.py), wrapped in each target's input format (fuzz/props/*.rs), plus
# the route table's paths, the example config and hand-written HTTP requests.
#
#   bash fuzz/make-seeds.sh        # needs python3 with PyJWT 2.4.0 and pycryptodome
#                                  # (bash scripts/install-test-deps.sh installs them)
#
# Tokens expire in 2100 or later: the targets fix "now" at 1 800 000 000 (2027), but
# http_request runs a real gateway, which reads the wall clock. PKCS#1 v1.5 and OAEP
# encryption are randomised, so every run writes different bytes; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

keys=fuzz/keys
signing_priv=$keys/abcdesktop_jwt_desktop_signing_private_key.pem
payload_pub=$keys/abcdesktop_jwt_desktop_payload_public_key.pem
payload_priv=$keys/abcdesktop_jwt_desktop_payload_private_key.pem
now=1800000000             # the targets' fixed now
lifetime=3000000000        # keys-tool: exp = now + lifetime, in 2122
py_lifetime=2500000000     # pyos.py: exp = wall clock + lifetime, after 2100

cargo build -q --locked -p keys-tool
keys_tool="${CARGO_TARGET_DIR:-target}/debug/keys-tool"

kt() { # target [mode] [now] [lifetime]
    local payload=$payload_pub
    [ "${2:-pkcs1}" = rsapublickey ] && payload=$payload_priv
    "$keys_tool" mint --signing-key "$signing_priv" --payload-key "$payload" \
        --target "$1" --mode "${2:-pkcs1}" --now "${3:-$now}" --exp "${4:-$lifetime}" --force
}
py() { # target mode
    python3 gateway-bin/tests/interop/pyos.py mint "$signing_priv" "$payload_pub" "$1" "$py_lifetime" "$2"
}

export KT_IP KT_NAME KT_LOOP KT_OAEP KT_RSAPUB KT_EXPIRED PY_IP PY_LOOP PY_OAEP
KT_IP=$(kt 10.244.1.23)
KT_NAME=$(kt fry-3a9c1.desktop.abcdesktop.svc.cluster.local)
KT_LOOP=$(kt 127.0.0.1)
KT_OAEP=$(kt 10.244.1.24 oaep-sha256)
KT_RSAPUB=$(kt 10.244.1.25 rsapublickey)
KT_EXPIRED=$(kt 10.244.1.26 pkcs1 1700000000 420)
PY_IP=$(py 10.244.2.7 pkcs1)
PY_LOOP=$(py 127.0.0.1 pkcs1)
PY_OAEP=$(py fd00::1:23 oaep-sha256)

rm -rf fuzz/seeds
python3 - <<'PY'
import base64, json, os

env = os.environ
kt_ip, kt_name, kt_loop = env["KT_IP"], env["KT_NAME"], env["KT_LOOP"]
kt_oaep, kt_rsapub, kt_expired = env["KT_OAEP"], env["KT_RSAPUB"], env["KT_EXPIRED"]
py_ip, py_loop, py_oaep = env["PY_IP"], env["PY_LOOP"], env["PY_OAEP"]
good = [kt_ip, kt_name, py_ip]


def write(target, name, data):
    d = os.path.join("fuzz/seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hash_of(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["hash"]


# token_pipeline: the bytes are header, query and path at once.
for name, tok in [("keys_tool_ip", kt_ip), ("keys_tool_name", kt_name), ("pyjwt_ip", py_ip),
                  ("expired", kt_expired)]:
    write("token_pipeline", name, tok)
write("token_pipeline", "bearer", "Bearer " + kt_ip)
write("token_pipeline", "query", "x=1&jwt_token=" + py_ip)
write("token_pipeline", "container_path", "/container/" + kt_ip + "/6081/vnc.html")
write("token_pipeline", "not_a_jws", "a.b.c")

# token_extract: flags (bit 0 header, bit 1 query, bits 2-7 max length), header NUL query NUL
# the container segment (what the route regex's `token` group holds; "" for other routes).
def parts(flags, header, query, path):
    segment = path.split("/")[2] if path.startswith("/container/") else ""
    return bytes([flags]) + header + b"\0" + query.encode() + b"\0" + segment.encode()

write("token_extract", "all_three", parts(3, b"Bearer " + kt_ip.encode(), "jwt_token=" + py_ip,
                                          "/container/" + kt_name + "/6081/x"))
write("token_extract", "small_bound", parts(3 | 8 << 2, kt_ip.encode(), "a.b.c", "/container/a.b.c/29781"))
write("token_extract", "query_fallback", parts(2, b"", "x=1&JWT_TOKEN=&" + kt_ip, "/websockify"))
write("token_extract", "query_case", parts(2, b"", "x=1&JWT_TOKEN=" + py_ip, "/broadcast"))
write("token_extract", "header_only", parts(1, kt_ip.encode(), "", "/container/Bearer " + kt_ip + "/6081"))
write("token_extract", "not_utf8", parts(3, b"\xff\xfeBearer x", "jwt_token=", "/container//6081/"))
write("token_extract", "container_root", parts(0, b"", "", "/container/" + py_ip + "/29786"))

# jws_verify: mode 0 = raw token; 1 = chosen claims then mutations; 2 = chosen header; 3 = transplant.
for name, tok in [("keys_tool_ip", kt_ip), ("keys_tool_oaep", kt_oaep), ("pyjwt_ip", py_ip),
                  ("pyjwt_oaep", py_oaep), ("expired", kt_expired)]:
    write("jws_verify", "raw_" + name, b"\0" + tok.encode())
header, claims, sig = kt_ip.split(".")
write("jws_verify", "raw_alg_none", b"\0" + (b64u(b'{"alg":"none"}') + "." + claims + ".").encode())
write("jws_verify", "raw_hs256", b"\0" + (b64u(b'{"alg":"HS256","typ":"JWT"}') + "." + claims + "." + sig).encode())
write("jws_verify", "raw_padded_sig", b"\0" + (kt_ip + "==").encode())
# mode 1: kind 1 (structured), exp future, nbf absent, hash string "aGk=", then mutations.
claims1 = bytes([1, 1, 1, 0, 0, 3, 4]) + b"aGk="
write("jws_verify", "mutate_flip", b"\1" + claims1 + bytes([0, 40, 0, 1]))
write("jws_verify", "mutate_insert_dot", b"\1" + claims1 + bytes([6, 30, 0, 0]))
write("jws_verify", "mutate_truncate", b"\1" + claims1 + bytes([4, 200, 0, 0]))
write("jws_verify", "pyos_claims_expired", b"\1" + bytes([5, 3, 0, 0, 3, 4]) + b"aGk=")
write("jws_verify", "raw_claims", b"\1" + bytes([0, 30]) + b'{"exp":4102444800,"hash":"x"}')
# mode 2: tricky headers (index into TRICKY_HEADERS), then claims.
for i in range(14):
    write("jws_verify", "header_%02d" % i, bytes([2, 2, i]) + claims1)
write("jws_verify", "header_fuzzed_alg", bytes([2, 1, 5]) + b"HS256" + claims1)
# mode 3: a transplanted signature.
write("jws_verify", "transplant", bytes([3, 0, 0]) + (header + "." + claims).encode())

# payload_target: mode, policy byte (bit 0 loopback, bits 1-3 suffix choice), then data.
for name, tok in [("pkcs1", kt_ip), ("pkcs1_name", kt_name), ("oaep", kt_oaep),
                  ("rsapublickey", kt_rsapub), ("pyjwt_oaep_v6", py_oaep)]:
    write("payload_target", "hash_" + name, b"\2\0" + hash_of(tok).encode())
write("payload_target", "ciphertext_pkcs1", b"\0\0" + base64.b64decode(hash_of(kt_ip)))
write("payload_target", "ciphertext_short", b"\1\0" + base64.b64decode(hash_of(py_ip))[:64])
write("payload_target", "hash_unpadded", b"\2\0" + hash_of(kt_ip).rstrip("=").encode())
for i, text in enumerate(["10.244.1.23", "fry-3a9c1.desktop.abcdesktop.svc.cluster.local",
                          "::ffff:10.0.0.1", "127.0.0.1"]):
    write("payload_target", "roundtrip_%d" % i, bytes([3, 1, i % 4]) + text.encode())
for i, (policy, text) in enumerate([(0, "fd00::1:23"), (1, "127.0.0.1"), (0, "169.254.169.254"),
                                    (4, "pod.svc.cluster.local"), (0, "0x7f.1"), (0, "a..b.svc.cluster.local"),
                                    (6, "pod.desktop.abcdesktop.svc.example.org")]):
    write("payload_target", "validate_%d" % i, bytes([4, policy]) + text.encode())
write("payload_target", "validate_own_suffix", bytes([4, 10, 9]) + b".example." + b"pod.example.")

# route_match: table flags (bit 0 static site, bit 1 fuzzed ports, bits 2-7 route to disable + 1).
paths = ["/healthz", "/node", "/websockify", "/signalling", "/container/%s/6081/vnc.html" % kt_ip,
         "/container/%s/29781" % kt_ip, "/container/6081", "/container/t/22/x", "/terminals/123/size",
         "/terminals/123", "/terminals", "/spawner/getproclist", "/filer", "/printerfiler",
         "/broadcast", "/sound", "/microphone", "/gamepad", "/snapshot/x", "/speedtest//x", "/console",
         "/img/app/a.svg", "/API/manager/image", "/API/composer/launchdesktop", "/oauth",
         "/u8_1_11025", "/alaw8_1_8000", "/", "/x/terminals/1/size", "/filer/container/tok/1/y",
         "/container/tok/6081junk"]
for i, p in enumerate(paths):
    write("route_match", "path_%02d" % i, b"\0" + p.encode())
write("route_match", "static_site", b"\1/index.html")
write("route_match", "own_ports", b"\2\x0a/container/t/22/x")  # allow-list {22, 6081}
write("route_match", "disabled_spawner", bytes([(12 << 2)]) + b"/spawner")

# config_parse: the example config and a few variants.
with open("manifests/gateway.example.toml", "rb") as f:
    write("config_parse", "example", f.read())
write("config_parse", "minimal", 'listen = "127.0.0.1:30443"\n')
write("config_parse", "overrides", """
[keys]
payload_private_key = "/config.payload/k.pem"
payload_padding = "oaep-sha256"
extra_signing_public_keys = ["/a.pem", "/b.pem"]
[auth]
max_token_len = 1
dns_suffixes = ["cluster.local", ".example.org"]
allow_loopback = true
[limits]
max_header_bytes = 8192
[upstream]
port_map = { "6081" = 16081, "06081" = 1 }
resolver = ["10.96.0.10", "10.96.0.11:5353"]
[container]
ports = [6081]
[routes.spawner]
port = 1234
body_limit = "8k"
[routes.gamepad]
enabled = false
[website]
static_dir = "/var/webModules"
""")
write("config_parse", "bad_limits", "[limits]\nmax_header_bytes = 100\n")
write("config_parse", "unknown_key", "lisen = \"0.0.0.0:1\"\n")
write("config_parse", "bad_route", "[routes.pyos]\nport = 1\n")

# http_request: raw client bytes.
def req(lines, body=b""):
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

write("http_request", "healthz", req(["GET /healthz HTTP/1.1", "Host: gw"]))
write("http_request", "node_http10", req(["GET /node HTTP/1.0"]))
write("http_request", "spawner", req(["GET /spawner/getproclist HTTP/1.1", "Host: gw",
                                      "ABCAuthorization: Bearer " + kt_loop]))
write("http_request", "spawner_pyjwt", req(["GET /spawner/getproclist HTTP/1.1", "Host: gw",
                                            "ABCAuthorization: Bearer " + py_loop]))
write("http_request", "spawner_expired", req(["GET /spawner HTTP/1.1", "Host: gw",
                                              "ABCAuthorization: Bearer " + kt_expired]))
write("http_request", "spawner_forged", req(["GET /spawner HTTP/1.1", "Host: gw",
                                             "ABCAuthorization: Bearer " + kt_loop[:-8] + "AAAAAAAA"]))
write("http_request", "websockify", req(["GET /websockify?jwt_token=%s HTTP/1.1" % kt_loop, "Host: gw",
                                         "Connection: Upgrade", "Upgrade: websocket",
                                         "Sec-WebSocket-Version: 13",
                                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]))
write("http_request", "container", req(["GET /container/%s/6081/vnc.html?x=1 HTTP/1.1" % kt_loop, "Host: gw"]))
write("http_request", "container_port_refused", req(["GET /container/%s/22/ HTTP/1.1" % kt_loop, "Host: gw"]))
write("http_request", "terminals", req(["GET /terminals/1?%s HTTP/1.1" % py_loop, "Host: gw"]))
write("http_request", "filer_post", req(["POST /filer HTTP/1.1", "Host: gw", "Content-Length: 5",
                                         "ABCAuthorization: " + kt_loop], b"hello"))
write("http_request", "filer_chunked", req(["POST /filer HTTP/1.1", "Host: gw", "Transfer-Encoding: chunked",
                                            "ABCAuthorization: " + kt_loop], b"5\r\nhello\r\n0\r\n\r\n"))
write("http_request", "spawner_too_large", req(["POST /spawner HTTP/1.1", "Host: gw",
                                                "Content-Length: 99999999", "ABCAuthorization: " + kt_loop]))
write("http_request", "expect_continue", req(["PUT /filer HTTP/1.1", "Host: gw", "Expect: 100-continue",
                                              "Content-Length: 2", "ABCAuthorization: " + kt_loop], b"hi"))
write("http_request", "pipelined", req(["GET /healthz HTTP/1.1", "Host: gw"]) +
      req(["HEAD / HTTP/1.1", "Host: gw"]) + req(["GET /pyos-nothing HTTP/1.1", "Host: gw"]))
write("http_request", "pyos_api", req(["GET /API/healthz HTTP/1.1", "Host: gw"]))
write("http_request", "garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00")
write("http_request", "h2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
PY
du -sh fuzz/seeds/*
