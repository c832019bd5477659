"""Every #include in the tree follows the layers of docs/design.md: no import climbs back.

  layers_test.py SOURCE_ROOT

Reads the project's own includes ("dir/file.h") of every .h and .cc under common/,
dataplane/, control/ and tools/, and fails on one that a folder may not import, naming the
file, the line and the rule. Inside dataplane/worker/, the parts are ranked too: a part
imports only the parts below it. Standard library only.
"""
import os
import re
import sys

# The folders each folder may import (its own always). The first matching prefix rules.
ALLOWED = [
    ("common/", ["common/"]),
    ("dataplane/worker/", ["common/", "dataplane/"]),
    ("dataplane/dpdk/", ["common/", "dataplane/"]),
    ("dataplane/", ["common/", "dataplane/"]),
    ("control/lbd/", ["common/", "dataplane/", "control/", "lb/v1/"]),
    ("control/node/", ["common/", "control/node/", "control/bird/", "control/version.h"]),
    ("control/k8s/", ["common/", "control/k8s/", "control/api_types.h", "control/proto_convert.h",
                      "control/http_endpoint.h", "control/prometheus.h", "control/version.h", "lb/v1/"]),
    ("control/bird/", ["common/", "control/bird/", "control/api_types.h", "control/proto_convert.h",
                       "control/http_endpoint.h", "control/prometheus.h", "control/version.h", "lb/v1/"]),
    ("control/dsr_node/", ["common/", "control/dsr_node/", "control/k8s/", "dataplane/bpf/",
                           "control/http_endpoint.h", "control/prometheus.h", "control/rtnetlink.h",
                           "control/version.h"]),
    ("control/", ["common/", "dataplane/", "lb/v1/", "control/"]),
    ("tools/", ["common/", "control/api_types.h", "control/proto_convert.h", "control/version.h", "lb/v1/"]),
]
# Nothing but the composition root (and the worker itself) imports these.
FORBIDDEN = [
    ("dataplane/", "dataplane/worker/", ["dataplane/worker/"]),  # the base and dpdk/ never see the worker
    ("control/", "control/lbd/", ["control/lbd/"]),
    ("control/", "control/k8s/", ["control/k8s/", "control/dsr_node/"]),
    ("control/", "control/dsr_node/", ["control/dsr_node/"]),
    ("control/", "control/bird/", ["control/bird/", "control/node/"]),
    ("control/", "control/node/", ["control/node/"]),
]
# dataplane/worker/: each part may import only the parts ranked below it.
WORKER_RANK = ["burst.h", "flow_state.h", "flow_announcer.h", "nat_path.h", "fast_path.h", "flow_learner.h",
               "worker.h"]

OURS = {"common", "dataplane", "control", "tools", "lb", "tests", "bench"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def violations(root):
    out = []
    for top in ("common", "dataplane", "control", "tools"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                for lineno, line in enumerate(open(os.path.join(root, path), encoding="utf-8"), 1):
                    m = INCLUDE.match(line)
                    if m:
                        why = check(path, m.group(1))
                        if why:
                            out.append("%s:%d: includes %s: %s" % (path, lineno, m.group(1), why))
    return out


def check(path, inc):
    if inc.split("/")[0] not in OURS:
        return None  # abseil's, or a file generated beside the source

    for prefix, allowed in ALLOWED:
        if path.startswith(prefix):
            if not inc.startswith(prefix) and not any(inc.startswith(a) for a in allowed):
                return "%s may import only %s" % (prefix, ", ".join([prefix] + allowed))
            break
    for scope, target, exempt in FORBIDDEN:
        if path.startswith(scope) and inc.startswith(target) and not any(path.startswith(e) for e in exempt):
            return "only %s import %s" % (", ".join(exempt), target)
    if path.startswith("dataplane/worker/") and inc.startswith("dataplane/worker/"):
        own = os.path.basename(path).replace(".cc", ".h")
        if own in WORKER_RANK and os.path.basename(inc) in WORKER_RANK:
            if WORKER_RANK.index(os.path.basename(inc)) > WORKER_RANK.index(own):
                return "worker parts import only the parts below them (%s)" % " < ".join(WORKER_RANK)
    return None


def main():
    root = sys.argv[1]
    found = violations(root)
    for v in found:
        print(v)
    # The rules must see the tree: a moved folder would otherwise pass vacuously.
    assert os.path.isdir(os.path.join(root, "dataplane", "worker")), "no dataplane/worker/ under " + root
    print("%d layer violation(s)" % len(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
