"""A fake Kubernetes API server for the watcher's tests: the parts of the real one that an
informer depends on, with the real wire behaviour.

- core/v1 Services, Pods (fieldSelector spec.nodeName), discovery.k8s.io/v1 EndpointSlices,
  coordination.k8s.io/v1 Leases (namespaced; PUT and POST), core/v1 Events; JSON shaped as the
  real API server returns it (lists without kind/apiVersion on items, watch events with).
- One resourceVersion counter over all objects (etcd's revision), a bounded event history
  (compact() drops it, as etcd compaction does): a watch or a paginated list from a version
  no longer in it gets 410 Gone (watch: HTTP 200 with an ERROR event, as the real server).
- Lists with limit/continue; watches over HTTP/1.1 chunked encoding with
  allowWatchBookmarks (a BOOKMARK every `bookmark_seconds`), ended after timeoutSeconds
  with the terminating chunk; disconnect() cuts every watch without it.
- The status subresource (PUT .../services/NAME/status) with optimistic concurrency (409).
- Bearer token authentication (401 otherwise); TLS with the test's own certificate.
- stop() / start() on the same port, keeping the store: "the API server gone for a while".

Test code changes objects directly (create/update/delete) and reads `requests`,
`events_posted` and the objects.
"""

import copy
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESOURCES = {
    "services": {"kind": "Service", "apiVersion": "v1", "prefix": "/api/v1"},
    "endpointslices": {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "prefix": "/apis/discovery.k8s.io/v1"},
    "pods": {"kind": "Pod", "apiVersion": "v1", "prefix": "/api/v1"},
    "leases": {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "prefix": "/apis/coordination.k8s.io/v1"},
}


def parse_collection(path):
    """(resource, namespace or None, name or None) of an API path, or None: PREFIX/PLURAL,
    PREFIX/namespaces/NS/PLURAL and PREFIX/namespaces/NS/PLURAL/NAME."""
    for resource, d in RESOURCES.items():
        if not path.startswith(d["prefix"] + "/"):
            continue
        rest = path[len(d["prefix"]) + 1:].split("/")
        if rest == [resource]:
            return resource, None, None
        if len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] == resource:
            return resource, rest[1], rest[3] if len(rest) == 4 else None
    return None


def selects(namespace, query):
    """The objects a list or watch asks for: its namespace, and a fieldSelector
    spec.nodeName=N (the only one the real clients here use)."""
    node = None
    selector = query.get("fieldSelector", "")
    if selector.startswith("spec.nodeName="):
        node = selector[len("spec.nodeName="):]
    return lambda obj: ((namespace is None or obj["metadata"].get("namespace") == namespace)
                        and (node is None or obj.get("spec", {}).get("nodeName") == node))


def make_certs(directory, *names, address="127.0.0.1"):
    """A throwaway CA (ca.crt) and a server certificate for `address` (server.crt/.key) in
    `directory`, plus a self-signed CA per extra name (NAME.crt) that signed nothing."""
    def run(*args):
        subprocess.run(args, check=True, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "1", "-subj", "/CN=fake-kubernetes-ca")
    for name in names:
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
            name + ".crt", "-days", "1", "-subj", "/CN=" + name)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=kube-apiserver")
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:%s,DNS:kubernetes.default.svc\n" % address)
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "1", "-extfile", "san.ext")


def write_kubeconfig(path, port, ca_file, token):
    """A kubeconfig for https://127.0.0.1:PORT with CA file `ca_file` (relative to it) and a token."""
    with open(path, "w") as f:
        f.write("""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: watcher
  user:
    token: %s
contexts:
- name: fake
  context: {cluster: fake, user: watcher}
current-context: fake
""" % (port, ca_file, token))
    return path


class Gone(Exception):
    pass


class Store:
    """Objects, the resourceVersion counter and the event history. Thread-safe."""

    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 1000
        self.objects = {r: {} for r in RESOURCES}  # resource -> (ns, name) -> object
        self.history = []  # (rv, resource, type, object)
        self.oldest = self.rv  # watches from below this are gone

    def _emit(self, resource, kind, obj):
        event_obj = copy.deepcopy(obj)
        event_obj["kind"] = RESOURCES[resource]["kind"]
        event_obj["apiVersion"] = RESOURCES[resource]["apiVersion"]
        self.history.append((self.rv, resource, kind, event_obj))
        self.cond.notify_all()

    def create(self, resource, obj):
        with self.cond:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", "default")
            key = (meta["namespace"], meta["name"])
            assert key not in self.objects[resource], key
            self.rv += 1
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(self.rv)
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta.setdefault("generation", 1)
            self.objects[resource][key] = obj
            self._emit(resource, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(self, resource, obj, check_version=False):
        """Replaces an object; with check_version, a stale resourceVersion raises ValueError."""
        with self.cond:
            obj = copy.deepcopy(obj)
            meta = obj["metadata"]
            meta.setdefault("namespace", "default")
            key = (meta["namespace"], meta["name"])
            old = self.objects[resource][key]
            if check_version and meta.get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise ValueError("conflict")
            self.rv += 1
            for field in ("uid", "creationTimestamp"):
                meta[field] = old["metadata"][field]
            meta["resourceVersion"] = str(self.rv)
            self.objects[resource][key] = obj
            self._emit(resource, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, resource, namespace, name):
        with self.cond:
            obj = self.objects[resource].pop((namespace, name))
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._emit(resource, "DELETED", obj)

    def get(self, resource, namespace, name):
        with self.cond:
            return copy.deepcopy(self.objects[resource].get((namespace, name)))

    def compact(self):
        """Forgets the event history, as etcd compaction does: older versions become 410."""
        with self.cond:
            self.history = []
            self.oldest = self.rv

    def snapshot(self, resource):
        with self.cond:
            items = [copy.deepcopy(self.objects[resource][k]) for k in sorted(self.objects[resource])]
            return items, self.rv

    def check_version(self, rv):
        if rv < self.oldest:
            raise Gone("too old resource version: %d (%d)" % (rv, self.oldest))

    def events_after(self, resource, rv):
        """The events of `resource` after version rv (the caller holds cond)."""
        return [(v, t, o) for (v, r, t, o) in self.history if r == resource and v > rv]


def status_body(code, reason, message):
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeApiServer:
    def __init__(self, cert_file, key_file, token, port=0, bookmark_seconds=1.0, address="127.0.0.1"):
        self.store = Store()
        self.cert_file, self.key_file, self.token = cert_file, key_file, token
        self.bookmark_seconds = bookmark_seconds
        self.requests = []  # (method, path with query, status)
        self.bookmarks_sent = []  # (resource, rv)
        self.events_posted = []
        self.lock = threading.Lock()
        self.watch_sockets = set()
        self.cut = 0  # disconnect() generation
        self.port = port
        self.address = address
        self.httpd = None
        self.start()

    # ---- control from the test ----
    def start(self):
        handler = self._handler_class()
        httpd = ThreadingHTTPServer((self.address, self.port), handler)
        httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        self.httpd = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def stop(self):
        """The API server goes away: no listener, every connection cut."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.disconnect()

    def disconnect(self):
        """Cuts every open watch without the terminating chunk (a dropped connection)."""
        with self.store.cond:
            self.cut += 1
            self.store.cond.notify_all()
        with self.lock:
            for s in list(self.watch_sockets):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def requests_matching(self, method, prefix):
        with self.lock:
            return [r for r in self.requests if r[0] == method and r[1].startswith(prefix)]

    # ---- HTTP ----
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _send_json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with server.lock:
                    server.requests.append((self.command, self.path, code))

            def _authorized(self):
                if self.headers.get("Authorization") == "Bearer " + server.token:
                    return True
                self._send_json(401, status_body(401, "Unauthorized", "Unauthorized"))
                return False

            def _body(self):
                n = int(self.headers.get("Content-Length", "0"))
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self):
                if not self._authorized():
                    return
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                found = parse_collection(url.path)
                if found is None:
                    return self._send_json(404, status_body(404, "NotFound", "the server could not find the requested resource"))
                resource, namespace, name = found
                if name is not None:
                    obj = server.store.get(resource, namespace, name)
                    if obj is None:
                        return self._send_json(404, status_body(404, "NotFound", '%s "%s" not found' % (resource, name)))
                    obj.update({"kind": RESOURCES[resource]["kind"], "apiVersion": RESOURCES[resource]["apiVersion"]})
                    return self._send_json(200, obj)
                if query.get("watch") in ("1", "true"):
                    return self._watch(resource, query, selects(namespace, query))
                return self._list(resource, query, selects(namespace, query))

            def _list(self, resource, query, wanted):
                items, rv = server.store.snapshot(resource)
                items = [o for o in items if wanted(o)]
                start = 0
                if query.get("continue"):
                    token = json.loads(urllib.parse.unquote(query["continue"]))
                    start, rv = token["start"], token["rv"]
                    try:
                        server.store.check_version(rv)
                    except Gone as e:
                        return self._send_json(410, status_body(410, "Expired", "The provided continue parameter is too old: " + str(e)))
                limit = int(query.get("limit", "0")) or len(items) + 1
                page = items[start:start + limit]
                meta = {"resourceVersion": str(rv)}
                if start + limit < len(items):
                    meta["continue"] = json.dumps({"start": start + limit, "rv": rv})
                kind = RESOURCES[resource]["kind"] + "List"
                self._send_json(200, {"kind": kind, "apiVersion": RESOURCES[resource]["apiVersion"], "metadata": meta, "items": page})

            def _chunk(self, obj):
                data = (json.dumps(obj) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _watch(self, resource, query, wanted):
                rv = int(query.get("resourceVersion") or "0")
                timeout = float(query.get("timeoutSeconds", "1800"))
                bookmarks = query.get("allowWatchBookmarks") == "true"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with server.lock:
                    server.requests.append(("GET", self.path, 200))
                    server.watch_sockets.add(self.connection)
                store = server.store
                deadline = time.monotonic() + timeout
                next_bookmark = time.monotonic() + server.bookmark_seconds
                try:
                    with store.cond:
                        cut = server.cut
                        try:
                            store.check_version(rv)  # an open watch outlives compaction; a new one does not
                            gone = None
                        except Gone as e:
                            gone = e
                    while gone is None:
                        with store.cond:
                            if server.cut != cut:
                                return  # dropped: no terminating chunk
                            events = store.events_after(resource, rv)
                            if not events:
                                wait = min(deadline, next_bookmark) - time.monotonic()
                                if wait > 0:
                                    store.cond.wait(wait)
                                events = [] if server.cut != cut else store.events_after(resource, rv)
                            current = store.rv
                        for v, kind, obj in events:
                            if wanted(obj):
                                self._chunk({"type": kind, "object": obj})
                            rv = v
                        now = time.monotonic()
                        if now >= deadline:
                            break
                        if bookmarks and now >= next_bookmark:
                            next_bookmark = now + server.bookmark_seconds
                            if current > rv:
                                self._chunk({"type": "BOOKMARK", "object": {
                                    "kind": RESOURCES[resource]["kind"],
                                    "apiVersion": RESOURCES[resource]["apiVersion"],
                                    "metadata": {"resourceVersion": str(current)}}})
                                with server.lock:
                                    server.bookmarks_sent.append((resource, current))
                                rv = current
                    if gone is not None:
                        self._chunk({"type": "ERROR", "object": status_body(410, "Expired", str(gone))})
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, OSError, ssl.SSLError):
                    pass
                finally:
                    with server.lock:
                        server.watch_sockets.discard(self.connection)
                    self.close_connection = True

            def _put_lease(self, namespace, name):
                """PUT of a whole Lease: unconditional without a resourceVersion; 404 when absent
                (Leases are not created by an update)."""
                body = self._body()
                current = server.store.get("leases", namespace, name)
                if current is None:
                    return self._send_json(404, status_body(404, "NotFound", 'leases "%s" not found' % name))
                body.setdefault("metadata", {}).update({"namespace": namespace, "name": name})
                try:
                    updated = server.store.update("leases", body, check_version=bool(body["metadata"].get("resourceVersion")))
                except ValueError:
                    return self._send_json(409, status_body(409, "Conflict", "the object has been modified"))
                updated.update({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1"})
                self._send_json(200, updated)

            def _post_lease(self, namespace):
                body = self._body()
                body.setdefault("metadata", {})["namespace"] = namespace
                if server.store.get("leases", namespace, body["metadata"].get("name", "")) is not None:
                    return self._send_json(409, status_body(409, "AlreadyExists", "leases already exists"))
                created = server.store.create("leases", body)
                created.update({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1"})
                self._send_json(201, created)

            def do_PUT(self):
                if not self._authorized():
                    return
                found = parse_collection(urllib.parse.urlsplit(self.path).path)
                if found and found[0] == "leases" and found[1] and found[2]:
                    return self._put_lease(found[1], found[2])
                parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
                # api/v1/namespaces/NS/services/NAME/status
                if len(parts) != 7 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "services" or parts[6] != "status":
                    return self._send_json(404, status_body(404, "NotFound", "not found"))
                ns, name = parts[3], parts[5]
                body = self._body()
                current = server.store.get("services", ns, name)
                if current is None:
                    return self._send_json(404, status_body(404, "NotFound", 'services "%s" not found' % name))
                if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    return self._send_json(409, status_body(409, "Conflict", 'Operation cannot be fulfilled on services "%s": the object has been modified; please apply your changes to the latest version and try again' % name))
                current["status"] = body.get("status", {})  # the status subresource changes status only
                try:
                    updated = server.store.update("services", current, check_version=True)
                except ValueError:
                    return self._send_json(409, status_body(409, "Conflict", "the object has been modified"))
                updated.update({"kind": "Service", "apiVersion": "v1"})
                self._send_json(200, updated)

            def do_POST(self):
                if not self._authorized():
                    return
                found = parse_collection(urllib.parse.urlsplit(self.path).path)
                if found and found[0] == "leases" and found[1] and not found[2]:
                    return self._post_lease(found[1])
                parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
                if len(parts) != 5 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "events":
                    return self._send_json(404, status_body(404, "NotFound", "not found"))
                event = self._body()
                if event.get("metadata", {}).get("namespace") not in (None, parts[3]):
                    return self._send_json(400, status_body(400, "BadRequest", "the namespace of the object does not match the namespace on the request"))
                with server.lock:
                    server.events_posted.append(event)
                event.setdefault("metadata", {})["name"] = event["metadata"].get("generateName", "e.") + uuid.uuid4().hex[:5]
                self._send_json(201, event)

        return Handler
