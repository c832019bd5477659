#!/usr/bin/env python3
"""The podman command that runs one container of docker/k8s/lb-node.yaml's DaemonSet as
the kubelet would on an LB node: the container's image, command, args, env and
securityContext, the pod's volumes, and the node's network namespace (hostNetwork).

    manifest_pod.py MANIFEST CONTAINER NETNS_PATH VOLUME_DIR NODE_NAME [extra podman args...]

Prints the arguments of `podman run`, NUL-separated. Each volume of the pod is the
directory VOLUME_DIR/NAME (the caller fills the configMap and secret ones; emptyDirs are
shared by the containers, as in a pod); a hostPath volume is its path, left out where the
path does not exist (this machine has no /dev/vfio). What the kubelet adds on its own (the
service account's token, KUBERNETES_SERVICE_HOST) the caller passes as extra arguments.
"""
import os
import sys

import yaml


def main():
    manifest, name, netns, volume_dir, node_name, *extra = sys.argv[1:]
    with open(manifest) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    pod = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == name)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    args = ["--detach", "--name", name, "--network", "ns:" + netns if pod.get("hostNetwork") else "none"]
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            source = volume["hostPath"]["path"]
            if not os.path.exists(source):
                print("manifest_pod: %s: hostPath %s absent here, not mounted" % (name, source), file=sys.stderr)
                continue
        else:
            source = os.path.join(volume_dir, mount["name"])
        args += ["--volume", "%s:%s%s" % (source, mount["mountPath"], ":ro" if mount.get("readOnly") else "")]
    for env in container.get("env", []):
        if "value" in env:
            args += ["--env", "%s=%s" % (env["name"], env["value"])]
        elif env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            args += ["--env", "%s=%s" % (env["name"], node_name)]
        else:
            sys.exit("manifest_pod: %s: env %s has a source this script does not know" % (name, env["name"]))
    security = container.get("securityContext", {})
    if security.get("privileged"):
        args.append("--privileged")
    for cap in security.get("capabilities", {}).get("add", []):
        args += ["--cap-add", cap]
    for cap in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if "runAsUser" in security:
        args += ["--user", str(security["runAsUser"])]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    command = container["command"]
    args += extra + ["--entrypoint", command[0], container["image"]] + command[1:] + container.get("args", [])
    sys.stdout.write("\0".join(args))


if __name__ == "__main__":
    main()
