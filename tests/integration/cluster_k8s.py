#!/usr/bin/env python3
"""The cluster side of cluster_test.sh: a stand-in API server (fake_apiserver.py, TLS) on
ADDRESS:6443 of the namespace it runs in, the service-account directory the kubelet
mounts into every container (token, ca.crt, namespace), and a LoadBalancer Service of
lbd's class with no annotation (DNS on 53/udp and 53/tcp, HTTP on 80/tcp) whose ready
pods are POD_ADDRESS...; once the watcher has written the Service's status, its address
is in WORK/vip. Runs until SIGTERM.

    cluster_k8s.py WORK ADDRESS POD_ADDRESS...
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_apiserver import FakeApiServer, make_certs  # noqa: E402
from k8s_watcher_test import endpoint, endpoint_slice, service, slice_port, svc_port  # noqa: E402

TOKEN = "cluster-test-token"
PORT = 6443


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def main():
    work, address, pods = sys.argv[1], sys.argv[2], sys.argv[3:]
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
    write(os.path.join(work, "ready"), "1")
    try:
        while not stop:
            ingress = store.get("services", "default", "dns")["status"].get("loadBalancer", {}).get("ingress", [])
            if ingress and not os.path.exists(os.path.join(work, "vip")):
                write(os.path.join(work, "vip"), ingress[0]["ip"])
            time.sleep(0.2)
    finally:
        api.stop()


if __name__ == "__main__":
    main()
