"""The Kubernetes part of tools/demo: a stand-in API server (the test tree's
fake_apiserver.py, over TLS with a throwaway CA) holds a LoadBalancer Service of our class
and its EndpointSlice; lb-k8s-watcher gives the Service an address from the pool, writes it
to the Service's status and programs lbd; the client's dig goes through that address; then
the EndpointSlice changes (a pod terminating, then gone) and lbd follows.

    /usr/bin/python3 tools/demo_k8s.py BUILD_DIR LBD_SOCKET CLIENT_NETNS POOL_CIDR
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from fake_apiserver import FakeApiServer, make_certs, write_kubeconfig  # noqa: E402
from k8s_watcher_test import endpoint, endpoint_slice, service, slice_port, svc_port  # noqa: E402

BUILD, SOCKET, CLIENT_NS, POOL = sys.argv[1:5]
TOKEN = "demo-token"


def say(text):
    print("\n\033[1m== %s\033[0m" % text, flush=True)


def run(*args):
    return subprocess.run(args, capture_output=True, text=True).stdout.strip()


def lbctl(*args):
    return run(os.path.join(BUILD, "tools/lbctl"), "--socket", SOCKET, *args)


def wait(fn, seconds=10):
    end = time.monotonic() + seconds
    while not fn() and time.monotonic() < end:
        time.sleep(0.1)
    return fn()


def dig(address):
    return run("ip", "netns", "exec", CLIENT_NS, "dig", "+short", "+tries=1", "+time=2", "@" + address, "whoami.test")


def main():
    work = tempfile.mkdtemp(prefix="lb-demo-k8s-")
    make_certs(work)
    api = FakeApiServer(os.path.join(work, "server.crt"), os.path.join(work, "server.key"), TOKEN)
    kubeconfig = write_kubeconfig(os.path.join(work, "kubeconfig"), api.port, "ca.crt", TOKEN)
    store = api.store
    store.create("services", service("dns", [svc_port("dns", 53, "UDP")], lb=True))
    store.create("endpointslices", endpoint_slice("dns", "x7k2p", [endpoint("10.92.%d.2" % n) for n in (1, 2, 3)],
                                                  [slice_port("dns", 53)]))
    say("Kubernetes: Service default/dns, type LoadBalancer, class lbd.io/dpdk-l4; pods 10.92.{1,2,3}.2 ready")
    log = open(os.path.join(work, "watcher.log"), "w")
    watcher = subprocess.Popen([os.path.join(BUILD, "control/k8s/lb-k8s-watcher"), "--kubeconfig=" + kubeconfig,
                                "--lbd_socket=" + SOCKET, "--vip_cidrs=" + POOL, "--listen_address=",
                                "--node_name=demo-lb-node"], stdout=log, stderr=subprocess.STDOUT)
    try:
        ingress = lambda: [i["ip"] for i in store.get("services", "default", "dns")["status"]
                           .get("loadBalancer", {}).get("ingress", [])]
        wait(ingress)
        vip = (ingress() or ["?"])[0]
        print("   lb-k8s-watcher gave it %s from the pool %s: status.loadBalancer.ingress = %s" % (vip, POOL, ingress()))
        wait(lambda: "%s:53/udp" % vip in lbctl("service", "list"))
        print("   lbctl service list:")
        print("\n".join("     " + line for line in lbctl("service", "list").splitlines()))
        say("dig @%s whoami.test from the client, through the Service's address" % vip)
        for i in range(4):
            print("   query %d: %s" % (i + 1, dig(vip)))

        say("pod 10.92.1.2 terminating (serving): its backend drains; then it is gone")
        s = store.get("endpointslices", "default", "dns-x7k2p")
        s["endpoints"][0] = endpoint("10.92.1.2", ready=False, serving=True, terminating=True)
        store.update("endpointslices", s)
        wait(lambda: "draining" in lbctl("service", "get", "%s:53/udp" % vip))
        print("\n".join("     " + line for line in lbctl("service", "get", "%s:53/udp" % vip).splitlines()))
        s = store.get("endpointslices", "default", "dns-x7k2p")
        del s["endpoints"][0]
        store.update("endpointslices", s)
        wait(lambda: "10.92.1.2" not in lbctl("service", "get", "%s:53/udp" % vip))
        print("\n".join("     " + line for line in lbctl("service", "get", "%s:53/udp" % vip).splitlines()))
        for i in range(4):
            print("   query %d: %s" % (i + 1, dig(vip)))
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
        api.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
