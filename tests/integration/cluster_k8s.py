#!/usr/bin/env python3
"""The cluster side of cluster_test.sh: a stand-in API server (fake_apiserver.py, TLS) on
ADDRESS:6443 of the namespace it runs in, the service-account directory the kubelet
mounts into every container (token, ca.crt, namespace), and two LoadBalancer Services of
lbd's class whose ready pods are the Pods b1, b2... at POD_ADDRESS... on worker node
WORKER_NODE:
  - "dns", with no annotation (NAT): DNS on 53/udp and 53/tcp, HTTP on 80/tcp;
  - "dns-dsr", asking for DSR over IPIP: DNS on 53/udp;
the DSR one with EndpointSlice endpoints that name their Pods and node, as the
EndpointSlice controller writes them (lb-dsr-node serves only those). Once the watcher
has written a Service's status, its address is in WORK/vip (WORK/vip-dsr). Runs until
SIGTERM.

    cluster_k8s.py WORK ADDRESS WORKER_NODE POD_ADDRESS...
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_apiserver import FakeApiServer, make_certs  # noqa: E402
from k8s_watcher_test import endpoint, endpoint_slice, service, slice_port, svc_port  # noqa: E402
from dsr_node_k8s import pod_object  # noqa: E402

TOKEN = "cluster-test-token"
PORT = 6443


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def main():
    work, address, worker, pods = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    certs = os.path.join(work, "certs")
    account = os.path.join(work, "serviceaccount")
    os.makedirs(certs, exist_ok=True)
    os.makedirs(account, exist_ok=True)
    make_certs(certs, address=address)
    with open(os.path.join(certs, "ca.crt")) as f:
        write(os.path.join(account, "ca.crt"), f.read())
    write(os.path.join(account, "token"), TOKEN)
    write(os.path.join(account, "namespace"), "lb-system")
    api = FakeApiServer(os.path.join(certs, "server.crt"), os.path.join(certs, "server.key"), TOKEN, port=PORT,
                        address=address)
    store = api.store
    ports = [svc_port("dns", 53, "UDP"), svc_port("dns-tcp", 53, "TCP"), svc_port("http", 80, "TCP")]
    store.create("services", service("dns", ports, lb=True))
    store.create("endpointslices", endpoint_slice("dns", "p0d5x", [endpoint(p) for p in pods],
                                                  [slice_port("dns", 53), slice_port("dns-tcp", 53, "TCP"),
                                                   slice_port("http", 80, "TCP")]))
    names = ["b%d" % (i + 1) for i in range(len(pods))]
    for name, ip in zip(names, pods):
        store.create("pods", pod_object(name, worker, ip))
    dsr_endpoints = []
    for name, ip in zip(names, pods):
        e = endpoint(ip, pod=name)
        e["nodeName"] = worker
        dsr_endpoints.append(e)
    store.create("services", service("dns-dsr", [svc_port("dns", 53, "UDP")], lb=True, cluster_ip="10.96.0.11",
                                     annotations={"lbd.io/forwarding-mode": "dsr-ipip"}))
    store.create("endpointslices", endpoint_slice("dns-dsr", "q8v3z", dsr_endpoints, [slice_port("dns", 53)]))
    write(os.path.join(work, "ready"), "1")
    try:
        while not stop:
            for name, path in (("dns", "vip"), ("dns-dsr", "vip-dsr")):
                ingress = store.get("services", "default", name)["status"].get("loadBalancer", {}).get("ingress", [])
                if ingress and not os.path.exists(os.path.join(work, path)):
                    write(os.path.join(work, path), ingress[0]["ip"])
            time.sleep(0.2)
    finally:
        api.stop()


if __name__ == "__main__":
    main()
