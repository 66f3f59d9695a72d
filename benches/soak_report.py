#!/usr/bin/env python3
"""Checks and reports a benches/soak.sh run.

usage: soak_report.py WORK_DIR OUT.md

WORK_DIR holds what soak.sh collected: meta.txt (key=value), samples.csv (the gateway's RSS,
fds, threads, CPU and a few metrics every few seconds), json/<kind>-<chunk>.json (one
`loadgen run` report per chunk), metrics-{start,load-end,end}.txt (Prometheus scrapes) and
gateway.log. Prints a summary, writes OUT.md, exits 1 if any check fails.
"""
import csv
import glob
import json
import os
import re
import statistics
import sys
from collections import Counter, defaultdict

work, out_md = sys.argv[1:3]
meta = dict(
    line.rstrip("\n").split("=", 1)
    for line in open(os.path.join(work, "meta.txt"))
    if "=" in line
)
soak = float(meta["soak_seconds"])

# --- samples ---------------------------------------------------------------------------------
samples = []
with open(os.path.join(work, "samples.csv")) as f:
    for row in csv.DictReader(f):
        samples.append(
            {k: (v if k == "phase" else float(v or 0)) for k, v in row.items()}
        )
load = [s for s in samples if s["phase"] == "load"]
settle = [s for s in samples if s["phase"] == "settle"]

# RSS windows: the minute after warm-up against the last minute of load (shorter runs scale
# down). Warm-up is the first minute, or until the token cache first reaches its cap if that is
# later: the cache holds most of the gateway's memory, and it fills only as fast as unique
# tokens arrive.
w = min(60.0, soak / 4)
cap = float(meta["cache_max_entries"])
cache_full_at = next((s["t_s"] for s in load if s["cache_entries"] >= cap), None)
warm_from = max(w, cache_full_at or 0.0)
if warm_from + w > soak - w:
    warm_from = w  # the cache filled too late to leave two separate windows
warm_win = (warm_from, warm_from + w)
last_win = (soak - w, soak)


def window(lo, hi):
    return [s for s in load if lo <= s["t_s"] < hi]


def mib(kb):
    return kb / 1024


warm = window(*warm_win)
last = window(*last_win)
warm_rss = statistics.mean(s["rss_kb"] for s in warm) if warm else float("nan")
last_rss = statistics.mean(s["rss_kb"] for s in last) if last else float("nan")
rss_growth = last_rss - warm_rss
rss_allowed = max(float(meta["rss_tol_pct"]) / 100 * warm_rss, float(meta["rss_tol_mib"]) * 1024)

# Least-squares slope of RSS after warm-up, in MiB per hour (information, not a check).
after = [s for s in load if s["t_s"] >= warm_win[0]]
slope = float("nan")
if len(after) >= 3:
    mt = statistics.mean(s["t_s"] for s in after)
    mr = statistics.mean(s["rss_kb"] for s in after)
    den = sum((s["t_s"] - mt) ** 2 for s in after)
    if den:
        slope = sum((s["t_s"] - mt) * (s["rss_kb"] - mr) for s in after) / den * 3600 / 1024

# --- traffic ---------------------------------------------------------------------------------
runs = defaultdict(list)
for path in sorted(glob.glob(os.path.join(work, "json", "*.json"))):
    kind = os.path.basename(path)[:-5].rsplit("-", 1)[0]
    with open(path) as f:
        runs[kind].append(json.load(f))

VALID = ("cached", "unique", "websocket")


def allowed(kind, status):
    if kind in VALID:
        return 200 <= status < 300 or status == 101
    return status in (401, 429)


traffic = {}
for kind, reports in sorted(runs.items()):
    status = Counter()
    for r in reports:
        status.update({int(k): v for k, v in r["status"].items()})
    elapsed = sum(r["elapsed_s"] for r in reports)
    requests = sum(r["requests"] for r in reports)
    traffic[kind] = {
        "chunks": len(reports),
        "requests": requests,
        "per_s": requests / elapsed if elapsed else 0.0,
        "status": status,
        "errors": sum(r["errors"] for r in reports),
        "tunnels": sum(r["tunnels_opened"] for r in reports),
        "tunnels_failed": sum(r["tunnels_failed"] for r in reports),
        "p50": statistics.median(r["latency"]["p50_us"] for r in reports),
        "p99": statistics.median(r["latency"]["p99_us"] for r in reports),
        "p99_worst": max(r["latency"]["p99_us"] for r in reports),
        "bad": {s: n for s, n in status.items() if not allowed(kind, s)},
    }

# --- metrics ---------------------------------------------------------------------------------
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


def scrape(name):
    values = {}
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return values
    for line in open(path):
        m = SAMPLE.match(line.strip())
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


m_start, m_load, m_end = scrape("metrics-start.txt"), scrape("metrics-load-end.txt"), scrape("metrics-end.txt")
KEEP_PROCESS = {"process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"}


def shown(series):
    base = series.split("{", 1)[0]
    if base.endswith(("_bucket", "_sum", "_count")):
        return False
    if base.startswith("process_"):
        return base in KEEP_PROCESS
    return base.startswith("gateway_") and base != "gateway_build_info"


metric_rows = sorted(
    s for s in set(m_start) | set(m_load) | set(m_end)
    if shown(s) and (m_start.get(s, 0) or m_load.get(s, 0) or m_end.get(s, 0))
)


def family(prefix):
    return sum(v for k, v in m_end.items() if k == prefix or k.startswith(prefix + "{"))


tunnels_end = family("gateway_websocket_tunnels_open")

# --- gateway log -----------------------------------------------------------------------------
levels = Counter()
notable = Counter()
LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|ERROR)\b")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*")
log_path = os.path.join(work, "gateway.log")
if os.path.exists(log_path):
    for line in open(log_path, errors="replace"):
        line = ANSI.sub("", line)
        m = LEVEL.search(line)
        if not m:
            continue
        levels[m.group(1)] += 1
        if m.group(1) in ("WARN", "ERROR"):
            text = JWT.sub("<redacted>", line[m.start():].strip())
            notable[re.sub(r"\d+", "N", text)[:200]] += 1

# --- checks ----------------------------------------------------------------------------------
checks = []


def check(name, ok, detail):
    checks.append((name, bool(ok), detail))


check(
    "RSS flat after warm-up",
    warm and last and rss_growth <= rss_allowed,
    f"last-minute mean {mib(last_rss):.1f} MiB vs mean of t = {warm_win[0]:.0f}–{warm_win[1]:.0f} s "
    f"{mib(warm_rss):.1f} MiB: {mib(rss_growth):+.1f} MiB (allowed +{mib(rss_allowed):.1f})",
)
settled = int(meta["settled_after_s"])
check(
    "fds back to baseline after the load",
    settled >= 0 and int(meta["fd_end"]) <= int(meta["fd_base"]),
    f"baseline {meta['fd_base']}, end {meta['fd_end']}, "
    + (f"back after {settled} s" if settled >= 0 else f"not back within {meta['settle_seconds']} s")
    + (f"; still open: {meta['leftover_sockets']}" if meta.get("leftover_sockets") else ""),
)
for kind in VALID:
    t = traffic.get(kind)
    check(
        f"{kind}: only 2xx/101, no errors",
        t and t["requests"] > 0 and not t["bad"] and t["errors"] == 0,
        "no traffic" if not t else f"{t['requests']} requests, bad statuses {t['bad'] or 'none'}, errors {t['errors']}",
    )
forged = sorted(k for k in traffic if k.startswith("forged"))
check(
    "forged: only 401/429",
    forged and all(traffic[k]["requests"] > 0 and not traffic[k]["bad"] for k in forged),
    ", ".join(f"{k}: bad {traffic[k]['bad'] or 'none'}" for k in forged) or "no forged traffic",
)
check("no WebSocket tunnel left open", tunnels_end == 0, f"gauge at the end: {tunnels_end:.0f}")
check("every loadgen chunk ran", meta["loadgen_failures"] == "0", f"failed chunks: {meta['loadgen_failures']}")
check(
    "gateway alive, exits 0 on SIGTERM",
    meta["gateway_alive"] == "1" and meta["gateway_exit"] == "0",
    f"alive {meta['gateway_alive']}, exit {meta['gateway_exit']}",
)
failed = [c for c in checks if not c[1]]

# --- markdown --------------------------------------------------------------------------------
def fnum(x):
    return f"{x:,.0f}".replace(",", " ")


def st(status):
    return " ".join(f"{k}={fnum(v)}" for k, v in sorted(status.items()))


rss_load = [s["rss_kb"] for s in load]
fd_load = [s["fds"] for s in load]
L = []
L.append(f"# Soak run {meta['date']}")
L.append("")
L.append(
    f"`benches/soak.sh`: {fnum(soak)} s of mixed load on one release gateway, commit "
    f"`{meta['commit']}`, {meta['nproc']} cores (`{meta['cpu']}`), {meta['rustc']}. "
    + (f"Load average (1, 5, 15 min) at the start of the load: {meta['load_start']}, " if "load_start" in meta else "Load average (1, 5, 15 min) ")
    + f"at the end: {meta['load_end']}. Keys: {meta['key_bits']} bits. Connections: "
    f"{meta['conns']}; {meta['forged_sources']} forged source address(es), "
    f"`auth_failures_per_ip = {meta['auth_failures_per_ip']}`. Chunks of {meta['chunk_seconds']} s; "
    f"samples every {meta['sample_seconds']} s. Everything (gateway, loadgen, upstream) shares the cores."
)
L.append("")
L.append("**Result: " + ("all checks passed" if not failed else f"{len(failed)} check(s) FAILED") + "**")
L.append("")
L.append("| check | result | detail |")
L.append("|---|---|---|")
for name, ok, detail in checks:
    L.append(f"| {name} | {'pass' if ok else '**FAIL**'} | {detail} |")
L.append("")
L.append("## Gateway process")
L.append("")
L.append("| | RSS (MiB) | open fds |")
L.append("|---|---|---|")
L.append(f"| before the load (baseline) | {mib(float(meta['rss_base_kb'])):.1f} | {meta['fd_base']} |")
if warm:
    L.append(f"| minute after warm-up, mean (t = {warm_win[0]:.0f}–{warm_win[1]:.0f} s) | {mib(warm_rss):.1f} | {statistics.mean(s['fds'] for s in warm):.0f} |")
if last:
    L.append(f"| last minute of load, mean (t = {last_win[0]:.0f}–{last_win[1]:.0f} s) | {mib(last_rss):.1f} | {statistics.mean(s['fds'] for s in last):.0f} |")
if load:
    L.append(f"| maximum under load | {mib(max(rss_load)):.1f} | {max(fd_load):.0f} |")
if settle:
    L.append(f"| maximum while settling | {mib(max(s['rss_kb'] for s in settle)):.1f} | {max(s['fds'] for s in settle):.0f} |")
L.append(f"| after the load and settling | {mib(float(meta['rss_end_kb'])):.1f} | {meta['fd_end']} |")
L.append("")
L.append(
    "Warm-up: "
    + (f"the token cache reached its cap ({fnum(cap)} entries) at t = {cache_full_at:.0f} s" if cache_full_at is not None else f"the token cache never reached its cap ({fnum(cap)} entries)")
    + f"; the RSS check compares t = {warm_win[0]:.0f}–{warm_win[1]:.0f} s with the last minute."
)
L.append("")
L.append(
    f"RSS trend after warm-up (least squares over t ≥ {warm_win[0]:.0f} s): {slope:+.1f} MiB/h. "
    f"Gateway CPU: {load[-1]['cpu_s'] if load else 0:.0f} s over the load "
    f"({(load[-1]['cpu_s'] / load[-1]['t_s']) if load and load[-1]['t_s'] else 0:.2f} cores); "
    f"threads {max((s['threads'] for s in samples), default=0):.0f} at most."
    + (
        f" Machine load average (1 min) during the load: {min(s['load1'] for s in load):.1f}–{max(s['load1'] for s in load):.1f}."
        if load and "load1" in load[0]
        else ""
    )
)
L.append("")
L.append("Every minute (the 5 s series is `samples.csv` in the run's work directory, not kept):")
L.append("")
L.append("| t (s) | phase | RSS (MiB) | fds | threads | cache entries | tunnels open | requests so far |")
L.append("|---|---|---|---|---|---|---|---|")
next_t = 0.0
for s in samples:
    if s["t_s"] + 0.5 >= next_t or s is samples[-1]:
        L.append(
            f"| {s['t_s']:.0f} | {s['phase']} | {mib(s['rss_kb']):.1f} | {s['fds']:.0f} | {s['threads']:.0f} | "
            f"{fnum(s['cache_entries'])} | {s['tunnels_open']:.0f} | {fnum(s['requests_total'])} |"
        )
        next_t = (int((s["t_s"] + 0.5) // 60) + 1) * 60
L.append("")
L.append("## Traffic")
L.append("")
L.append("| kind | chunks | requests | per s | statuses | errors | p50 µs (median chunk) | p99 µs (median / worst chunk) |")
L.append("|---|---|---|---|---|---|---|---|")
for kind, t in traffic.items():
    extra = f" (tunnels {fnum(t['tunnels'])}, failed {t['tunnels_failed']})" if kind == "websocket" else ""
    L.append(
        f"| {kind}{extra} | {t['chunks']} | {fnum(t['requests'])} | {fnum(t['per_s'])} | {st(t['status'])} | "
        f"{t['errors']} | {t['p50']:.0f} | {t['p99']:.0f} / {t['p99_worst']:.0f} |"
    )
L.append("")
L.append(
    "`websocket` requests are echo round trips; its statuses count tunnel handshakes. "
    "`forgedN` is one source address each."
)
L.append("")
L.append("## Metrics (admin `/metrics`)")
L.append("")
L.append("| series | start | end of load | after settling |")
L.append("|---|---|---|---|")
for s in metric_rows:
    L.append(f"| `{s}` | {fnum(m_start.get(s, 0))} | {fnum(m_load.get(s, 0))} | {fnum(m_end.get(s, 0))} |")
L.append("")
L.append("## Gateway log")
L.append("")
L.append("Lines by level: " + (", ".join(f"{k} {v}" for k, v in sorted(levels.items())) or "none") + ".")
if notable:
    L.append("")
    L.append("WARN/ERROR lines (digits as N):")
    L.append("")
    for text, n in notable.most_common(8):
        L.append(f"- {n}× `` {text} ``")
L.append("")
with open(out_md, "w") as f:
    f.write("\n".join(L))

# --- summary ---------------------------------------------------------------------------------
print(f"soak {fnum(soak)} s at {meta['commit']}")
print(
    f"RSS MiB: baseline {mib(float(meta['rss_base_kb'])):.1f}, after warm-up {mib(warm_rss):.1f}, "
    f"last minute {mib(last_rss):.1f}, after settling {mib(float(meta['rss_end_kb'])):.1f}; trend {slope:+.1f} MiB/h"
)
print(f"fds: baseline {meta['fd_base']}, max {max(fd_load, default=0):.0f}, end {meta['fd_end']}")
for kind, t in traffic.items():
    print(f"{kind:>10}: {fnum(t['requests'])} requests ({fnum(t['per_s'])}/s) {st(t['status'])} errors {t['errors']}")
for name, ok, detail in checks:
    print(f"{'pass' if ok else 'FAIL'}  {name}: {detail}")
sys.exit(1 if failed else 0)
