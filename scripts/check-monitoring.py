#!/usr/bin/env python3
"""Checks what the chart gives Prometheus and Grafana, as rendered by scripts/check-helm.sh.

Usage: check-monitoring.py RENDERED.yaml OUT_DIR

- The PrometheusRule's spec is written to OUT_DIR/rendered-rules.yaml for promtool (the
  caller runs `promtool check rules` on it): the template's embedding must yield the same
  rules as files/prometheus-rules.yaml, which promtool also unit-tests.
- The dashboard ConfigMap's JSON must parse, and every query must name central_* metrics only
  (agents export theirs over OTLP at the sites, not to chain IT's Prometheus); whether central
  really exports each name is checked against a running central in tests/tests/telemetry.rs.
"""
import json
import re
import sys

import yaml

rendered, out_dir = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(rendered, encoding="utf-8")) if d]
rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
dashboards = [
    d for d in docs
    if d.get("kind") == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
]
if len(rules) != 1 or len(dashboards) != 1:
    sys.exit(f"expected one PrometheusRule and one dashboard ConfigMap in {rendered}, "
             f"found {len(rules)} and {len(dashboards)}")
with open(f"{out_dir}/rendered-rules.yaml", "w", encoding="utf-8") as f:
    yaml.safe_dump(rules[0]["spec"], f, allow_unicode=True)

names = set()
for key, text in dashboards[0]["data"].items():
    dashboard = json.loads(text)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            found = set(re.findall(r"\bcentral_[a-z_]+", expr))
            if not found or re.search(r"\b(agent|edge_agent|onshi_sim)_[a-z_]+", expr):
                sys.exit(f"{key}: panel {panel['title']!r} must query central's metrics "
                         f"only: {expr}")
            names |= found
print(f"check-monitoring: dashboard queries {len(names)} central metrics: "
      + ", ".join(sorted(names)))
