"""Two assistants and the CLI share one local server, through the official Python SDK.

    python local_server.py BINARY WORKDIR SOCKET

The local server (`provisioning serve --socket SOCKET`) is already running. Two MCP clients
connect at once over stdio through `provisioning serve --connect SOCKET`, each started with a
different $USER, which changes nothing: the kernel says who they are. One applies a dev plan
(with progress) and stops a prod plan at the approval gate; while both stay connected the CLI
lists the request over the same socket, and a `USER=bob` approval is refused as the requester's
own. The assistant's dev destroy waits for one approval, which the person gives at the CLI. Exits non-zero with a message on the first failed expectation.
"""

import asyncio
import os
import pwd
import subprocess
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BINARY, WORK, SOCKET = sys.argv[1], sys.argv[2], sys.argv[3]
ME = pwd.getpwuid(os.geteuid()).pw_name
DEV = '{ workspace = { name = "locallab", environment = "dev" }, servers = [{ name = "d1", provider = "sim", plan = "small", zone = "sim-1" }, { name = "d2", provider = "sim", plan = "small", zone = "sim-1" }] }'
PROD = '{ workspace = { name = "localshop", environment = "prod" }, servers = [{ name = "w1", provider = "sim", plan = "small", zone = "sim-1" }] }'


def expect(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def env(user):
    # Nothing here says where the state is: only the socket leads to it.
    e = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
    e.update(USER=user, LOGNAME=user, PROVISIONING_CONFIG=os.path.join(WORK, "elsewhere.toml"))
    return e


def assistant(user):
    return stdio_client(
        StdioServerParameters(command=BINARY, args=["serve", "--connect", SOCKET], env=env(user))
    )


def structured(result, what):
    expect(not result.is_error, f"{what} failed: {result.content}")
    return result.structured_content


def cli(*args, user="bob"):
    return subprocess.run(
        [BINARY, *args, "--server", f"unix:{SOCKET}"], env=env(user), capture_output=True, text=True
    )


async def main():
    # A config of the caller's own choosing, giving everyone every role: the local server
    # decides from its own config, so this changes nothing.
    with open(os.path.join(WORK, "elsewhere.toml"), "w") as f:
        f.write('[access]\ndefault_roles = ["approver", "operator"]\n[users.bob]\nroles = ["approver"]\n')
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async with assistant("mallory") as (ra, wa), assistant("someone-else") as (rb, wb):
        async with ClientSession(ra, wa) as a, ClientSession(rb, wb) as b:
            await a.initialize()
            await b.initialize()
            expect(len((await b.list_tools()).tools) >= 15, "tools through the pass-through")

            p = structured(await a.call_tool("plan_changes", {"config": DEV}), "dev plan")
            done = structured(
                await a.call_tool("apply_plan", {"plan_id": p["plan_id"]}, progress_callback=on_progress),
                "dev apply",
            )
            expect(done["status"] == "succeeded", f"dev applies: {done}")
            expect(len(progress) >= 2, f"progress notifications pass through: {progress}")

            gp = structured(await a.call_tool("plan_changes", {"config": PROD}), "prod plan")
            gated = structured(await a.call_tool("apply_plan", {"plan_id": gp["plan_id"]}), "prod apply")
            expect(gated["status"] == "needs_approval", f"prod stops at the gate: {gated}")
            request = gated["approval_request"]["id"]

            # The other assistant is the same person's agent, whatever its $USER said.
            c = structured(await b.call_tool("check_policy", {"plan_id": gp["plan_id"]}), "policy")
            expect(c["principal"] == f"agent:mcp@{ME}", f"the kernel's account: {c}")

            # While both stay connected, the CLI reaches the same server.
            listed = cli("approvals", "list")
            expect(listed.returncode == 0, f"approvals list over the socket: {listed.stderr}")
            expect(request in listed.stdout, f"the request is listed: {listed.stdout}")
            # USER=bob does not make anyone bob: this is the requester approving their own.
            own = cli("approvals", "approve", request, "--comment", "ok", user="bob")
            expect(own.returncode == 4, f"a USER=bob approval is the requester's own: {own.returncode} {own.stderr}")
            expect("no-self-approval" in own.stderr, f"named: {own.stderr}")

            # Alone on a laptop: the assistant's dev destroy waits for one approval, which the
            # person gives out of band at the CLI (the kernel says who), never in the chat.
            dp = structured(await a.call_tool("plan_changes", {"config": DEV, "destroy": True}), "destroy plan")
            expect(dp["summary"]["delete"] == 2, f"2 deletes: {dp['summary']}")
            waiting = structured(await a.call_tool("apply_plan", {"plan_id": dp["plan_id"]}), "destroy")
            expect(waiting["status"] == "needs_approval", f"the assistant's destroy waits: {waiting}")
            mine = waiting["approval_request"]["id"]
            ok = cli("approvals", "approve", mine, "--comment", "tear it down", user="nobody-in-particular")
            expect(ok.returncode == 0, f"the person approves their assistant's request: {ok.stderr}")
            gone = structured(await a.call_tool("apply_plan", {"plan_id": dp["plan_id"]}), "approved destroy")
            expect(gone["status"] == "succeeded", f"the destroy runs: {gone}")
            state = structured(await b.call_tool("get_state", {"workspace": "locallab"}), "state")
            expect(not state["resources"], f"nothing left: {state}")

            # And both sessions still work afterwards.
            w = structured(await a.call_tool("list_workflows", {}), "list_workflows")
            expect(done["workflow"] in str(w), f"the dev workflow is listed: {w}")
            structured(await b.call_tool("get_approval", {"approval_id": request}), "get_approval")
    print("local server flow: ok")


asyncio.run(main())
