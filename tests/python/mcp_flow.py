"""The MCP flow driven by the official Python SDK (pip package `mcp`), a client we did not write.

    python mcp_flow.py BINARY WORKDIR

Over stdio: list tools, draft -> validate -> plan -> apply a sim config with progress
notifications, read the workflow log resource; a prod config stops at the approval gate, the
agent's own person cannot approve it, a second person (bob, with his token on a team server)
approves it through the CLI, and the same plan then applies. Over streamable HTTP
with a bearer token: list tools and check policy as the token's principal. Exits non-zero with a
message on the first failed expectation.
"""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

BINARY, WORK = sys.argv[1], sys.argv[2]
DATA = os.path.join(WORK, "data")
CONFIG = os.path.join(WORK, "config.toml")
TOKEN = "py-sdk-token-for-carol-0123456789"
BOB_TOKEN = "py-sdk-token-for-bob-0123456789"
INTENT = "two small sim servers with redis in sim-2 for the dev workspace pylab"
PROD = '{ workspace = { name = "pyshop", environment = "prod" }, servers = [{ name = "w1", provider = "sim", plan = "small", zone = "sim-1" }] }'


def expect(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def env():
    e = {k: v for k, v in os.environ.items() if k != "PROVISIONING_CONFIG"}
    e.update(
        PROVISIONING_PATHS_DATA_DIR=DATA,
        PROVISIONING_CONFIG=CONFIG,
        PROVISIONING_PATHS_MODELS_DIR=os.path.join(WORK, "no-models"),
        XDG_CONFIG_HOME="/nonexistent/provisioning-tests",
        # Who calls is the account the kernel reports, or a token: never these.
        USER="bob",
        LOGNAME="bob",
    )
    return e


def start_http():
    """`serve --http` on the same installation; returns the process and its base URL."""
    proc = subprocess.Popen(
        [BINARY, "serve", "--http", "127.0.0.1:0"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline().strip()
    expect(line.startswith("listening on "), f"address line: {line!r}")
    return proc, line.removeprefix("listening on ")


def structured(result, what):
    expect(not result.is_error, f"{what} failed: {result.content}")
    return result.structured_content


def server():
    return stdio_client(StdioServerParameters(command=BINARY, args=["serve", "--standalone"], env=env()))


async def stdio_flow():
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async with server() as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
            for n in ["draft_config", "validate_config", "plan_changes", "apply_plan", "search_docs"]:
                expect(n in names, f"tool {n} listed: {sorted(names)}")

            d = structured(await s.call_tool("draft_config", {"intent": INTENT}), "draft_config")
            expect(d["valid"] and d["drafter"] == "built-in", f"a valid built-in draft: {d}")
            servers = d["config"]["servers"]
            expect(len(servers) == 2 and all(x["zone"] == "sim-2" for x in servers), f"two servers in sim-2: {servers}")
            v = structured(await s.call_tool("validate_config", {"config": d["nickel"]}), "validate")
            expect(v["valid"], f"validates: {v}")
            p = structured(await s.call_tool("plan_changes", {"config": d["nickel"]}), "plan")
            expect(p["summary"]["create"] == 4, f"4 creates: {p['summary']}")
            a = structured(
                await s.call_tool("apply_plan", {"plan_id": p["plan_id"]}, progress_callback=on_progress),
                "apply",
            )
            expect(a["status"] == "succeeded", f"applied: {a}")
            expect(len(progress) >= 4, f"progress notifications: {progress}")
            log = await s.read_resource(f"provisioning://workflows/{a['workflow']}/log")
            text = log.contents[0].text
            expect("StepSucceeded" in text, f"workflow log resource: {text[:300]}")

            bad = await s.call_tool("apply_plan", {"plan_id": "plan-000000000000"})
            expect(bad.is_error and "no plan with id" in json.dumps([c.model_dump() for c in bad.content]), f"unknown plan id: {bad}")

            gp = structured(await s.call_tool("plan_changes", {"config": PROD}), "prod plan")
            gated = structured(await s.call_tool("apply_plan", {"plan_id": gp["plan_id"]}), "prod apply")
            expect(gated["status"] == "needs_approval", f"prod stops at the gate: {gated}")
            request = gated["approval_request"]["id"]

    # The server has exited (stdin closed). The agent's person (this account, whatever USER
    # says) cannot approve their own agent's prod request; bob, a second person, can.
    for _ in range(40):
        if subprocess.run([BINARY, "approvals", "list"], env=env(), capture_output=True).returncode == 0:
            break
        time.sleep(0.25)
    own = subprocess.run([BINARY, "approvals", "approve", request], env=env(), capture_output=True, text=True)
    expect(own.returncode == 4, f"the requester cannot approve: {own.returncode} {own.stderr}")
    team, url = start_http()
    try:
        as_bob = dict(env(), PROVISIONING_SERVER=url, PROVISIONING_TOKEN=BOB_TOKEN)
        ok = subprocess.run(
            [BINARY, "approvals", "approve", request, "--comment", "ok"], env=as_bob, capture_output=True, text=True
        )
        expect(ok.returncode == 0, f"bob approves: {ok.stderr}")
    finally:
        team.kill()
        team.wait()

    async with server() as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            done = structured(await s.call_tool("apply_plan", {"plan_id": gp["plan_id"]}), "approved apply")
            expect(done["status"] == "succeeded", f"approved plan applies: {done}")


async def http_flow():
    proc, url = start_http()
    try:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    expect(len((await s.list_tools()).tools) >= 15, "tools over HTTP")
                    p = structured(await s.call_tool("plan_changes", {"config": PROD}), "http plan")
                    c = structured(await s.call_tool("check_policy", {"plan_id": p["plan_id"]}), "http policy")
                    expect(c["principal"] == "user:carol", f"the token's principal: {c}")
    finally:
        proc.kill()
        proc.wait()


def main():
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    bob = hashlib.sha256(BOB_TOKEN.encode()).hexdigest()
    with open(CONFIG, "w") as f:
        f.write(
            f'[users.bob]\nroles = ["approver"]\ntoken_sha256 = "{bob}"\n\n'
            f'[users.carol]\nroles = ["operator"]\ntoken_sha256 = "{digest}"\n'
        )
    asyncio.run(stdio_flow())
    asyncio.run(http_flow())
    print("python sdk flow: ok")


if __name__ == "__main__":
    main()
