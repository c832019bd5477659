#!/usr/bin/env python3
"""Checks docker/monitoring against what the programs really export:
  - the alert rules pass `promtool check rules` (Debian's prometheus package);
  - the dashboard is a Grafana dashboard whose every panel has a query;
  - every lb_... metric that a rule, an annotation or a dashboard query names is defined
    (# TYPE) in one of the /metrics scrapes given (lbd's and lb-bird-gen's, from a test run).
Prints what is missing; exit status 1 when anything is. Standard library only.

    monitoring_check.py SOURCE_ROOT SCRAPE_FILE...
"""
import json
import os
import re
import subprocess
import sys

NAME = re.compile(r"\blb_[a-z0-9_]+\b")


def main(root, scrapes):
    rules = os.path.join(root, "docker/monitoring/lb-alerts.yaml")
    dashboard = os.path.join(root, "docker/monitoring/lb-dashboard.json")
    problems = []
    check = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
    if check.returncode != 0:
        problems.append("promtool check rules: " + (check.stdout + check.stderr).strip())
    with open(dashboard) as f:
        dash = json.load(f)
    for panel in dash.get("panels", []):
        if not any(t.get("expr") for t in panel.get("targets", [])):
            problems.append("dashboard panel %r has no query" % panel.get("title"))
    named = set()
    with open(rules) as f:
        named |= set(NAME.findall(f.read()))
    for panel in dash["panels"]:
        for t in panel["targets"]:
            named |= set(NAME.findall(t["expr"]))
    exported = set()
    for path in scrapes:
        with open(path) as f:
            exported |= set(re.findall(r"^# TYPE (\S+) ", f.read(), re.M))
    for name in sorted(named - exported):
        problems.append("%s is named by the rules or the dashboard but exported by none of %s" % (name, ", ".join(scrapes)))
    print("%d metric names checked against %d exported" % (len(named), len(exported)))
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
