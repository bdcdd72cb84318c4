"""A FAKE of the Hetzner Cloud API (https://api.hetzner.cloud/v1), for what cloudalone (the
third-party emulator the other trial uses) does not do: it stores labels and filters by
`label_selector` (`k==v`, `k=v`, `k!=v`, `k`, `!k`, comma = AND), gives servers a public IPv4
address (a loopback address in tests, where an OpenSSH server listens), answers `429
rate_limit_exceeded` with `RateLimit-*` headers when asked to, keeps names unique (409
`uniqueness_error`), and has firewalls (rules, `apply_to` at server create and by
`apply_to_resources`, `set_rules`, refused deletion while applied) and private networks (a cloud
subnet per network zone, servers attached at create or by `attach_to_network`, detached when
deleted), which cloudalone lacks. It follows the published API: `{"server": ...}` / `{"servers": [...],
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
NETWORK_ZONES = {"fsn1": "eu-central", "nbg1": "eu-central", "hel1": "eu-central", "ash": "us-east",
                 "hil": "us-west", "sin": "ap-southeast"}
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
        self.firewalls, self.networks = {}, {}
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
        firewalls = []
        for f in body.get("firewalls") or []:
            fw = self.firewalls.get(f.get("firewall"))
            if fw is None:
                raise ApiError(400, "invalid_input", f"firewall {f.get('firewall')} not found")
            firewalls.append(fw)
        networks = []
        for n in body.get("networks") or []:
            net = self.networks.get(n)
            if net is None:
                raise ApiError(400, "invalid_input", f"network {n} not found")
            self.subnet_for(net, loc)
            networks.append(net)
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
        for fw in firewalls:
            self.apply_firewall(fw, s)
        for net in networks:
            self.attach(net, s)
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

    def subnet_for(self, net, location):
        zone = NETWORK_ZONES[location]
        if not any(sub["network_zone"] == zone for sub in net["subnets"]):
            raise ApiError(422, "invalid_input", f"network {net['id']} has no subnet in network zone {zone}")

    def apply_firewall(self, fw, s):
        fw["applied_to"].append({"type": "server", "server": {"id": s["id"]}})
        s["public_net"]["firewalls"].append({"id": fw["id"], "status": "applied"})

    def attach(self, net, s):
        base = net["subnets"][0]["ip_range"].split("/")[0].rsplit(".", 1)[0]
        ip = f"{base}.{len(net['servers']) + 2}"
        net["servers"].append(s["id"])
        s["private_net"].append({"network": net["id"], "ip": ip, "alias_ips": [], "mac_address": "86:00:00:00:00:01"})

    def forget_server(self, s):
        for fw in self.firewalls.values():
            fw["applied_to"] = [a for a in fw["applied_to"] if a["server"]["id"] != s["id"]]
        for net in self.networks.values():
            net["servers"] = [i for i in net["servers"] if i != s["id"]]
        self.servers.pop(s["id"], None)

    @staticmethod
    def check_rules(rules):
        for r in rules or []:
            if r.get("direction") not in ("in", "out") or r.get("protocol") not in ("tcp", "udp", "icmp", "esp", "gre"):
                raise ApiError(400, "invalid_input", "invalid input in field 'rules'")
            if (r["protocol"] in ("tcp", "udp")) != bool(r.get("port")):
                raise ApiError(400, "invalid_input", "port is required for tcp and udp rules only")
            if r["direction"] == "in" and not r.get("source_ips"):
                raise ApiError(400, "invalid_input", "source_ips are required for inbound rules")
        return [{"direction": r["direction"], "protocol": r["protocol"], "port": r.get("port"),
                 "source_ips": r.get("source_ips") or [], "destination_ips": r.get("destination_ips") or [],
                 "description": r.get("description")} for r in rules or []]

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
        if name == "attach_to_network":
            net = self.networks.get(body.get("network"))
            if net is None:
                raise ApiError(404, "not_found", f"network {body.get('network')} not found")
            if s["id"] in net["servers"]:
                raise ApiError(422, "server_already_attached", "server is already attached to the network")
            self.subnet_for(net, s["datacenter"]["location"]["name"])
            self.attach(net, s)
            return self.action("attach_to_network", s["id"])
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
                return 200, {"locations": [{"id": i + 1, "name": n, "network_zone": NETWORK_ZONES[n]}
                                           for i, n in enumerate(LOCATIONS)
                                           if "name" not in query or query["name"][0] == n]}
            if parts in (["firewalls"], ["networks"]):
                kind = parts[0]
                store = cloud.firewalls if kind == "firewalls" else cloud.networks
                one = kind[:-1]
                if method == "GET":
                    items = [x for x in store.values()
                             if cloud.matches(x, (query.get("label_selector") or [""])[0])
                             and ("name" not in query or x["name"] == query["name"][0])]
                    return 200, page(items, query, kind)
                if method == "POST":
                    name = body.get("name") or ""
                    if not name:
                        raise ApiError(400, "invalid_input", "invalid input in field 'name'")
                    if any(x["name"] == name for x in store.values()):
                        raise ApiError(409, "uniqueness_error", f"{one} name is already used")
                    x = {"id": cloud.new_id(), "name": name, "labels": body.get("labels") or {},
                         "created": "2026-01-01T00:00:00+00:00"}
                    if kind == "firewalls":
                        x.update(rules=cloud.check_rules(body.get("rules")), applied_to=[])
                        store[x["id"]] = x
                        return 201, {"firewall": x, "actions": []}
                    subnets = body.get("subnets") or []
                    if any(sub.get("network_zone") not in NETWORK_ZONES.values() for sub in subnets):
                        raise ApiError(400, "invalid_input", "invalid input in field 'network_zone'")
                    x.update(ip_range=body.get("ip_range"), servers=[], routes=[], load_balancers=[],
                             subnets=[{"type": sub.get("type"), "ip_range": sub.get("ip_range"),
                                       "network_zone": sub["network_zone"], "gateway": "10.0.0.1"} for sub in subnets])
                    store[x["id"]] = x
                    return 201, {"network": x}
            if len(parts) >= 2 and parts[0] in ("firewalls", "networks"):
                store = cloud.firewalls if parts[0] == "firewalls" else cloud.networks
                one = parts[0][:-1]
                x = store.get(int(parts[1])) if parts[1].isdigit() else None
                if x is None:
                    raise ApiError(404, "not_found", f"{one} with ID '{parts[1]}' not found")
                if len(parts) == 2 and method == "GET":
                    return 200, {one: x}
                if len(parts) == 2 and method == "DELETE":
                    if x.get("applied_to") or x.get("servers"):
                        raise ApiError(422, "resource_in_use", f"{one} is still in use")
                    store.pop(x["id"])
                    return 204, None
                if parts[2:] == ["actions", "set_rules"] and method == "POST":
                    x["rules"] = cloud.check_rules(body.get("rules"))
                    return 201, {"actions": [cloud.public(cloud.action("set_firewall_rules", x["id"]))]}
                if parts[2:] == ["actions", "apply_to_resources"] and method == "POST":
                    for target in body.get("apply_to") or []:
                        s = cloud.servers.get((target.get("server") or {}).get("id"))
                        if s is None:
                            raise ApiError(404, "not_found", "server not found")
                        if any(a["server"]["id"] == s["id"] for a in x["applied_to"]):
                            raise ApiError(422, "firewall_already_applied", "firewall is already applied")
                        cloud.apply_firewall(x, s)
                    return 201, {"actions": [cloud.public(cloud.action("apply_firewall", x["id"]))]}
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
                        cloud.forget_server(s)
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
