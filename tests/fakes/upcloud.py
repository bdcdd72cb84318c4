"""A FAKE of the UpCloud API (https://api.upcloud.com/1.3), for tests: no emulator of UpCloud
exists in any registry, so this stateful stand-in follows the published API as the official Go
client's recorded exchanges show it (UpCloudLtd/upcloud-go-api, upcloud/service/fixtures/*.yaml):
the paths (with or without a trailing slash), the `{"server": {...}}` envelopes, yes/no strings
and numbers as strings, the server state machine (created in `maintenance`, then `started`; stop
is asynchronous; a started server cannot be deleted or change plan: 409 SERVER_STATE_ILLEGAL),
label filters (`?label=key` / `?label=key%3Dvalue`, all must match), firewall rules, and the error
body `{"error": {"error_code", "error_message"}}` with the documented statuses (401
AUTHENTICATION_FAILED, 404 SERVER_NOT_FOUND, 400 for invalid input, 409 for illegal states).

Servers get the public IPv4 address given with --public-ip (a loopback address in tests, where
an OpenSSH server listens), so the provider's next step, software over SSH, reaches a real host;
with --authorized-keys, the SSH keys of a server's login block are added to that sshd's
authorized_keys file when the server is created (what cloud-init does on a real server), so the
host accepts exactly the key the provider sent through the API.

    python upcloud_fake.py --username U --password P [--token T] [--public-ip 127.0.0.1]
        [--boot-seconds 1] [--stop-seconds 1] [--log FILE] [--authorized-keys FILE]

Prints `listening on http://127.0.0.1:PORT` (the base URL without /1.3) and serves until killed.
Every request is appended to --log as one JSON line (method, path, status), without credentials.
"""

import argparse
import base64
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ZONES = {
    "de-fra1": "Frankfurt #1", "fi-hel1": "Helsinki #1", "fi-hel2": "Helsinki #2",
    "nl-ams1": "Amsterdam #1", "uk-lon1": "London #1", "pl-waw1": "Warsaw #1",
    "es-mad1": "Madrid #1", "se-sto1": "Stockholm #1", "dk-cph1": "Copenhagen #1",
    "us-chi1": "Chicago #1", "us-nyc1": "New York #1", "us-sjo1": "San Jose #1",
    "sg-sin1": "Singapore #1", "au-syd1": "Sydney #1",
}
PLANS = {
    "1xCPU-1GB": (1, 1024, 25), "1xCPU-2GB": (1, 2048, 50), "2xCPU-4GB": (2, 4096, 80),
    "4xCPU-8GB": (4, 8192, 160), "6xCPU-16GB": (6, 16384, 320), "8xCPU-32GB": (8, 32768, 640),
    "12xCPU-48GB": (12, 49152, 960),
}
TEMPLATES = {
    "01000000-0000-4000-8000-000020070100": "Debian GNU/Linux 12 (Bookworm)",
    "01000000-0000-4000-8000-000020060100": "Debian GNU/Linux 11 (Bullseye)",
    "01000000-0000-4000-8000-000030240200": "Ubuntu Server 24.04 LTS (Noble Numbat)",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Cloud:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.servers = {}
        self.next_ip = 10

    def settle(self, s):
        """Time moves the state machine on: maintenance -> started, stopping -> stopped."""
        now = time.monotonic()
        if s["state"] == "maintenance" and now >= s["_ready_at"]:
            s["state"] = "started"
            s["host"] = 6946046595
        if s.get("_stopping_at") is not None and now >= s["_stopping_at"]:
            s["state"] = "stopped"
            s.pop("host", None)
            s["_stopping_at"] = None

    def server(self, uid):
        if not UUID.match(uid):
            raise ApiError(400, "SERVER_INVALID", "The server UUID is invalid.")
        s = self.servers.get(uid)
        if s is None:
            raise ApiError(404, "SERVER_NOT_FOUND", f"The server {uid} does not exist.")
        self.settle(s)
        return s

    @staticmethod
    def public(s, short=False):
        keys = ["core_number", "created", "hostname", "labels", "license", "memory_amount", "plan",
                "plan_ipv4_bytes", "plan_ipv6_bytes", "server_group", "simple_backup", "state", "tags",
                "title", "uuid", "zone"]
        if s.get("host"):
            keys.append("host")
        if not short:
            keys += ["boot_order", "firewall", "ip_addresses", "metadata", "networking", "nic_model",
                     "progress", "remote_access_enabled", "storage_devices", "timezone", "video_model"]
        return {k: s[k] for k in keys if k in s}

    def create(self, body):
        spec = body.get("server")
        if not isinstance(spec, dict):
            raise ApiError(400, "SERVER_INVALID", "The request body must be {\"server\": {...}}.")
        for field, code in (("zone", "ZONE_MISSING"), ("title", "TITLE_MISSING"), ("hostname", "HOSTNAME_MISSING")):
            if not spec.get(field):
                raise ApiError(400, code, f"The attribute {field} is missing.")
        if spec["zone"] not in ZONES:
            raise ApiError(400, "ZONE_INVALID", f"The zone {spec['zone']} is invalid.")
        plan = spec.get("plan", "1xCPU-2GB")
        if plan not in PLANS:
            raise ApiError(400, "PLAN_INVALID", f"The plan {plan} does not exist.")
        devices = ((spec.get("storage_devices") or {}).get("storage_device")) or []
        if not devices:
            raise ApiError(400, "STORAGE_DEVICES_MISSING", "The attribute storage_devices is missing.")
        for d in devices:
            if d.get("action") == "clone" and d.get("storage") not in TEMPLATES:
                raise ApiError(404, "STORAGE_NOT_FOUND", f"The storage {d.get('storage')} does not exist.")
        labels = ((spec.get("labels") or {}).get("label")) or []
        keys = [l.get("key") for l in labels]
        if len(keys) != len(set(keys)):
            raise ApiError(400, "DUPLICATE_LABEL_KEYS", "The labels have duplicate keys.")
        for l in labels:
            k = l.get("key") or ""
            if not (2 <= len(k) <= 32) or k.startswith("_"):
                raise ApiError(400, "INVALID_LABEL_KEY", f"The label key {k} is invalid.")
        cores, memory, disk = PLANS[plan]
        uid = "00" + str(uuid.uuid4())[2:]
        with self.lock:
            self.next_ip += 1
            utility = f"10.6.6.{self.next_ip}"
        public = self.args.public_ip
        s = {
            "uuid": uid, "title": spec["title"], "hostname": spec["hostname"], "zone": spec["zone"],
            "plan": plan, "core_number": str(cores), "memory_amount": str(memory),
            "created": int(time.time()), "state": "maintenance", "progress": "0",
            "labels": {"label": labels}, "tags": {"tag": []}, "license": 0,
            "plan_ipv4_bytes": "0", "plan_ipv6_bytes": "0", "server_group": None, "simple_backup": "no",
            "boot_order": "disk", "firewall": spec.get("firewall", "off"), "metadata": spec.get("metadata", "no"),
            "nic_model": "virtio", "timezone": "UTC", "video_model": "cirrus", "remote_access_enabled": "no",
            "ip_addresses": {"ip_address": [
                {"access": "utility", "address": utility, "family": "IPv4"},
                {"access": "public", "address": public, "family": "IPv4"},
            ]},
            "networking": {"interfaces": {"interface": [
                {"index": 1, "type": "utility", "ip_addresses": {"ip_address": [{"address": utility, "family": "IPv4", "floating": "no"}]}},
                {"index": 2, "type": "public", "ip_addresses": {"ip_address": [{"address": public, "family": "IPv4", "floating": "no"}]}},
            ]}},
            "storage_devices": {"storage_device": [
                {"address": f"virtio:{i}", "boot_disk": "0", "storage": "01" + str(uuid.uuid4())[2:],
                 "storage_size": d.get("size", disk), "storage_tier": d.get("tier", "maxiops"),
                 "storage_title": d.get("title", "disk"), "type": "disk"}
                for i, d in enumerate(devices)
            ]},
            "login_user": spec.get("login_user"),
            "_ready_at": time.monotonic() + self.args.boot_seconds,
            "_stopping_at": None,
            "_firewall_rules": [],
        }
        self.servers[uid] = s
        self.authorize(spec.get("login_user"))
        return s

    def authorize(self, login_user):
        """What cloud-init does on the first boot: the login block's keys become authorized."""
        if not self.args.authorized_keys or not isinstance(login_user, dict):
            return
        keys = ((login_user.get("ssh_keys") or {}).get("ssh_key")) or []
        with self.lock, open(self.args.authorized_keys, "a") as f:
            for k in keys:
                if isinstance(k, str) and "\n" not in k:
                    f.write(k.strip() + "\n")

    def list(self, query):
        wanted = []
        for f in query.get("label", []):
            k, _, v = f.partition("=")
            wanted.append((k, v if "=" in f else None))
        out = []
        for s in self.servers.values():
            self.settle(s)
            have = {l["key"]: l.get("value", "") for l in s["labels"]["label"]}
            if all(k in have and (v is None or have[k] == v) for k, v in wanted):
                out.append(self.public(s, short=True))
        return out

    def modify(self, s, body):
        spec = body.get("server") or {}
        if "plan" in spec and spec["plan"] != s["plan"]:
            if spec["plan"] not in PLANS:
                raise ApiError(400, "PLAN_INVALID", f"The plan {spec['plan']} does not exist.")
            if s["state"] != "stopped":
                raise ApiError(409, "SERVER_STATE_ILLEGAL",
                               f"The operation is not allowed while the server {s['uuid']} is in state '{s['state']}'.")
            cores, memory, _ = PLANS[spec["plan"]]
            s.update(plan=spec["plan"], core_number=str(cores), memory_amount=str(memory))
        if "labels" in spec:
            s["labels"] = {"label": (spec["labels"] or {}).get("label") or []}
        if spec.get("firewall", "on") not in ("on", "off"):
            raise ApiError(400, "FIREWALL_INVALID", "The firewall value is invalid.")
        for k in ("title", "hostname", "firewall"):
            if k in spec:
                s[k] = spec[k]

    def stop(self, s):
        if s["state"] != "started" or s.get("_stopping_at") is not None:
            raise ApiError(409, "SERVER_STATE_ILLEGAL",
                           f"The operation is not allowed while the server {s['uuid']} is in state '{s['state']}'.")
        s["_stopping_at"] = time.monotonic() + self.args.stop_seconds

    def start(self, s):
        if s["state"] != "stopped":
            raise ApiError(409, "SERVER_STATE_ILLEGAL",
                           f"The operation is not allowed while the server {s['uuid']} is in state '{s['state']}'.")
        s["state"] = "maintenance"
        s["_ready_at"] = time.monotonic() + self.args.boot_seconds

    def delete(self, s):
        if s["state"] != "stopped":
            raise ApiError(409, "SERVER_STATE_ILLEGAL",
                           f"The operation is not allowed while the server {s['uuid']} is in state '{s['state']}'.")
        del self.servers[s["uuid"]]


RULE_KEYS = ["action", "comment", "destination_address_end", "destination_address_start",
             "destination_port_end", "destination_port_start", "direction", "family", "icmp_type",
             "position", "protocol", "source_address_end", "source_address_start", "source_port_end",
             "source_port_start"]


def check_rule(r):
    """A firewall rule as UpCloud checks it (error codes of upcloud-go-api's error_codes.go);
    returned with every key, unset ones as "" (as the recorded exchanges show)."""
    if not r.get("direction"):
        raise ApiError(400, "DIRECTION_MISSING", "The direction is missing.")
    if r["direction"] not in ("in", "out"):
        raise ApiError(400, "DIRECTION_INVALID", "The direction is invalid.")
    if not r.get("action"):
        raise ApiError(400, "ACTION_MISSING", "The action is missing.")
    if r["action"] not in ("accept", "drop"):
        raise ApiError(400, "ACTION_INVALID", "The action is invalid.")
    if r.get("protocol", "") not in ("", "tcp", "udp", "icmp"):
        raise ApiError(400, "PROTOCOL_INVALID", "The protocol is invalid.")
    if r.get("family", "") not in ("", "IPv4", "IPv6"):
        raise ApiError(400, "FAMILY_INVALID", "The family is invalid.")
    for side in ("source", "destination"):
        start, end = r.get(f"{side}_port_start", ""), r.get(f"{side}_port_end", "")
        if (start == "") != (end == ""):
            raise ApiError(400, f"{side.upper()}_PORT_END_INVALID", f"The {side} port range is incomplete.")
        if start != "":
            if r.get("protocol") not in ("tcp", "udp"):
                raise ApiError(400, "PORT_PROTOCOL_MISMATCH", "Ports need protocol tcp or udp.")
            if not (isinstance(start, str) and isinstance(end, str) and start.isdigit() and end.isdigit()
                    and 1 <= int(start) <= int(end) <= 65535):
                raise ApiError(400, f"{side.upper()}_PORT_START_INVALID", f"The {side} port range is invalid.")
        a, b = r.get(f"{side}_address_start", ""), r.get(f"{side}_address_end", "")
        if (a == "") != (b == ""):
            raise ApiError(400, f"{side.upper()}_ADDRESS_END_INVALID", f"The {side} address range is incomplete.")
        if a != "" and not r.get("family"):
            raise ApiError(400, "FAMILY_INVALID", "An address range needs its family.")
    return {k: str(r.get(k, "")) for k in RULE_KEYS}


def make_handler(cloud, args):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def authorized(self):
            header = self.headers.get("Authorization", "")
            if args.token and header == f"Bearer {args.token}":
                return True
            if header.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except Exception:
                    return False
                return user == args.username and password == args.password
            return False

        def send(self, status, body=None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps({"method": self.command, "path": self.path, "status": status}) + "\n")

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                if not self.authorized():
                    raise ApiError(401, "AUTHENTICATION_FAILED", "Authentication failed using the given username and password.")
                url = urlsplit(self.path)
                path = url.path.rstrip("/")
                query = {k: [unquote(x) for x in v] for k, v in parse_qs(url.query).items()}
                body = json.loads(raw) if raw else {}
                with cloud.lock:
                    status, out = self.route(self.command, path, query, body)
            except ApiError as e:
                status, out = e.status, {"error": {"error_code": e.code, "error_message": e.message}}
            except json.JSONDecodeError:
                status, out = 400, {"error": {"error_code": "JSON_INVALID", "error_message": "The request body is not valid JSON."}}
            self.send(status, out)

        def route(self, method, path, query, body):
            if not path.startswith("/1.3/"):
                raise ApiError(400, "API_VERSION_INVALID", "The API version is invalid.")
            parts = path[len("/1.3/"):].split("/")
            if parts == ["zone"] and method == "GET":
                return 200, {"zones": {"zone": [{"id": z, "description": d, "public": "yes"} for z, d in ZONES.items()]}}
            if parts == ["plan"] and method == "GET":
                return 200, {"plans": {"plan": [
                    {"name": n, "core_number": c, "memory_amount": m, "storage_size": d, "storage_tier": "maxiops"}
                    for n, (c, m, d) in PLANS.items()]}}
            if parts == ["storage", "template"] and method == "GET":
                return 200, {"storages": {"storage": [
                    {"uuid": u, "title": t, "type": "template", "access": "public", "template_type": "cloud-init",
                     "state": "online", "size": 5, "license": 0, "labels": []} for u, t in TEMPLATES.items()]}}
            if parts == ["server"]:
                if method == "GET":
                    return 200, {"servers": {"server": cloud.list(query)}}
                if method == "POST":
                    s = cloud.create(body)
                    return 202, {"server": cloud.public(s)}
            if len(parts) >= 2 and parts[0] == "server":
                s = cloud.server(parts[1])
                rest = parts[2:]
                if rest == [] and method == "GET":
                    return 200, {"server": cloud.public(s)}
                if rest == [] and method == "PUT":
                    cloud.modify(s, body)
                    return 202, {"server": cloud.public(s)}
                if rest == [] and method == "DELETE":
                    cloud.delete(s)
                    return 204, None
                if rest == ["stop"] and method == "POST":
                    cloud.stop(s)
                    return 200, {"server": cloud.public(s)}
                if rest == ["start"] and method == "POST":
                    cloud.start(s)
                    return 200, {"server": cloud.public(s)}
                if rest == ["firewall_rule"] and method == "GET":
                    return 200, {"firewall_rules": {"firewall_rule": s["_firewall_rules"]}}
                if rest == ["firewall_rule"] and method == "POST":
                    rule = dict((body.get("firewall_rule") or {}))
                    rule.setdefault("position", str(len(s["_firewall_rules"]) + 1))
                    s["_firewall_rules"].append(rule)
                    return 201, {"firewall_rule": rule}
                if rest == ["firewall_rule"] and method == "PUT":
                    rules = ((body.get("firewall_rules") or {}).get("firewall_rule")) or []
                    s["_firewall_rules"] = [dict(check_rule(r), position=str(i + 1)) for i, r in enumerate(rules)]
                    return 204, None
            raise ApiError(404, "RESOURCE_NOT_FOUND", f"No such resource: {method} {path}")

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--token")
    p.add_argument("--public-ip", default="127.0.0.1")
    p.add_argument("--boot-seconds", type=float, default=1.0)
    p.add_argument("--stop-seconds", type=float, default=1.0)
    p.add_argument("--log")
    p.add_argument("--authorized-keys", help="the loopback sshd's authorized_keys: the login "
                   "block's SSH keys of each created server are added to it, as cloud-init would")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    cloud = Cloud(args)
    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            # A client killed mid-request (the tests kill -9 the provisioning process).
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", args.port), make_handler(cloud, args))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
