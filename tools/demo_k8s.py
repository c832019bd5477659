"""The Kubernetes part of tools/demo: a stand-in API server (the test tree's
fake_apiserver.py, over TLS with a throwaway CA) holds a LoadBalancer Service of our class
asking for DSR (DNS on UDP 53, a TCP service on 80), its two Pods on worker node
"worker-1" and its EndpointSlice. lb-dsr-node's agent for worker-1 makes the pods
decapsulate (its tc BPF program, the VIP on their lo) and renews its Lease; one
lb-k8s-watcher per LB node, as the DaemonSet runs them, gives the Service an address from
the pool, writes it to the Service's status and programs that node's lbd with the
endpoints whose node holds a live lb-dsr-node Lease. Once every node serves the Service
with both pods, the address is written to VIP_FILE; everything runs until SIGTERM.

    /usr/bin/python3 tools/demo_k8s.py BUILD_DIR POOL_CIDR VIP_FILE LBD_SOCKET...
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from fake_apiserver import FakeApiServer, make_certs, write_kubeconfig  # noqa: E402
from k8s_watcher_test import endpoint, endpoint_slice, service, slice_port, svc_port  # noqa: E402

BUILD, POOL, VIP_FILE = sys.argv[1:4]
SOCKETS = sys.argv[4:]
TOKEN = "demo-token"
PODS = ["10.92.1.2", "10.92.2.2"]
NODE = "worker-1"


def pod(ip):
    return {"metadata": {"name": "dns-%s" % ip.split(".")[2], "namespace": "default", "labels": {"app": "dns"}},
            "spec": {"nodeName": NODE}, "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def pod_endpoint(ip):
    e = endpoint(ip, pod=pod(ip)["metadata"]["name"])
    e["nodeName"] = NODE
    return e


def lbctl(socket, *args):
    return subprocess.run([os.path.join(BUILD, "tools/lbctl"), "--socket", socket, *args],
                          capture_output=True, text=True).stdout


def wait(fn, seconds=20):
    end = time.monotonic() + seconds
    while not fn() and time.monotonic() < end:
        time.sleep(0.1)
    return fn()


def main():
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    work = tempfile.mkdtemp(prefix="lb-demo-k8s-")
    make_certs(work)
    api = FakeApiServer(os.path.join(work, "server.crt"), os.path.join(work, "server.key"), TOKEN)
    kubeconfig = write_kubeconfig(os.path.join(work, "kubeconfig"), api.port, "ca.crt", TOKEN)
    store = api.store
    store.create("services", service("dns", [svc_port("dns", 53, "UDP"), svc_port("http", 80, "TCP")], lb=True,
                                     annotations={"lbd.io/forwarding-mode": "dsr-ipip"}))  # DSR on request
    for ip in PODS:
        store.create("pods", pod(ip))
    store.create("endpointslices", endpoint_slice("dns", "x7k2p", [pod_endpoint(p) for p in PODS],
                                                  [slice_port("dns", 53), slice_port("http", 80, "TCP")]))
    watchers = []
    try:
        log = open(os.path.join(os.path.dirname(VIP_FILE), "dsr-node-%s.log" % NODE), "w")
        watchers.append(subprocess.Popen(
            [os.path.join(BUILD, "control/dsr_node/lb-dsr-node"), "--kubeconfig=" + kubeconfig, "--node_name=" + NODE,
             "--lease_namespace=lb-system", "--listen_address="], stdout=log, stderr=subprocess.STDOUT))
        for n, socket in enumerate(SOCKETS, 1):
            log = open(os.path.join(os.path.dirname(VIP_FILE), "watcher-lb%d.log" % n), "w")
            watchers.append(subprocess.Popen(
                [os.path.join(BUILD, "control/k8s/lb-k8s-watcher"), "--kubeconfig=" + kubeconfig,
                 "--lbd_socket=" + socket, "--vip_cidrs=" + POOL, "--listen_address=", "--node_name=lb%d" % n,
                 "--dsr_lease_namespace=lb-system"],
                stdout=log, stderr=subprocess.STDOUT))
        ingress = lambda: [i["ip"] for i in store.get("services", "default", "dns")["status"]
                           .get("loadBalancer", {}).get("ingress", [])]
        if not wait(ingress):
            print("   the watchers gave the Service no address", flush=True)
            return 1
        vip = ingress()[0]
        served = lambda: all("%s:53/udp" % vip in out and all(p in out for p in PODS)
                             for out in (lbctl(s, "service", "list") for s in SOCKETS))
        if not wait(served):
            print("   not every LB node serves %s with both pods" % vip, flush=True)
            return 1
        with open(VIP_FILE + ".tmp", "w") as f:
            f.write(vip + "\n")
        os.rename(VIP_FILE + ".tmp", VIP_FILE)
        while not stop:
            time.sleep(0.2)
        return 0
    finally:
        for w in watchers:
            w.terminate()
        for w in watchers:
            w.wait(timeout=10)
        api.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
