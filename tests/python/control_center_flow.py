"""An assistant (the official Python SDK) stays connected while its person approves in the
Control Center.

    python control_center_flow.py BINARY WORKDIR

The installation's local server is already running. The assistant connects with plain
`provisioning serve` over stdio (a client of the local server), builds a dev stack, and asks to
destroy it: the destroy waits for one approval. It prints `{"request": ID}` on a line of its
own and waits, still connected, for a line on standard input: the test approves in a real
browser meanwhile. Then the same `apply_plan` call runs the destroy. Exits non-zero with a
message on the first failed expectation.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BINARY, WORK = sys.argv[1], sys.argv[2]
DEV = '{ workspace = { name = "cclab", environment = "dev" }, servers = [{ name = "c1", provider = "sim", plan = "small", zone = "sim-1" }] }'


def expect(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def env():
    e = {k: v for k, v in os.environ.items() if k not in ("PROVISIONING_CONFIG", "XDG_RUNTIME_DIR")}
    e.update(
        PROVISIONING_PATHS_DATA_DIR=os.path.join(WORK, "data"),
        PROVISIONING_CONFIG=os.path.join(WORK, "config.toml"),
        PROVISIONING_PATHS_MODELS_DIR=os.path.join(WORK, "no-models"),
    )
    return e


def structured(result, what):
    expect(not result.is_error, f"{what} failed: {result.content}")
    return result.structured_content


async def main():
    params = StdioServerParameters(command=BINARY, args=["serve"], env=env())
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            p = structured(await s.call_tool("plan_changes", {"config": DEV}), "plan")
            a = structured(await s.call_tool("apply_plan", {"plan_id": p["plan_id"]}), "apply")
            expect(a["status"] == "succeeded", f"the dev stack: {a}")
            d = structured(await s.call_tool("plan_changes", {"config": DEV, "destroy": True}), "destroy plan")
            g = structured(await s.call_tool("apply_plan", {"plan_id": d["plan_id"]}), "destroy")
            expect(g["status"] == "needs_approval", f"an assistant's dev destroy waits: {g}")
            link = g.get("approval_url")
            expect(link and link in g["message"], f"the answer gives the person a link: {g}")
            print(json.dumps({"request": g["approval_request"]["id"], "link": link}), flush=True)

            # Still connected while the person decides in the browser.
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            expect(line.strip() == "approved", f"the test's word: {line!r}")
            done = structured(await s.call_tool("apply_plan", {"plan_id": d["plan_id"]}), "approved destroy")
            expect(done["status"] == "succeeded", f"the approved destroy runs: {done}")
            state = structured(await s.call_tool("get_state", {"workspace": "cclab"}), "state")
            expect(state["resources"] == [], f"nothing left: {state}")
    print("control center flow: ok")


if __name__ == "__main__":
    asyncio.run(main())
