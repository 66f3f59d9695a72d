#!/usr/bin/env python3
"""Offline checks of the monitoring bundle (manifests/monitoring), run by check-manifests.sh.

    check-monitoring.py RENDERED_BUNDLE.yaml OUT_DIR

- the PodMonitor and the PrometheusRule parse as the Prometheus Operator's monitoring.coreos.com/v1
  types (the models of cloudcoil-models-prometheus-operator) and carry no field those types do
  not know;
- every metric a rule or a dashboard query names is one the gateway exports: the names are read
  from the gateway's sources (every `"gateway_..."` string literal under gateway/src, histograms
  recognised by the `Histogram` constructor in front of them, which export only `_bucket`,
  `_sum` and `_count`), plus the process collector's;
- the dashboard is well-formed: unique panel ids, a grid position, a query and a refId per
  target, the `${datasource}` variable everywhere, only template variables it defines;
- writes OUT_DIR/rules.yaml (the PrometheusRule's groups in Prometheus' own format) for promtool.

Exit status 1 with one line per problem.
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD_KEY = "abcdesktop-gateway.json"
# What prometheus::process_collector exports on Linux and the dashboard or rules may use.
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
}
# Not the gateway's, named on purpose: Prometheus' own scrape health, cert-manager's expiry.
EXTERNAL = {
    "rules": {"up", "certmanager_certificate_expiration_timestamp_seconds"},
    "dashboard": {"up"},
}
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

problems = []


def problem(text):
    problems.append(text)


def exported_metrics():
    """(plain names, histogram names) registered in gateway/src."""
    plain, histograms = set(), set()
    for path in sorted((ROOT / "gateway" / "src").rglob("*.rs")):
        text = path.read_text()
        for match in re.finditer(r'"(gateway_[a-z0-9_]+)"', text):
            before = text[max(0, match.start() - 80):match.start()]
            (histograms if "istogram" in before else plain).add(match.group(1))
    plain -= histograms
    if not plain or not histograms:
        problem("found no gateway metric names under gateway/src (did the sources move?)")
    return plain | PROCESS_METRICS, histograms


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+[0-9a-z]+", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()
        if following.startswith("(") or word.lower() in KEYWORDS:
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # 1e3, 5m
        names.add(word)
    return names


def check_expr(where, expr, kind, plain, histograms):
    names = metric_names(expr)
    if not names:
        problem(f"{where}: the query names no metric: {expr!r}")
    for name in sorted(names):
        if name in plain or name in EXTERNAL[kind]:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base in histograms:
            continue
        if name in histograms:
            problem(f"{where}: {name} is a histogram; use {name}_bucket, _sum or _count")
        else:
            problem(f"{where}: {name} is not a metric the gateway exports")


def strict_model(cls, obj, where):
    """Validates obj as cls and reports every field the model dropped (unknown to the CRD)."""
    try:
        model = cls.model_validate(obj)
    except Exception as error:  # pydantic.ValidationError, with every failing field
        problem(f"{where}: {error}")
        return
    again = model.model_dump(by_alias=True, exclude_none=True, mode="json")

    def walk(left, right, path):
        if isinstance(left, dict):
            if not isinstance(right, dict):
                problem(f"{where}: {path or '/'} changed type")
                return
            for key, value in left.items():
                if key not in right:
                    problem(f"{where}: unknown field {path}/{key}")
                else:
                    walk(value, right[key], f"{path}/{key}")
        elif isinstance(left, list):
            if not isinstance(right, list) or len(left) != len(right):
                problem(f"{where}: {path} changed length")
                return
            for index, (a, b) in enumerate(zip(left, right)):
                walk(a, b, f"{path}/{index}")

    walk(obj, again, "")


def check_dashboard(dashboard, plain, histograms):
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    ids = []
    panels = list(dashboard.get("panels", []))
    if not panels:
        problem("dashboard: no panels")
    for panel in panels:
        title = panel.get("title", "?")
        ids.append(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            problem(f"dashboard panel {title!r}: gridPos needs h, w, x, y")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"dashboard panel {title!r}: datasource is not ${{datasource}}")
        targets = panel.get("targets", [])
        if not targets:
            problem(f"dashboard panel {title!r}: no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problem(f"dashboard panel {title!r}: refIds missing or repeated")
        for target in targets:
            expr = target.get("expr", "")
            check_expr(f"dashboard panel {title!r}", expr, "dashboard", plain, histograms)
            for var in re.findall(r"\$\{?(\w+)", expr):
                if not var.startswith("__") and var not in defined:
                    problem(f"dashboard panel {title!r}: ${var} is not a template variable")
    if len(set(ids)) != len(ids) or None in ids:
        problem("dashboard: panel ids missing or repeated")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bundle, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    from cloudcoil.models.prometheus_operator import v1 as monitoring

    plain, histograms = exported_metrics()
    objects = [o for o in yaml.safe_load_all(bundle.read_text()) if o]
    kinds = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    for kind in ("PodMonitor", "PrometheusRule", "ConfigMap"):
        if len(kinds.get(kind, [])) != 1:
            problem(f"{bundle}: expected one {kind}, found {len(kinds.get(kind, []))}")
    if problems:
        return

    strict_model(monitoring.PodMonitor, kinds["PodMonitor"][0], "PodMonitor")
    rule = kinds["PrometheusRule"][0]
    strict_model(monitoring.PrometheusRule, rule, "PrometheusRule")
    groups = rule.get("spec", {}).get("groups") or []
    if not groups:
        problem("PrometheusRule: no rule groups")
    for group in groups:
        for entry in group["rules"]:
            name = entry.get("alert") or entry.get("record")
            check_expr(f"rule {name}", entry["expr"], "rules", plain, histograms)
    (out / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))

    configmap = kinds["ConfigMap"][0]
    try:
        dashboard = json.loads(configmap["data"][DASHBOARD_KEY])
    except (KeyError, ValueError) as error:
        problem(f"dashboard ConfigMap: {DASHBOARD_KEY}: {error}")
        return
    check_dashboard(dashboard, plain, histograms)


main()
for line in problems:
    print(f"check-monitoring: {line}", file=sys.stderr)
sys.exit(1 if problems else 0)
