"""A FAKE of the Hetzner Cloud API (https://api.hetzner.cloud/v1), for what cloudalone (the
third-party emulator the other trial uses) does not do: it stores labels and filters by
`label_selector` (`k==v`, `k=v`, `k!=v`, `k`, `!k`, comma = AND), gives servers a public IPv4
address (a loopback address in tests, where an OpenSSH server listens), answers `429
rate_limit_exceeded` with `RateLimit-*` headers when asked to, and keeps names unique (409
`uniqueness_error`). It follows the published API: `{"server": ...}` / `{"servers": [...],
"meta": {"pagination": ...}}` envelopes, actions that run for a while and then succeed (polled at
/v1/actions/ID), the server statuses `initializing`, `running`, `stopping`, `off`, and the error
body `{"error": {"code", "message", "details"}}`.

    python hetzner.py --token T [--public-ip 127.0.0.1] [--action-seconds 0.3]
        [--rate-limit-every N] [--authorized-keys FILE] [--log FILE]

Prints `listening on http://127.0.0.1:PORT/v1` and serves until killed. With --authorized-keys
the public keys of a created server's `ssh_keys` are added to that file (what cloud-init does).
Every request is appended to --log as one JSON line (method, path, status), without the token.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TYPES = {"cx22": (2, 4, 40), "cx32": (4, 8, 80), "cx42": (8, 16, 160), "cpx11": (2, 2, 40),
         "cpx21": (3, 4, 80), "cax11": (2, 4, 40), "ccx13": (2, 8, 80)}
LOCATIONS = ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"]
IMAGES = ["debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04"]


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Cloud:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.servers, self.actions, self.keys = {}, {}, {}
        self.next_id, self.requests = 1, 0

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def action(self, command, server_id, then=None):
        a = {"id": self.new_id(), "command": command, "status": "running", "progress": 0,
             "started": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "finished": None,
             "resources": [{"id": server_id, "type": "server"}], "error": None,
             "_done_at": time.monotonic() + self.args.action_seconds, "_then": then}
        self.actions[a["id"]] = a
        return a

    def settle(self):
        now = time.monotonic()
        for a in self.actions.values():
            if a["status"] == "running" and now >= a["_done_at"]:
                a["status"], a["progress"] = "success", 100
                a["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
                if a["_then"]:
                    a["_then"]()

    @staticmethod
    def public(obj):
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def server_json(self, s):
        return self.public(s)

    def matches(self, s, selector):
        labels = s["labels"]
        for term in filter(None, (t.strip() for t in selector.split(","))):
            if "!=" in term:
                k, v = term.split("!=", 1)
                if labels.get(k) == v:
                    return False
            elif "==" in term or "=" in term:
                k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
                if labels.get(k) != v:
                    return False
            elif term.startswith("!"):
                if term[1:] in labels:
                    return False
            elif term not in labels:
                return False
        return True

    def create_server(self, body):
        name = body.get("name") or ""
        if not name or len(name) > 63:
            raise ApiError(400, "invalid_input", "invalid input in field 'name'")
        if any(s["name"] == name for s in self.servers.values()):
            raise ApiError(409, "uniqueness_error", "server name is already used")
        st = body.get("server_type")
        if st not in TYPES:
            raise ApiError(400, "invalid_input", f"server type {st} not found")
        loc = body.get("location") or "fsn1"
        if loc not in LOCATIONS:
            raise ApiError(400, "invalid_input", f"location {loc} not found")
        img = body.get("image")
        if img not in IMAGES:
            raise ApiError(400, "invalid_input", f"image {img} not found")
        labels = body.get("labels") or {}
        keys = []
        for k in body.get("ssh_keys") or []:
            found = [x for x in self.keys.values() if x["id"] == k or x["name"] == k]
            if not found:
                raise ApiError(400, "invalid_input", f"ssh key {k} not found")
            keys.append(found[0])
        cores, memory, disk = TYPES[st]
        sid = self.new_id()
        s = {"id": sid, "name": name, "status": "initializing", "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
             "public_net": {"ipv4": {"id": sid, "ip": self.args.public_ip, "blocked": False, "dns_ptr": f"static.{sid}.example"},
                            "ipv6": {"id": sid, "ip": f"2a01:4f9:c010:{sid:x}::/64", "blocked": False, "dns_ptr": []},
                            "floating_ips": [], "firewalls": []},
             "private_net": [],
             "server_type": {"id": list(TYPES).index(st) + 1, "name": st, "cores": cores, "memory": float(memory), "disk": disk,
                             "cpu_type": "shared", "architecture": "arm" if st.startswith("cax") else "x86"},
             "datacenter": {"id": LOCATIONS.index(loc) + 1, "name": f"{loc}-dc1", "location": {"id": LOCATIONS.index(loc) + 1, "name": loc}},
             "image": {"id": IMAGES.index(img) + 1, "type": "system", "name": img, "os_flavor": img.split("-")[0], "os_version": img.split("-")[1]},
             "labels": labels, "locked": False, "protection": {"delete": False, "rebuild": False},
             "included_traffic": 21990232555520, "primary_disk_size": disk, "volumes": [], "load_balancers": []}
        self.servers[sid] = s
        if self.args.authorized_keys and keys:
            with open(self.args.authorized_keys, "a") as f:
                for k in keys:
                    f.write(k["public_key"].strip() + "\n")

        def started():
            s["status"] = "running"
        create = self.action("create_server", sid, started)
        start = self.action("start_server", sid)
        start["status"], start["progress"] = "success", 100
        return {"server": self.server_json(s), "action": self.public(create), "next_actions": [self.public(start)], "root_password": None}

    def server_action(self, s, name, body):
        def to(status):
            def f():
                s["status"] = status
            return f
        if name == "poweron":
            return self.action("start_server", s["id"], to("running"))
        if name in ("shutdown", "poweroff"):
            s["status"] = "stopping"
            return self.action(name if name == "shutdown" else "stop_server", s["id"], to("off"))
        if name == "change_type":
            if s["status"] != "off":
                raise ApiError(409, "server_not_stopped", "server must be stopped before changing type")
            st = body.get("server_type")
            if st not in TYPES:
                raise ApiError(400, "invalid_input", f"server type {st} not found")

            def change():
                cores, memory, disk = TYPES[st]
                s["server_type"].update({"name": st, "cores": cores, "memory": float(memory), "disk": disk})
            return self.action("change_server_type", s["id"], change)
        raise ApiError(404, "not_found", f"unknown action: {name}")


def page(items, query, key):
    per = min(int((query.get("per_page") or ["25"])[0]), 50)
    n = int((query.get("page") or ["1"])[0])
    chunk = items[(n - 1) * per:n * per]
    last = max(1, (len(items) + per - 1) // per)
    return {key: chunk, "meta": {"pagination": {"page": n, "per_page": per, "previous_page": n - 1 or None,
                                                "next_page": n + 1 if n < last else None, "last_page": last,
                                                "total_entries": len(items)}}}


def handler_for(cloud):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def reply(self, status, body, headers=None):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            if cloud.args.log:
                with cloud.lock, open(cloud.args.log, "a") as f:
                    f.write(json.dumps({"method": self.command, "path": urlsplit(self.path).path, "status": status}) + "\n")

        def handle_any(self):
            try:
                with cloud.lock:
                    cloud.requests += 1
                    limited = cloud.args.rate_limit_every and cloud.requests % cloud.args.rate_limit_every == 0
                if self.headers.get("Authorization") != f"Bearer {cloud.args.token}":
                    raise ApiError(401, "unauthorized", "unable to authenticate")
                if limited:
                    self.reply(429, {"error": {"code": "rate_limit_exceeded", "message": "limit of 3600 requests per hour reached", "details": {}}},
                               {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(time.time()) + 1)})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                parts = [p for p in url.path.split("/") if p]
                if parts[:1] != ["v1"]:
                    raise ApiError(404, "not_found", "not found")
                with cloud.lock:
                    cloud.settle()
                    status, out = self.route(self.command, parts[1:], query, body)
                self.reply(status, out)
            except ApiError as e:
                self.reply(e.status, {"error": {"code": e.code, "message": e.message, "details": {}}})

        def route(self, method, parts, query, body):
            if parts == ["locations"] and method == "GET":
                return 200, {"locations": [{"id": i + 1, "name": n} for i, n in enumerate(LOCATIONS)]}
            if parts == ["ssh_keys"]:
                if method == "GET":
                    return 200, page([cloud.public(k) for k in cloud.keys.values()], query, "ssh_keys")
                if method == "POST":
                    pub = (body.get("public_key") or "").strip()
                    if not pub.startswith(("ssh-", "ecdsa-")):
                        raise ApiError(400, "invalid_input", "invalid input in field 'public_key'")
                    bare = " ".join(pub.split()[:2])
                    if any(" ".join(k["public_key"].split()[:2]) == bare for k in cloud.keys.values()):
                        raise ApiError(409, "uniqueness_error", "SSH key with the same fingerprint already exists")
                    if any(k["name"] == body.get("name") for k in cloud.keys.values()):
                        raise ApiError(409, "uniqueness_error", "name is already used")
                    k = {"id": cloud.new_id(), "name": body.get("name"), "public_key": pub, "labels": body.get("labels") or {},
                         "fingerprint": "00:00", "created": "2026-01-01T00:00:00+00:00"}
                    cloud.keys[k["id"]] = k
                    return 201, {"ssh_key": cloud.public(k)}
            if parts == ["servers"]:
                if method == "GET":
                    items = [s for s in cloud.servers.values()
                             if cloud.matches(s, (query.get("label_selector") or [""])[0])
                             and ("name" not in query or s["name"] == query["name"][0])]
                    return 200, page([cloud.server_json(s) for s in items], query, "servers")
                if method == "POST":
                    return 201, cloud.create_server(body)
            if len(parts) >= 2 and parts[0] == "servers":
                s = cloud.servers.get(int(parts[1])) if parts[1].isdigit() else None
                if s is None:
                    raise ApiError(404, "not_found", f"server with ID '{parts[1]}' not found")
                if len(parts) == 2 and method == "GET":
                    return 200, {"server": cloud.server_json(s)}
                if len(parts) == 2 and method == "PUT":
                    if "labels" in body:
                        s["labels"] = body["labels"] or {}
                    if body.get("name"):
                        s["name"] = body["name"]
                    return 200, {"server": cloud.server_json(s)}
                if len(parts) == 2 and method == "DELETE":
                    def gone():
                        cloud.servers.pop(s["id"], None)
                    s["status"] = "deleting"
                    return 200, {"action": cloud.public(cloud.action("delete_server", s["id"], gone))}
                if len(parts) == 4 and parts[2] == "actions" and method == "POST":
                    return 201, {"action": cloud.public(cloud.server_action(s, parts[3], body))}
            if len(parts) == 2 and parts[0] == "actions" and method == "GET":
                a = cloud.actions.get(int(parts[1])) if parts[1].isdigit() else None
                if a is None:
                    raise ApiError(404, "not_found", "action not found")
                return 200, {"action": cloud.public(a)}
            raise ApiError(404, "not_found", "not found")

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--token", required=True)
    p.add_argument("--public-ip", default="127.0.0.1")
    p.add_argument("--action-seconds", type=float, default=0.3)
    p.add_argument("--rate-limit-every", type=int, default=0, help="answer every Nth request with 429")
    p.add_argument("--authorized-keys")
    p.add_argument("--log")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(Cloud(args)))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
