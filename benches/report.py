#!/usr/bin/env python3
"""Turns benches/compare.sh's JSON reports into a markdown table and an SVG bar chart.

usage: report.py JSON_DIR META_FILE OUT.md OUT.svg

Every figure is the mean over the rounds of one compare.sh invocation; per-round values are
listed beside it. Ratios are gateway / nginx and gateway / HAProxy measured in the same
invocation; HAProxy checking the token is listed beside them.
"""
import glob
import json
import os
import sys
from collections import defaultdict

json_dir, meta_file, out_md, out_svg = sys.argv[1:5]
runs = defaultdict(list)  # (scenario, proxy) -> [report, ...] in round order
for path in sorted(glob.glob(os.path.join(json_dir, "*.json"))):
    scenario, proxy, _round = os.path.basename(path)[:-5].rsplit("-", 2)
    with open(path) as f:
        runs[(scenario, proxy)].append(json.load(f))
meta = dict(line.rstrip("\n").split("=", 1) for line in open(meta_file) if "=" in line)

ORIGINAL_TOKENS_PER_S = 1100  # the original gateway, 1024-bit keys (crypto-and-peers.md §2)


def values(scenario, proxy, fn):
    return [fn(r) for r in runs.get((scenario, proxy), [])]


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def fmt(x, unit=""):
    if x != x:  # NaN
        return "—"
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return s + unit


def per_round(xs, unit=""):
    return " / ".join(fmt(x, unit) for x in xs)


rps = lambda r: r["requests_per_s"]
ok_ps = lambda r: r["ok"] / r["elapsed_s"]
refused_ps = lambda r: r["refused"] / r["elapsed_s"]
p99 = lambda r: r["latency"]["p99_us"]
p50 = lambda r: r["latency"]["p50_us"]
mbps = lambda r: r["bytes_per_s"] / 1e6
per_cpu = lambda r: r["requests"] / r["proxy_cpu_s"] if r.get("proxy_cpu_s") else float("nan")
refused_per_cpu = lambda r: r["refused"] / r["proxy_cpu_s"] if r.get("proxy_cpu_s") else float("nan")
ok_per_cpu = lambda r: r["ok"] / r["proxy_cpu_s"] if r.get("proxy_cpu_s") else float("nan")

PEERS = [("nginx", "nginx"), ("haproxy", "HAProxy"), ("haproxy_jwt", "HAProxy + jwt_verify")]
RATIO_TO = [("nginx", "nginx"), ("haproxy", "HAProxy")]  # the targets are against these two
rows = []  # (scenario, metric, one cell per peer, gateway, one ratio per RATIO_TO, target text)
chart = []  # (label, ratio, target, higher_is_better)


def verdict(ratio, target, higher_is_better):
    if target is None or ratio != ratio:
        return ""
    met = ratio >= target if higher_is_better else ratio <= target
    return "✔" if met else "✘"


def ab(scenario, metric, fn, unit, target=None, higher_is_better=True, chart_label=None):
    g = values(scenario, "gateway", fn)
    if not g:
        return
    cells = []
    for peer, _ in PEERS:
        v = values(scenario, peer, fn)
        cells.append(f"{fmt(mean(v), unit)} ({per_round(v)})" if v else "—")
    ratios, verdicts = [], []
    for peer, name in RATIO_TO:
        v = values(scenario, peer, fn)
        ratio = mean(g) / mean(v) if v and mean(v) else float("nan")
        ratios.append(f"**{fmt(ratio)}×**" if ratio == ratio else "")
        if target is not None and v:
            verdicts.append(f"{verdict(ratio, target, higher_is_better)} {name}")
        if chart_label:
            chart.append((f"{chart_label} vs {name}", ratio, target if target is not None else 1.0,
                          higher_is_better))
    target_text = ""
    if target is not None:
        target_text = ("≥ " if higher_is_better else "≤ ") + f"{target}×: " + ", ".join(verdicts)
    rows.append((scenario, metric, *cells, f"{fmt(mean(g), unit)} ({per_round(g)})", *ratios,
                 target_text))


def gateway_only(scenario, metric, fn, unit, ratio_to=None, ratio_label="", target=None):
    g = values(scenario, "gateway", fn)
    if not g:
        return
    ratio_text, verdict_text = "", ""
    if ratio_to:
        ratio = mean(g) / ratio_to
        ratio_text = f"**{fmt(ratio)}×** {ratio_label}"
        if target is not None:
            verdict_text = ("✔ " if ratio >= target else "✘ ") + f"≥ {target}×"
    rows.append((scenario, metric, *["—"] * len(PEERS), f"{fmt(mean(g), unit)} ({per_round(g)})",
                 ratio_text, *[""] * (len(RATIO_TO) - 1), verdict_text))


user_us = lambda r: r["proxy_user_s"] / r["requests"] * 1e6 if r.get("requests") else float("nan")
sys_us = lambda r: r["proxy_sys_s"] / r["requests"] * 1e6 if r.get("requests") else float("nan")
for scenario, what in (("cached", "cached GET"), ("close", "connection per request")):
    ab(scenario, "requests/s", rps, "", target=1.0, chart_label=f"{what} req/s")
    ab(scenario, "p99 latency µs", p99, "", target=1.0, higher_is_better=False,
       chart_label=f"{what} p99")
    ab(scenario, "p50 latency µs", p50, "", higher_is_better=False)
    ab(scenario, "requests per proxy CPU-second", per_cpu, "", target=1.0,
       chart_label=f"{what} req/CPU-s")
    ab(scenario, "proxy user µs per request", user_us, "", higher_is_better=False)
    ab(scenario, "proxy kernel µs per request", sys_us, "", higher_is_better=False)
    ab(scenario, "non-2xx answers", lambda r: r["requests"] - r["ok"], "", higher_is_better=False)
ab("stream", "1 GiB download MB/s", mbps, "", target=1.0, chart_label="1 GiB download MB/s")
ab("stream", "MB per proxy CPU-second", lambda r: r["bytes"] / 1e6 / r["proxy_cpu_s"], "",
   chart_label="1 GiB download MB/CPU-s")
ab("stream", "time per 1 GiB, p50 ms", lambda r: p50(r) / 1000, "", higher_is_better=False)
ab("websocket", "echo round trips/s (64-byte binary)", rps, "", chart_label="WebSocket echo msg/s")
ab("websocket", "echo p99 µs", p99, "", higher_is_better=False)
ab("websocket", "round trips per proxy CPU-second", per_cpu, "", chart_label="WebSocket msg/CPU-s")
ab("ws64k", "64 KiB binary echo, MB/s each way", mbps, "", chart_label="WebSocket 64 KiB MB/s")
ab("ws64k", "MB per proxy CPU-second", lambda r: r["bytes"] / 1e6 / r["proxy_cpu_s"], "",
   chart_label="WebSocket 64 KiB MB/CPU-s")
ab("ws64k", "echo p99 µs", p99, "", higher_is_better=False)
for bits in (1024, 2048):
    s = f"unique{bits}"
    gateway_only(s, f"new tokens/s ({bits}-bit signing + payload keys)", ok_ps, "",
                 ORIGINAL_TOKENS_PER_S, "the original's 1 100/s (1024-bit)", 3.0 if bits == 1024 else None)
    gateway_only(s, "new tokens per proxy CPU-second", ok_per_cpu, "")
    gateway_only(s, "p99 latency µs", p99, "")
for pool in (1000, 300000, "throttled"):
    s = f"forged{pool}"
    if (s, "gateway") not in runs:
        continue
    what = ("300,000 distinct forgeries, default [abuse] throttling: 429 after 300 failures"
            if pool == "throttled" else f"{pool:,} distinct forgeries, throttling off")
    gateway_only(s, f"refusals/s ({what}, access log on)", refused_ps, "")
    gateway_only(s, "of which 429", lambda r: r["status"].get("429", 0) / r["elapsed_s"], "")
    gateway_only(s, "refusals per proxy CPU-second (= per core)", refused_per_cpu, "",
                 100000, "the 100 000/s per core target", 1.0)
    gateway_only(s, "access-log bytes/s", lambda r: r.get("log_bytes_per_s", float("nan")), "")
    gateway_only(s, "non-refused answers", lambda r: r["requests"] - r["refused"], "")

idle = {}
for proxy in ("nginx", "haproxy", "gateway"):
    rs = runs.get(("idle", proxy))
    if rs:
        r = rs[0]
        held = max(r["tunnels_held"], 1)
        idle[proxy] = (f"{r['tunnels_held']}/{r['connections']}",
                       (r["rss_held_kb"] - r["rss_before_kb"]) * 1024 / held / 1000)
if "gateway" in idle:
    none = ("—", float("nan"))
    peer_idle = [idle.get(p, none) for p, _ in PEERS]
    g = idle["gateway"]
    ratios = [g[1] / idle[p][1] if p in idle and idle[p][1] else float("nan") for p, _ in RATIO_TO]
    rows.append(("idle", "tunnels held", *[c[0] for c in peer_idle], g[0], *[""] * len(RATIO_TO), ""))
    rows.append(("idle", "RSS per idle tunnel, kB", *[fmt(c[1]) for c in peer_idle], fmt(g[1]),
                 *[f"**{fmt(x)}×**" for x in ratios], ""))
    for (_, name), x in zip(RATIO_TO, ratios):
        chart.append((f"RSS per idle tunnel vs {name}", x, 1.0, False))

with open(out_md, "w") as f:
    f.write(f"# Gateway vs nginx and HAProxy, {meta.get('date', '')}\n\n")
    f.write("Produced by `benches/compare.sh`. Every value is the mean of the rounds, with the "
            "per-round values in brackets; rounds alternate nginx, HAProxy, HAProxy checking the "
            "token, and the gateway. *HAProxy + jwt_verify* checks the RS256 signature of every "
            "request's token (algorithm pinned, 401 on failure) but cannot decrypt the `hash` "
            "claim and has no verdict cache; it routes to a fixed upstream. The gateway verifies, "
            "decrypts and caches. The proxy under "
            "test runs on its own core (1 nginx worker; 1 HAProxy thread; the gateway with 1 "
            "worker thread); the "
            "load generator and the upstream share the other core, so the load generator can be "
            "the bottleneck: *per proxy CPU-second* rows divide by the CPU time the proxy "
            "actually used and are the per-core efficiency.\n\n")
    f.write("| machine | |\n|---|---|\n")
    for k in ("date", "commit", "cpu", "nproc", "load", "rustc", "nginx", "haproxy", "settings"):
        f.write(f"| {k} | `{meta.get(k, '')}` |\n")
    head = ["scenario", "metric", *[n for _, n in PEERS], "gateway",
            *[f"gateway / {n} (or as stated)" for _, n in RATIO_TO], "target"]
    f.write("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for row in rows:
        f.write("| " + " | ".join(row) + " |\n")
    f.write(f"\n![ratios]({os.path.basename(out_svg)})\n")

# A horizontal bar chart of the gateway / peer ratios, with the 1.0 line.
W, bar_h, gap, left, top = 860, 22, 8, 330, 50
H = top + len(chart) * (bar_h + gap) + 40
finite = [c[1] for c in chart if c[1] == c[1]]
xmax = max([2.0] + [x * 1.1 for x in finite])
scale = (W - left - 80) / xmax
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="13">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15">gateway / peer, {meta.get("date", "")} '
       f'({meta.get("commit", "")}); green = target met</text>']
for i, (label, ratio, target, higher) in enumerate(chart):
    y = top + i * (bar_h + gap)
    ok = ratio == ratio and (ratio >= target if higher else ratio <= target)
    width = (ratio if ratio == ratio else 0) * scale
    better = "higher is better" if higher else "lower is better"
    svg.append(f'<text x="{left - 8}" y="{y + bar_h * 0.7}" text-anchor="end">{label}</text>')
    svg.append(f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{bar_h}" fill="{"#4caf50" if ok else "#e57373"}"/>')
    svg.append(f'<text x="{left + width + 6:.1f}" y="{y + bar_h * 0.7}">{fmt(ratio)}× ({better})</text>')
x1 = left + scale
svg.append(f'<line x1="{x1:.1f}" y1="{top - 8}" x2="{x1:.1f}" y2="{H - 30}" stroke="black" stroke-dasharray="4 3"/>')
svg.append(f'<text x="{x1:.1f}" y="{H - 14}" text-anchor="middle">1.0 = the peer</text>')
svg.append("</svg>")
with open(out_svg, "w") as f:
    f.write("\n".join(svg) + "\n")
