#!/usr/bin/env python3
"""The cluster side of dsr_node_test.sh: a stand-in API server (fake_apiserver.py, TLS) on
ADDRESS:6443 of the namespace it runs in, kubeconfigs for the watcher and the agents
(WORK/kubeconfig), and a LoadBalancer Service of lbd's class asking for DSR over IPIP
(DNS on 53/udp and 53/tcp, a TCP server on 80/tcp). Its pods are Pods with a nodeName
and EndpointSlice endpoints that name them, as the EndpointSlice controller writes them.
Once the watcher has written the Service's status, its address is in WORK/vip.

Commands (JSON) from the test: a file WORK/commands/N is run and renamed N.done (or
N.failed with the reason):
    {"op": "add_pod", "name": "p3", "node": "w1", "ip": "10.244.1.3"}
    {"op": "delete_pod", "name": "p3"}
    {"op": "set_mode", "mode": "dsr-gue"}
    {"op": "dump"}   writes WORK/dump.json: the Leases and Events
Runs until SIGTERM.

    dsr_node_k8s.py WORK ADDRESS NODE:NAME:IP...
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_apiserver import FakeApiServer, make_certs, write_kubeconfig  # noqa: E402
from k8s_watcher_test import endpoint, endpoint_slice, service, slice_port, svc_port  # noqa: E402

TOKEN = "dsr-node-test-token"
PORT = 6443
NS = "default"


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def pod_object(name, node, ip):
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "dns"}},
            "spec": {"nodeName": node, "containers": [{"name": "dns", "image": "dnsmasq"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


class Cluster:
    def __init__(self, store, pods):
        self.store = store
        self.pods = {}  # name -> (node, ip)
        ports = [svc_port("dns", 53, "UDP"), svc_port("dns-tcp", 53, "TCP"), svc_port("http", 80, "TCP")]
        store.create("services", service("dns", ports, lb=True, annotations={"lbd.io/forwarding-mode": "dsr-ipip"}))
        for node, name, ip in pods:
            self.pods[name] = (node, ip)
            store.create("pods", pod_object(name, node, ip))
        store.create("endpointslices", endpoint_slice("dns", "x7k2p", self.endpoints(),
                                                      [slice_port("dns", 53), slice_port("dns-tcp", 53, "TCP"),
                                                       slice_port("http", 80, "TCP")]))

    def endpoints(self):
        out = []
        for name, (node, ip) in sorted(self.pods.items()):
            e = endpoint(ip, pod=name)
            e["nodeName"] = node
            out.append(e)
        return out

    def sync_slice(self):
        s = self.store.get("endpointslices", NS, "dns-x7k2p")
        s["endpoints"] = self.endpoints()
        self.store.update("endpointslices", s)

    def run(self, command, work, api):
        op = command["op"]
        if op == "add_pod":
            self.pods[command["name"]] = (command["node"], command["ip"])
            self.store.create("pods", pod_object(command["name"], command["node"], command["ip"]))
            self.sync_slice()
        elif op == "delete_pod":
            del self.pods[command["name"]]
            self.sync_slice()  # the controller removes the endpoint, then the Pod goes
            self.store.delete("pods", NS, command["name"])
        elif op == "set_mode":
            s = self.store.get("services", NS, "dns")
            s["metadata"].setdefault("annotations", {})["lbd.io/forwarding-mode"] = command["mode"]
            self.store.update("services", s)
        elif op == "dump":
            leases, _ = self.store.snapshot("leases")
            write(os.path.join(work, "dump.json"), json.dumps({"leases": leases, "events": api.events_posted}))
        else:
            raise ValueError("unknown op " + op)


def main():
    work, address = sys.argv[1], sys.argv[2]
    pods = [tuple(p.split(":")) for p in sys.argv[3:]]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    commands = os.path.join(work, "commands")
    os.makedirs(commands, exist_ok=True)
    make_certs(work, address=address)
    api = FakeApiServer(os.path.join(work, "server.crt"), os.path.join(work, "server.key"), TOKEN, port=PORT,
                        address=address)
    write_kubeconfig(os.path.join(work, "kubeconfig"), PORT, "ca.crt", TOKEN)
    with open(os.path.join(work, "kubeconfig")) as f:  # write_kubeconfig names 127.0.0.1
        text = f.read().replace("127.0.0.1", address)
    write(os.path.join(work, "kubeconfig"), text)
    cluster = Cluster(api.store, pods)
    write(os.path.join(work, "ready"), "1")
    try:
        while not stop:
            ingress = api.store.get("services", NS, "dns")["status"].get("loadBalancer", {}).get("ingress", [])
            if ingress and not os.path.exists(os.path.join(work, "vip")):
                write(os.path.join(work, "vip"), ingress[0]["ip"])
            for name in sorted(os.listdir(commands)):
                if "." in name:
                    continue
                path = os.path.join(commands, name)
                try:
                    with open(path) as f:
                        cluster.run(json.load(f), work, api)
                    os.rename(path, path + ".done")
                except Exception as e:  # reported to the test, which fails on it
                    write(path + ".failed", repr(e))
                    os.rename(path, path + ".seen")
            time.sleep(0.1)
    finally:
        api.stop()


if __name__ == "__main__":
    main()
