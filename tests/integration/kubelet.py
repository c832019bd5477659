#!/usr/bin/env python3
"""A kubelet's part for one pod of a DaemonSet, run with podman, for the cluster test.

    kubelet.py MANIFEST NODE_NAME HOST_IP NETNS POD_DIR [--configmap-from DIR] [--secret NAME=DIR]
               [--extra-run-arg ARG]...

Runs the DaemonSet's pod of MANIFEST on node NODE_NAME (the node's network namespace
NETNS, its InternalIP HOST_IP; run it in the host's namespaces) with the semantics of a kubelet that matter to the pod:

- volumes: emptyDir is a fresh directory of mode 0777 (HugePages medium included); a
  configMap volume holds the ConfigMap's data (from MANIFEST, or the files of
  --configmap-from DIR when given: the site's own) and is mounted read-only, as is a
  secret (its files at defaultMode); hostPath is the node's path (POD_DIR/../host/PATH:
  each node has its own), created for DirectoryOrCreate, left out when absent otherwise;
  a hostPath of type CharDevice is the machine's device (/dev/net/tun), one under /proc the
  machine's procfs;
- env: value, and fieldRef spec.nodeName, status.hostIP, status.podIP, metadata.name and
  metadata.namespace; $(VAR) in command and args expanded from the container's env;
- hostPID: the machine's PID namespace (each node's processes are the machine's);
- capabilities: containerd's defaults, then the securityContext's add and drop;
  privileged, runAsUser, readOnlyRootFilesystem (no tmpfs anywhere, as containerd),
  allowPrivilegeEscalation; seccomp: Unconfined unless the pod or container asks for
  RuntimeDefault (podman's default profile then);
- initContainers in order, each to success (retried with back-off); then the containers,
  started in a random order and restarted when they exit (back-off 1 s doubling to 10 s);
- probes (exec, httpGet, tcpSocket): a liveness failure restarts the container, readiness
  makes the pod Ready when every container is; POD_DIR/ready holds "1" or "0";
- deletion (SIGTERM to this process): each container's preStop runs, then it gets SIGTERM,
  and SIGKILL when terminationGracePeriodSeconds have passed since the deletion; the
  time the deletion took is written to POD_DIR/deleted.

Logs: POD_DIR/logs/CONTAINER.log (every run appended). Runs until deleted.
"""
import argparse
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request

import yaml

# containerd's default capability set (what a container gets unless the manifest says).
CONTAINERD_CAPS = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                   "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]


# podman's global options (the test's own storage), from the environment.
PODMAN = ["podman"] + os.environ.get("KUBELET_PODMAN_OPTIONS", "").split()


CLONE_NEWNET = 0x40000000


def enter_netns(path):
    """Moves the calling thread (only) into the network namespace at `path`: a probe runs
    in the node's network, as the kubelet's do; podman itself runs outside `ip netns exec`,
    whose own /sys hides the cgroup mounts runc needs."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + path)
    finally:
        os.close(fd)


def podman(*args, **kw):
    try:
        return subprocess.run(PODMAN + list(args), capture_output=True, text=True, **kw)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 1)


class Pod:
    def __init__(self, a):
        with open(a.manifest) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        ds = next(d for d in docs if d["kind"] == "DaemonSet")
        self.spec = ds["spec"]["template"]["spec"]
        self.namespace = ds["metadata"].get("namespace", "default")
        self.configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        self.a = a
        self.name = "%s-%s" % (ds["metadata"]["name"], a.node)
        self.dir = os.path.abspath(a.pod_dir)
        self.grace = self.spec.get("terminationGracePeriodSeconds", 30)
        self.deleting = threading.Event()  # the deletion is under way: nothing restarts
        self.requested = threading.Event()  # SIGTERM: the pod is to be deleted
        self.deadline = None
        self.ready = {}
        self.lock = threading.Lock()
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.set_ready_file()

    # --- volumes
    def make_volumes(self):
        self.volumes = {}
        self.devices = {}  # volume name -> the machine's device (hostPath CharDevice)
        root = os.path.join(self.dir, "volumes")
        shutil.rmtree(root, ignore_errors=True)
        for v in self.spec.get("volumes", []):
            path = os.path.join(root, v["name"])
            if "emptyDir" in v:
                os.makedirs(path)
                os.chmod(path, 0o777)  # as the kubelet makes them
                self.volumes[v["name"]] = (path, False)
            elif "configMap" in v:
                os.makedirs(path)
                if self.a.configmap_from:
                    for f in os.listdir(self.a.configmap_from):
                        shutil.copy(os.path.join(self.a.configmap_from, f), path)
                else:
                    for k, text in self.configmaps[v["configMap"]["name"]].items():
                        with open(os.path.join(path, k), "w") as f:
                            f.write(text)
                self.volumes[v["name"]] = (path, True)
            elif "secret" in v:
                source = dict(s.split("=", 1) for s in self.a.secret)[v["secret"]["secretName"]]
                os.makedirs(path)
                for f in os.listdir(source):
                    shutil.copy(os.path.join(source, f), path)
                    os.chmod(os.path.join(path, f), v["secret"].get("defaultMode", 0o644))
                self.volumes[v["name"]] = (path, True)
            elif "hostPath" in v and v["hostPath"]["path"].startswith("/proc/"):
                # The node's procfs is the machine's (/proc/sys/net shows the reader's own
                # network namespace: the node's).
                self.volumes[v["name"]] = (v["hostPath"]["path"], False)
            elif "hostPath" in v and v["hostPath"].get("type") == "CharDevice":
                # A device of the node: the machine's (the container gets it as a device).
                if stat.S_ISCHR(os.stat(v["hostPath"]["path"]).st_mode):
                    self.devices[v["name"]] = v["hostPath"]["path"]
            elif "hostPath" in v:
                host = os.path.join(self.dir, "..", "host-" + self.a.node, v["hostPath"]["path"].lstrip("/"))
                if v["hostPath"].get("type") in ("DirectoryOrCreate",):
                    os.makedirs(host, exist_ok=True)
                if os.path.exists(host):
                    self.volumes[v["name"]] = (os.path.abspath(host), False)
            else:
                sys.exit("kubelet.py: volume %s: a kind this runner does not know" % v["name"])

    # --- containers
    def env_of(self, c):
        fields = {"spec.nodeName": self.a.node, "status.hostIP": self.a.host_ip, "status.podIP": self.a.host_ip,
                  "metadata.name": self.name, "metadata.namespace": self.namespace}
        env = {}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        return env

    @staticmethod
    def expand(text, env):  # Kubernetes' $(VAR) expansion in command and args
        return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)

    def run_args(self, c):
        env = self.env_of(c)
        args = ["run", "--rm", "--replace", "--name", self.cname(c), "--network", "ns:/run/netns/" + self.a.netns,
                "--hostname", self.a.node, "--cap-drop", "all"]
        if self.spec.get("hostPID"):
            args.append("--pid=host")
        sec = c.get("securityContext", {})
        # The runtime's defaults less `drop`, then `add` (drop ALL, add X: X alone).
        add = set(sec.get("capabilities", {}).get("add", []))
        drop = set(sec.get("capabilities", {}).get("drop", []))
        caps = add if "ALL" in drop else (set(CONTAINERD_CAPS) - drop) | add
        for cap in sorted(caps):
            args += ["--cap-add", cap]
        if sec.get("privileged"):
            args.append("--privileged")
        if sec.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]  # containerd adds no tmpfs
        # seccomp: the pod's or the container's profile; none means Unconfined, as the kubelet
        # runs it (podman's own default is its RuntimeDefault).
        profile = sec.get("seccompProfile", self.spec.get("securityContext", {}).get("seccompProfile", {}))
        if profile.get("type") != "RuntimeDefault" and not sec.get("privileged"):
            args += ["--security-opt", "seccomp=unconfined"]
        if "runAsUser" in sec:
            args += ["--user", str(sec["runAsUser"])]
        if sec.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for m in c.get("volumeMounts", []):
            if m["name"] in self.devices:
                args += ["--device", "%s:%s" % (self.devices[m["name"]], m["mountPath"])]
                continue
            if m["name"] not in self.volumes:
                continue  # a hostPath absent on this node
            path, always_ro = self.volumes[m["name"]]
            args += ["--volume", "%s:%s%s" % (path, m["mountPath"], ":ro" if always_ro or m.get("readOnly") else "")]
        for k, v in env.items():
            args += ["--env", "%s=%s" % (k, v)]
        args += self.a.extra_run_arg
        command = [self.expand(x, env) for x in c["command"]]
        return args + ["--entrypoint", command[0], c["image"]] + command[1:] + \
            [self.expand(x, env) for x in c.get("args", [])]

    def cname(self, c):  # unique on the machine: several nodes share one podman
        return "%s-%s" % (self.a.node, c["name"])

    def log(self, c):
        return open(os.path.join(self.dir, "logs", c["name"] + ".log"), "a")

    def run_init(self):
        for c in self.spec.get("initContainers", []):
            backoff = 1
            while not self.requested.is_set():
                with self.log(c) as log:
                    rc = subprocess.run(PODMAN + self.run_args(c), stdout=log, stderr=log).returncode
                if rc == 0:
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)

    def supervise(self, c):
        backoff = 1
        while not self.deleting.is_set():
            started = time.monotonic()
            with self.log(c) as log:
                log.write("--- kubelet: starting %s\n" % c["name"])
                log.flush()
                proc = subprocess.Popen(PODMAN + self.run_args(c), stdout=log, stderr=log)
                threading.Thread(target=self.probe_loop, args=(c, proc), daemon=True).start()
                rc = proc.wait()
                log.write("--- kubelet: %s exited %d\n" % (c["name"], rc))
            self.set_ready(c["name"], False)
            if self.deleting.is_set():
                return
            backoff = 1 if time.monotonic() - started > 10 else min(backoff * 2, 10)
            time.sleep(backoff)

    # --- probes
    def probe(self, c, p):
        timeout = p.get("timeoutSeconds", 1)
        try:
            if "exec" in p:
                return podman("exec", self.cname(c), *p["exec"]["command"], timeout=timeout + 5).returncode == 0
            if "httpGet" in p:
                h = p["httpGet"]
                url = "http://%s:%d%s" % (h.get("host", self.a.host_ip), h["port"], h.get("path", "/"))
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    return 200 <= r.status < 400
            if "tcpSocket" in p:
                with socket.create_connection((p["tcpSocket"].get("host", self.a.host_ip), p["tcpSocket"]["port"]),
                                              timeout=timeout):
                    return True
        except Exception:
            return False
        return False

    def probe_loop(self, c, proc):
        enter_netns("/run/netns/" + self.a.netns)
        live, ready = c.get("livenessProbe"), c.get("readinessProbe")
        started = time.monotonic()
        live_failures, next_live, next_ready = 0, 0.0, 0.0
        while proc.poll() is None and not self.deleting.is_set():
            now = time.monotonic() - started
            if ready and now >= max(next_ready, ready.get("initialDelaySeconds", 0)):
                self.set_ready(c["name"], self.probe(c, ready))
                next_ready = now + ready.get("periodSeconds", 10)
            elif not ready:
                self.set_ready(c["name"], True)
            if live and now >= max(next_live, live.get("initialDelaySeconds", 0)):
                live_failures = 0 if self.probe(c, live) else live_failures + 1
                next_live = now + live.get("periodSeconds", 10)
                if live_failures >= live.get("failureThreshold", 3):
                    with self.log(c) as log:
                        log.write("--- kubelet: liveness probe failed %d times: restarting\n" % live_failures)
                    podman("kill", self.cname(c))
                    return
            time.sleep(0.2)

    def set_ready(self, name, ok):
        with self.lock:
            self.ready[name] = ok
            self.set_ready_file()

    def set_ready_file(self):
        names = [c["name"] for c in self.spec["containers"]]
        ok = not self.deleting.is_set() and all(self.ready.get(n) for n in names)
        with open(os.path.join(self.dir, "ready.tmp"), "w") as f:
            f.write("1\n" if ok else "0\n")
        os.rename(os.path.join(self.dir, "ready.tmp"), os.path.join(self.dir, "ready"))

    # --- deletion
    def stop_container(self, c):
        pre = c.get("lifecycle", {}).get("preStop")
        if pre and "exec" in pre:
            podman("exec", self.cname(c), *pre["exec"]["command"], timeout=max(1, self.deadline - time.monotonic()))
        podman("stop", "--time", str(max(0, int(self.deadline - time.monotonic()))), self.cname(c))

    def delete(self):
        t0 = time.monotonic()
        self.deadline = t0 + self.grace
        self.deleting.set()
        self.set_ready_file()
        stoppers = [threading.Thread(target=self.stop_container, args=(c,)) for c in self.spec["containers"]]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        with open(os.path.join(self.dir, "deleted"), "w") as f:
            f.write("%.1f\n" % (time.monotonic() - t0))

    def run(self):
        self.make_volumes()
        self.run_init()
        containers = list(self.spec["containers"])
        random.shuffle(containers)  # the kubelet promises no order
        threads = []
        for c in containers:
            if self.requested.is_set():
                break
            t = threading.Thread(target=self.supervise, args=(c,))
            t.start()
            threads.append(t)
            time.sleep(random.random())
        return threads


def main():
    p = argparse.ArgumentParser()
    p.add_argument("manifest")
    p.add_argument("node")
    p.add_argument("host_ip")
    p.add_argument("netns")
    p.add_argument("pod_dir")
    p.add_argument("--configmap-from")
    p.add_argument("--secret", action="append", default=[])
    p.add_argument("--extra-run-arg", action="append", default=[])
    pod = Pod(p.parse_args())
    signal.signal(signal.SIGTERM, lambda *_: pod.requested.set())
    signal.signal(signal.SIGINT, lambda *_: pod.requested.set())
    threads = pod.run()
    while not pod.requested.wait(0.5):
        pass
    pod.delete()
    for t in threads:
        t.join(timeout=5)


if __name__ == "__main__":
    main()
