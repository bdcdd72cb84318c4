"""An apply as an MCP task (the tasks extension) that outlives `kill -9` of its server.

    python task_apply.py BINARY WORKDIR

The official Python SDK 2.x (`mcp.Client`, which negotiates the 2026-07-28 protocol) declares
`io.modelcontextprotocol/tasks` through a client extension of its own (the SDK has the claim
mechanism, not a tasks client). Over stdio (`serve --standalone`), on the sim cloud whose every
call takes 8 s: `apply_plan` answers with a task (its id is the workflow's); after the first step
is done the server is killed with SIGKILL; a new server answers `tasks/get` for the same id (the
interrupted workflow continues as the caller) until the task completes with the tool's final
answer. Then a second apply is started as a task and cancelled with `tasks/cancel`. Prints one
JSON line with what it saw; exits non-zero with a message on the first failed expectation.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.extension import ClientExtension, ResultClaim
from pydantic import ConfigDict

BINARY, WORK = sys.argv[1], sys.argv[2]
DATA = os.path.join(WORK, "data")


def config(name):
    return f"""{{
  workspace = {{ name = "{name}", environment = "dev" }},
  servers = [{{
    name = "s1", provider = "sim", plan = "small", zone = "sim-1",
    taskservs = [{{ name = "redis" }}, {{ name = "nginx", depends_on = ["s1/redis"] }}],
  }}],
}}"""


def expect(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def env():
    e = {k: v for k, v in os.environ.items() if k != "PROVISIONING_CONFIG"}
    e.update(
        PROVISIONING_PATHS_DATA_DIR=DATA,
        PROVISIONING_CONFIG=os.path.join(WORK, "config.toml"),
        PROVISIONING_PATHS_MODELS_DIR=os.path.join(WORK, "no-models"),
        XDG_CONFIG_HOME="/nonexistent/provisioning-tests",
        PROVISIONING_SIM_LATENCY_MS="8000",
    )
    return e


class CreateTask(types.Result):
    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"]
    task_id: str
    status: str
    poll_interval_ms: int | None = None


class TaskState(types.Result):
    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class GetTask(types.Request[dict[str, Any], Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(types.Request[dict[str, Any], Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


async def unclaimed(created, ctx):
    raise AssertionError("this test reads the task handle itself (allow_claimed=True)")


class Tasks(ClientExtension):
    identifier = "io.modelcontextprotocol/tasks"

    def claims(self):
        return [ResultClaim(result_type="task", model=CreateTask, resolve=unclaimed)]


def client():
    params = StdioServerParameters(command=BINARY, args=["serve", "--standalone"], env=env())
    return Client(params, extensions=[Tasks()])


async def get(c, task_id):
    return await c.session.send_request(GetTask(params={"taskId": task_id}), TaskState)


def server_pids():
    """The `serve` processes of this installation (found by their data directory)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        if f"PROVISIONING_PATHS_DATA_DIR={DATA}".encode() in environ and b"serve" in cmdline:
            pids.append(int(entry))
    return pids


def ledger():
    try:
        with open(os.path.join(DATA, "sim", "ledger.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


async def main():
    seen = {}
    task_id = None
    killed = False
    try:
        async with client() as c:
            seen["protocol"] = str(c.protocol_version)
            plan = (await c.call_tool("plan_changes", {"config": config("tasked")})).structured_content
            created = await c.session.call_tool("apply_plan", {"plan_id": plan["plan_id"]}, allow_claimed=True)
            expect(isinstance(created, CreateTask), f"apply_plan answers with a task: {created!r}")
            task_id = created.task_id
            expect(task_id.startswith("wf-"), f"the task is the workflow: {task_id}")
            deadline = time.monotonic() + 60
            while True:
                state = await get(c, task_id)
                expect(state.status == "working", f"working while it runs: {state}")
                if " 1 of 3 steps done" in (state.status_message or ""):
                    break
                expect(time.monotonic() < deadline, f"no step done in a minute: {state}")
                await anyio.sleep(0.5)
            seen["before_kill"] = state.status_message
            pids = server_pids()
            expect(len(pids) == 1, f"one server process: {pids}")
            os.kill(pids[0], signal.SIGKILL)
            killed = True
            await anyio.sleep(0.5)
    except Exception as e:  # the session ends with its server
        expect(killed, f"the first session failed before the kill: {e!r}")
    expect(killed and task_id, "the server was killed mid-apply")

    async with client() as c:
        first = await get(c, task_id)
        seen["after_restart"] = first.status_message
        expect(first.status == "working", f"the same task id after a restart: {first}")
        deadline = time.monotonic() + 120
        state = first
        while state.status == "working":
            expect(time.monotonic() < deadline, f"not finished in two minutes: {state}")
            await anyio.sleep((state.poll_interval_ms or 1000) / 1000)
            state = await get(c, task_id)
        expect(state.status == "completed", f"completed: {state}")
        final = state.result["structuredContent"]
        seen["final"] = final["status"]
        seen["outcome"] = final["outcome"]

        # A second apply as a task, cancelled through the task.
        plan = (await c.call_tool("plan_changes", {"config": config("cancelled")})).structured_content
        created = await c.session.call_tool("apply_plan", {"plan_id": plan["plan_id"]}, allow_claimed=True)
        await anyio.sleep(1)
        await c.session.send_request(CancelTask(params={"taskId": created.task_id}), types.Result)
        deadline = time.monotonic() + 60
        state = await get(c, created.task_id)
        while state.status == "working":
            expect(time.monotonic() < deadline, f"not cancelled in a minute: {state}")
            await anyio.sleep(1)
            state = await get(c, created.task_id)
        seen["cancelled"] = state.status
        if state.result:
            seen["cancelled_result"] = state.result.get("structuredContent")

        unknown = None
        try:
            await get(c, "wf-000000000000")
        except Exception as e:
            unknown = str(e)
        seen["unknown"] = unknown

    entries = [e for e in ledger() if e["resource"].startswith("tasked/")]
    seen["ledger"] = sorted(f"{e['op']} {e['resource']}" for e in entries)

    # On a team server, a viewer's token follows another person's task but cannot cancel it.
    await viewer_follows_but_cannot_cancel(seen)
    print(json.dumps(seen))


OLGA = "py-task-token-for-olga-0123456789"
VIC = "py-task-token-for-vic-0123456789"


async def viewer_follows_but_cannot_cancel(seen):
    with open(os.path.join(WORK, "config.toml"), "w") as f:
        f.write(
            f'[users.olga]\nroles = ["operator"]\ntoken_sha256 = "{hashlib.sha256(OLGA.encode()).hexdigest()}"\n\n'
            f'[users.vic]\nroles = ["viewer"]\ntoken_sha256 = "{hashlib.sha256(VIC.encode()).hexdigest()}"\n'
        )
    proc = subprocess.Popen(
        [BINARY, "serve", "--http", "127.0.0.1:0"], env=env(), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        expect(line.startswith("listening on "), f"address line: {line!r}")
        url = line.removeprefix("listening on ")

        def http_client(token):
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
            return http, Client(streamable_http_client(url, http_client=http), extensions=[Tasks()])

        olga_http, olga = http_client(OLGA)
        vic_http, vic = http_client(VIC)
        async with olga_http, olga, vic_http, vic:
            plan = (await olga.call_tool("plan_changes", {"config": config("watched")})).structured_content
            created = await olga.session.call_tool("apply_plan", {"plan_id": plan["plan_id"]}, allow_claimed=True)
            expect(isinstance(created, CreateTask), f"olga's apply is a task: {created!r}")
            watched = await get(vic, created.task_id)
            seen["viewer_get"] = watched.status
            try:
                await vic.session.send_request(CancelTask(params={"taskId": created.task_id}), types.Result)
                seen["viewer_cancel"] = "cancelled"
            except Exception as e:
                seen["viewer_cancel"] = str(e)
            after = await get(olga, created.task_id)
            seen["after_viewer_cancel"] = after.status
            await olga.session.send_request(CancelTask(params={"taskId": created.task_id}), types.Result)
            deadline = time.monotonic() + 60
            state = await get(olga, created.task_id)
            while state.status == "working":
                expect(time.monotonic() < deadline, f"not cancelled in a minute: {state}")
                await anyio.sleep(1)
                state = await get(olga, created.task_id)
            seen["owner_cancel"] = state.status
    finally:
        proc.kill()
        proc.wait()
    audit = subprocess.run(
        [BINARY, "audit", "export"], env=env(), capture_output=True, text=True
    )
    seen["audit_denied_cancel"] = [
        line for line in audit.stdout.splitlines() if "user:vic" in line and "deny" in line.lower()
    ][:3]


anyio.run(main)
