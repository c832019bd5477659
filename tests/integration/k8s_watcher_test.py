"""lb-k8s-watcher end to end: the real watcher binary against the fake API server
(fake_apiserver.py, TLS + bearer token) and lbd's real control core and gRPC API
(control_server), state read back with lbctl. Every step changes the cluster and waits
for lbd (or the API server's objects) to show the expected result.

    /usr/bin/python3 k8s_watcher_test.py BUILD_DIR
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_apiserver import FakeApiServer, make_certs, write_kubeconfig  # noqa: E402

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
TOKEN = "test-token-4f1c"
passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s" % name, flush=True)
    else:
        failed += 1
        print("FAIL %s %s" % (name, detail), flush=True)


def wait_until(fn, timeout=10.0):
    """fn() until truthy or timeout; returns the last value."""
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Kubernetes objects, shaped as the API server returns them ----

def svc_port(name, port, protocol="UDP", target=None, node_port=None):
    p = {"name": name, "protocol": protocol, "port": port, "targetPort": target if target is not None else port}
    if node_port:
        p["nodePort"] = node_port
    return p


def service(name, ports, external_ips=None, lb=False, lb_class="lbd.io/dpdk-l4", annotations=None,
            affinity="None", lb_ip=None, families=("IPv4",), cluster_ip="10.96.0.10"):
    spec = {
        "ports": ports,
        "selector": {"app": name},
        "clusterIP": cluster_ip,
        "clusterIPs": [cluster_ip],
        "type": "LoadBalancer" if lb else "ClusterIP",
        "sessionAffinity": affinity,
        "ipFamilies": list(families),
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    }
    if affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if external_ips:
        spec["externalIPs"] = external_ips
    if lb:
        spec.update({"loadBalancerClass": lb_class, "externalTrafficPolicy": "Cluster",
                     "allocateLoadBalancerNodePorts": True})
        for i, p in enumerate(ports):
            p.setdefault("nodePort", 30000 + i + len(name))
    if lb_ip:
        spec["loadBalancerIP"] = lb_ip
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name},
                     "annotations": annotations or {}},
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


def endpoint(address, ready=True, serving=None, terminating=False, pod=None):
    return {
        "addresses": [address],
        "conditions": {"ready": ready, "serving": ready if serving is None else serving, "terminating": terminating},
        "nodeName": "node-1",
        "targetRef": {"kind": "Pod", "namespace": "default", "name": pod or "pod-" + address.replace(".", "-").replace(":", "-"),
                      "uid": "00000000-0000-0000-0000-%012d" % (abs(hash(address)) % 10**12)},
        "zone": "zone-a",
    }


def endpoint_slice(service_name, suffix, endpoints, ports, family="IPv4"):
    return {
        "metadata": {
            "name": "%s-%s" % (service_name, suffix),
            "generateName": service_name + "-",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name,
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service_name,
                                 "uid": "11111111-2222-3333-4444-555555555555", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports,
    }


def slice_port(name, port, protocol="UDP"):
    return {"name": name, "protocol": protocol, "port": port}


# ---- the processes ----

class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lb-k8s-test-")
        self.sock = os.path.join(self.dir, "lbd.sock")
        self.procs = {}
        make_certs(self.dir, "other-ca")
        self.api = FakeApiServer(self.path("server.crt"), self.path("server.key"), TOKEN)
        self.kubeconfig = self.write_kubeconfig("kubeconfig", self.path("ca.crt"), TOKEN)
        self.http = "127.0.0.1:%d" % free_port()

    def path(self, name):
        return os.path.join(self.dir, name)

    def write_kubeconfig(self, name, ca, token):
        return write_kubeconfig(self.path(name), self.api.port, os.path.basename(ca), token)

    def start(self, name, args):
        log = open(self.path(name + ".log"), "a")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        p.send_signal(sig)
        try:
            return p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def start_lbd(self):
        self.start("control_server", [os.path.join(BUILD, "tests/integration/control_server"), self.sock])
        wait_until(lambda: os.path.exists(self.sock), 5)

    def start_watcher(self, kubeconfig=None, name="watcher", http=None):
        self.start(name, [os.path.join(BUILD, "control/k8s/lb-k8s-watcher"),
                          "--kubeconfig=" + (kubeconfig or self.kubeconfig), "--lbd_socket=" + self.sock,
                          "--vip_cidrs=10.1.0.0/28,fd00:10::/124", "--external_ips=all",
                          "--listen_address=" + (http or self.http),
                          "--debounce_ms=50", "--watch_timeout_seconds=4", "--resync_seconds=3600",
                          "--node_name=lb-node-1", "--list_page_size=1", "--dsr_lease_namespace=none"])

    def log(self, name="watcher"):
        with open(self.path(name + ".log")) as f:
            return f.read()

    def lbd(self):
        """lbd's services: {"VIP:PORT/proto": service} (lbctl -o json)."""
        r = subprocess.run([os.path.join(BUILD, "tools/lbctl"), "--socket", self.sock, "-o", "json", "service", "list"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None
        out = {}
        for s in json.loads(r.stdout or "{}").get("services", []):
            k = s["key"]
            vip = k["vip"] if ":" not in k["vip"] else "[%s]" % k["vip"]
            out["%s:%d/%s" % (vip, k.get("port", 0), k["protocol"].lower())] = s
        return out

    def backends(self, key):
        s = (self.lbd() or {}).get(key)
        if s is None:
            return None
        return sorted("%s:%d %s" % (b["address"], b.get("port", 0), b.get("state", "ACTIVE")) for b in s.get("backends", []))

    def http_get(self, path, http=None):
        try:
            with urllib.request.urlopen("http://%s%s" % (http or self.http, path), timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def metric(self, name, labels=""):
        _, text = self.http_get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
        return None

    def events_for(self, service, reason):
        with self.api.lock:
            return [e for e in self.api.events_posted
                    if e["involvedObject"]["name"] == service and e["reason"] == reason]

    def cleanup(self):
        for name in list(self.procs):
            self.stop(name, signal.SIGKILL)
        try:
            self.api.stop()
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    env = Env()
    api, store = env.api, env.api.store
    try:
        run(env, api, store)
    finally:
        if failed:
            for name in ("watcher", "watcher2", "control_server"):
                if os.path.exists(env.path(name + ".log")):
                    print("---- %s.log (last 40 lines)" % name)
                    print("\n".join(env.log(name).splitlines()[-40:]))
        env.cleanup()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def run(env, api, store):
    DNS_UDP, DNS_TCP = "10.1.0.1:53/udp", "10.1.0.1:53/tcp"
    dns_ports = [svc_port("dns", 53, "UDP", "dns"), svc_port("dns-tcp", 53, "TCP", "dns-tcp"),
                 svc_port("sctp", 9999, "SCTP")]
    # DSR on request (NAT is the default): its port translation is reported below.
    store.create("services", service("dns", dns_ports, external_ips=["10.1.0.1"],
                                     annotations={"lbd.io/forwarding-mode": "dsr-ipip"}))
    store.create("services", service("elsewhere", [svc_port("http", 80, "TCP")], external_ips=["192.0.2.7"]))
    ports = [slice_port("dns", 5353), slice_port("dns-tcp", 5353, "TCP"), slice_port("sctp", 9999, "SCTP")]
    store.create("endpointslices", endpoint_slice("dns", "a1", [endpoint("10.244.1.5"), endpoint("10.244.2.6")], ports))
    env.start_lbd()
    env.start_watcher()

    # Initial sync: named targetPorts resolved through the slice, TCP and UDP, SCTP skipped.
    check("initial sync: two backends on 53/udp",
          wait_until(lambda: env.backends(DNS_UDP) == ["10.244.1.5:5353 ACTIVE", "10.244.2.6:5353 ACTIVE"]),
          env.lbd())
    check("53/tcp too", env.backends(DNS_TCP) == ["10.244.1.5:5353 ACTIVE", "10.244.2.6:5353 ACTIVE"])
    state = env.lbd()
    check("only those two services (SCTP skipped, externalIP outside the VIP CIDRs not served)",
          sorted(state) == [DNS_TCP, DNS_UDP], sorted(state))
    check("SCTP skip logged", "port 9999/SCTP skipped: lbd balances TCP and UDP only" in env.log())
    check("port translation reported as a Warning Event",
          wait_until(lambda: env.events_for("dns", "PortTranslationIgnored")))
    ev = (env.events_for("dns", "PortTranslationIgnored") or [{}])[0]
    check("Event names the Service by uid and comes from the watcher",
          ev.get("involvedObject", {}).get("uid") == store.get("services", "default", "dns")["metadata"]["uid"]
          and ev.get("source", {}).get("component") == "lb-k8s-watcher" and ev.get("type") == "Warning", ev)
    check("/healthz ok", wait_until(lambda: env.http_get("/healthz") == (200, "ok\n")), env.http_get("/healthz"))

    def edit_dns_slice(change):  # change(endpoints) -> endpoints, written as an update
        sl = store.get("endpointslices", "default", "dns-a1")
        sl["endpoints"] = change(sl["endpoints"])
        store.update("endpointslices", sl)

    def set_endpoint(i, ep):
        return lambda eps: eps[:i] + [ep] + eps[i + 1:]

    # Scale up, scale down, pod IP change.
    edit_dns_slice(lambda eps: eps + [endpoint("10.244.3.7")])
    check("scale up: third backend",
          wait_until(lambda: env.backends(DNS_UDP) == ["10.244.1.5:5353 ACTIVE", "10.244.2.6:5353 ACTIVE",
                                                       "10.244.3.7:5353 ACTIVE"]), env.backends(DNS_UDP))
    edit_dns_slice(lambda eps: [e for e in eps if e["addresses"] != ["10.244.1.5"]])
    check("scale down: backend removed",
          wait_until(lambda: env.backends(DNS_UDP) == ["10.244.2.6:5353 ACTIVE", "10.244.3.7:5353 ACTIVE"]),
          env.backends(DNS_UDP))
    edit_dns_slice(lambda eps: set_endpoint(0, endpoint("10.244.2.99", pod=eps[0]["targetRef"]["name"]))(eps))
    check("pod IP change: new address in, old out",
          wait_until(lambda: env.backends(DNS_UDP) == ["10.244.2.99:5353 ACTIVE", "10.244.3.7:5353 ACTIVE"]),
          env.backends(DNS_UDP))

    # Terminating endpoints drain, then go.
    edit_dns_slice(set_endpoint(1, endpoint("10.244.3.7", ready=False, serving=True, terminating=True)))
    check("terminating + serving -> draining",
          wait_until(lambda: env.backends(DNS_UDP) == ["10.244.2.99:5353 ACTIVE", "10.244.3.7:5353 DRAINING"]),
          env.backends(DNS_UDP))
    edit_dns_slice(set_endpoint(1, endpoint("10.244.3.7", ready=False, serving=False, terminating=True)))
    check("terminating, no longer serving -> removed",
          wait_until(lambda: env.backends(DNS_UDP) == ["10.244.2.99:5353 ACTIVE"]), env.backends(DNS_UDP))

    # A LoadBalancer of our class gets a pool address (the lowest free: .1 is an externalIP).
    store.create("services", service("web", [svc_port("http", 80, "TCP", 8080)], lb=True, affinity="ClientIP",
                                      annotations={"lbd.io/forwarding-mode": "dsr-gue"}))
    store.create("endpointslices", endpoint_slice("web", "x", [endpoint("10.244.5.1")], [slice_port("http", 8080, "TCP")]))
    ingress = lambda name: [i.get("ip") for i in (store.get("services", "default", name) or {}).get("status", {}).get("loadBalancer", {}).get("ingress", [])]
    check("LoadBalancer: address from the pool written to status", wait_until(lambda: ingress("web") == ["10.1.0.2"]),
          ingress("web"))
    check("LoadBalancer served at its address",
          wait_until(lambda: env.backends("10.1.0.2:80/tcp") == ["10.244.5.1:8080 ACTIVE"]), env.lbd())
    web = env.lbd().get("10.1.0.2:80/tcp", {})
    check("sessionAffinity ClientIP -> source-IP hashing; mode from the annotation",
          web.get("hash_fields") == "SOURCE_IP" and web.get("mode") == "DSR_GUE", web)
    store.create("services", service("other-class", [svc_port("http", 80, "TCP")], lb=True, lb_class="example.com/other"))
    store.create("services", service("web6", [svc_port("http", 80, "TCP")], lb=True, families=("IPv6",)))
    store.create("endpointslices", endpoint_slice("web6", "v6", [endpoint("fd00:244::5")], [slice_port("http", 80, "TCP")], "IPv6"))
    check("IPv6 LoadBalancer: IPv6 pool address, IPv6 backends",
          wait_until(lambda: env.backends("[fd00:10::1]:80/tcp") == ["fd00:244::5:80 ACTIVE"]), env.lbd())
    check("another class is left alone", ingress("other-class") == [], ingress("other-class"))

    # Invalid annotations: an Event; the Service keeps its last good settings.
    w = store.get("services", "default", "web")
    w["metadata"]["annotations"]["lbd.io/maglev-table-size"] = "1000"
    store.update("services", w)
    check("invalid annotation reported as an Event",
          wait_until(lambda: env.events_for("web", "InvalidAnnotation")), api.events_posted[-3:])
    check("the Event says why", "is not one of 1021, 4093" in (env.events_for("web", "InvalidAnnotation") or [{}])[0].get("message", ""))
    web = env.lbd().get("10.1.0.2:80/tcp", {})
    check("last good config kept", web.get("mode") == "DSR_GUE" and web.get("table_size", 0) == 0, web)
    w = store.get("services", "default", "web")
    w["metadata"]["annotations"]["lbd.io/maglev-table-size"] = "4093"
    store.update("services", w)
    check("fixed annotation takes effect",
          wait_until(lambda: (env.lbd() or {}).get("10.1.0.2:80/tcp", {}).get("table_size") == 4093), env.lbd())

    # A requested address that another Service holds: conflict reported, not served.
    store.create("services", service("thief", [svc_port("http", 80, "TCP")], lb=True, lb_ip="10.1.0.2"))
    check("address conflict reported", wait_until(lambda: env.events_for("thief", "AddressConflict")))
    check("the older Service keeps the address", ingress("thief") == [] and
          env.backends("10.1.0.2:80/tcp") == ["10.244.5.1:8080 ACTIVE"], (ingress("thief"), env.lbd()))
    store.delete("services", "default", "thief")

    # A Service lbd refuses (its endpoints are link-local addresses, never a backend):
    # reported, the rest still applied.
    store.create("services", service("tiny", [svc_port("dns", 53)], external_ips=["10.1.0.4"]))
    store.create("endpointslices", endpoint_slice("tiny", "t", [endpoint("169.254.7.%d" % i) for i in range(1, 5)],
                                                  [slice_port("dns", 53)]))
    check("a Service lbd refuses is reported (RejectedByLbd)", wait_until(lambda: env.events_for("tiny", "RejectedByLbd")))
    check("the Event carries lbd's reason",
          "link-local address, never a backend" in (env.events_for("tiny", "RejectedByLbd") or [{}])[0].get("message", ""),
          env.events_for("tiny", "RejectedByLbd"))
    check("the others are applied all the same", "10.1.0.4:53/udp" not in env.lbd() and DNS_UDP in env.lbd())
    store.delete("services", "default", "tiny")

    # Objects of an unexpected shape (a tenant's, or a buggy controller's) cost the
    # watcher nothing: a LoadBalancer Service whose status is a string, a slice
    # whose endpoint conditions are strings is skipped or left unwritten; the process
    # lives on and keeps following the others.
    odd = service("odd", [svc_port("http", 80, "TCP")], lb=True)
    odd["status"] = "broken"
    store.create("services", odd)
    odd_slice = endpoint_slice("odd", "o", [endpoint("10.244.8.1")], [slice_port("http", 80, "TCP")])
    odd_slice["endpoints"][0]["conditions"] = {"ready": "yes"}
    store.create("endpointslices", odd_slice)
    edit_dns_slice(lambda eps: eps + [endpoint("10.244.4.9")])
    check("objects of the wrong shape do not stop the watcher",
          wait_until(lambda: "10.244.4.9:5353 ACTIVE" in env.backends(DNS_UDP)) and env.procs["watcher"].poll() is None,
          env.backends(DNS_UDP))
    check("a Service the watcher cannot read gets an Event saying why (InvalidObject)",
          wait_until(lambda: "status" in ((env.events_for("odd", "InvalidObject") or [{}])[0].get("message", ""))),
          env.events_for("odd", "InvalidObject"))
    store.delete("services", "default", "odd")
    store.delete("endpointslices", "default", "odd-o")
    edit_dns_slice(lambda eps: [e for e in eps if e["addresses"][0] != "10.244.4.9"])

    # Bookmarks: the Services watch resumes from a bookmark's version after it expires.
    before = len(api.requests_matching("GET", "/api/v1/services?watch=1"))
    edit_dns_slice(lambda eps: eps + [endpoint("10.244.4.4")])  # moves the version the Services watch has not seen
    check("watch expired and was started again (timeoutSeconds honoured)",
          wait_until(lambda: len(api.requests_matching("GET", "/api/v1/services?watch=1")) > before, 10))
    def resumed_from_bookmark():
        with api.lock:
            marks = {str(rv) for (r, rv) in api.bookmarks_sent if r == "services"}
        resumed = [p for (_, p, _) in api.requests_matching("GET", "/api/v1/services?watch=1")[before:]]
        return [p for p in resumed for m in marks if "resourceVersion=%s&" % m in p]
    check("resumed from a bookmark's resourceVersion", wait_until(resumed_from_bookmark, 12),
          (api.bookmarks_sent[-3:], api.requests_matching("GET", "/api/v1/services?watch=1")[-3:]))
    lists = api.requests_matching("GET", "/api/v1/services?limit")
    check("the first list came in pages (limit/continue)", len(lists) >= 2 and "continue=" in lists[1][1], lists)
    check("no relist on a plain watch expiry", not any("continue=" not in p for (_, p, _) in lists[1:]), lists)

    # 410 Gone: history compacted while the watcher is disconnected; a delete it never saw.
    api.stop()
    store.delete("services", "default", "other-class")
    store.delete("services", "default", "web6")
    store.compact()
    down_since = time.monotonic()
    errors_before = env.metric("lb_watcher_api_errors_total", '{resource="/api/v1/services"}') or 0
    time.sleep(3)
    errors_down = (env.metric("lb_watcher_api_errors_total", '{resource="/api/v1/services"}') or 0) - errors_before
    check("API server gone: retried with back-off, not in a loop", 1 <= errors_down <= 8, errors_down)
    check("lbd keeps the last state meanwhile", env.backends("[fd00:10::1]:80/tcp") == ["fd00:244::5:80 ACTIVE"])
    api.start()
    check("back after %.1f s: the watch from a compacted version relists (410)" % (time.monotonic() - down_since),
          wait_until(lambda: (env.metric("lb_watcher_relists_gone_total", '{resource="/api/v1/services"}') or 0) >= 1, 15),
          env.metric("lb_watcher_relists_gone_total", '{resource="/api/v1/services"}'))
    check("the delete it never saw as an event is applied",
          wait_until(lambda: "[fd00:10::1]:80/tcp" not in (env.lbd() or {"[fd00:10::1]:80/tcp": 1}), 10), env.lbd())

    # Type change and delete.
    w = store.get("services", "default", "web")
    w["spec"]["type"] = "ClusterIP"
    for field in ("loadBalancerClass", "externalTrafficPolicy", "allocateLoadBalancerNodePorts"):
        w["spec"].pop(field)
    for p in w["spec"]["ports"]:
        p.pop("nodePort", None)
    store.update("services", w)
    check("LoadBalancer -> ClusterIP: no longer served",
          wait_until(lambda: "10.1.0.2:80/tcp" not in (env.lbd() or {"10.1.0.2:80/tcp": 1})), env.lbd())

    # lbd restarted: the watcher applies everything again.
    env.stop("control_server")
    env.start_lbd()
    check("lbd restarted: state pushed again",
          wait_until(lambda: env.backends(DNS_UDP) == ["10.244.2.99:5353 ACTIVE", "10.244.4.4:5353 ACTIVE"], 10),
          env.lbd())
    check("restart seen in the metrics", (env.metric("lb_watcher_lbd_generation_mismatches_total") or 0) >= 1)

    # Watcher restarted: allocations come from the cluster's state, so they stay.
    store.create("services", service("api", [svc_port("https", 443, "TCP")], lb=True))
    check("new LoadBalancer: next free address", wait_until(lambda: ingress("api") == ["10.1.0.2"]), ingress("api"))
    env.stop("watcher")
    store.create("services", service("api2", [svc_port("https", 443, "TCP")], lb=True))
    statuses_before = len(api.requests_matching("PUT", "/api/v1/namespaces/default/services/api/status"))
    env.start_watcher()
    check("after a watcher restart the next one gets the next address",
          wait_until(lambda: ingress("api2") == ["10.1.0.3"]), ingress("api2"))
    check("and the earlier one keeps its own (no status rewrite)",
          ingress("api") == ["10.1.0.2"] and
          len(api.requests_matching("PUT", "/api/v1/namespaces/default/services/api/status")) == statuses_before)

    # Service deleted.
    store.delete("services", "default", "dns")
    check("Service deleted: its lbd services go",
          wait_until(lambda: DNS_UDP not in (env.lbd() or {DNS_UDP: 1}) and DNS_TCP not in (env.lbd() or {})), env.lbd())
    _, metrics = env.http_get("/metrics")
    check("metrics exported", "lb_watcher_applies_total" in metrics and "lb_watcher_pool_addresses_used 2" in metrics,
          [l for l in metrics.splitlines() if l.startswith("lb_watcher_pool")])

    # TLS is verified; the token is sent.
    other = env.write_kubeconfig("other-ca.kubeconfig", env.path("other-ca.crt"), TOKEN)
    http2 = "127.0.0.1:%d" % free_port()
    env.start_watcher(other, "watcher2", http2)
    time.sleep(2)
    code, text = env.http_get("/healthz", http2)
    check("an API server the CA did not sign is refused", code == 503 and "not listed" in text and
          "certificate" in env.log("watcher2").lower(), (code, text))
    env.stop("watcher2")
    bad = env.write_kubeconfig("bad-token.kubeconfig", env.path("ca.crt"), "wrong")
    env.start_watcher(bad, "watcher2", http2)
    check("a wrong token: 401 logged, not synced", wait_until(lambda: "HTTP 401" in env.log("watcher2"), 5))
    env.stop("watcher2")
    check("watcher stops cleanly on SIGTERM", env.stop("watcher") == 0)


if __name__ == "__main__":
    main()
