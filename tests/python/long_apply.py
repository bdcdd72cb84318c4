"""A one-minute apply followed to its end by a client whose requests give up after 10 s.

    python long_apply.py BINARY WORKDIR

The official Python SDK (pip package `mcp`) over stdio, with `read_timeout_seconds=10`. The sim
cloud answers each call after 20 s (`PROVISIONING_SIM_LATENCY_MS`), and the config's three steps
depend on each other: about 60 s in all. `apply_plan` must answer within the timeout with the
workflow id (`running`); `get_workflow` follows it to `succeeded`; every step ran once. Prints
one JSON line with what it saw; exits non-zero with a message on the first failed expectation.
"""

import asyncio
import json
import os
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BINARY, WORK = sys.argv[1], sys.argv[2]
CONFIG = """{
  workspace = { name = "slow", environment = "dev" },
  servers = [{
    name = "s1", provider = "sim", plan = "small", zone = "sim-1",
    taskservs = [{ name = "redis" }, { name = "nginx", depends_on = ["s1/redis"] }],
  }],
}"""


def expect(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def env():
    e = {k: v for k, v in os.environ.items() if k != "PROVISIONING_CONFIG"}
    e.update(
        PROVISIONING_PATHS_DATA_DIR=os.path.join(WORK, "data"),
        PROVISIONING_CONFIG=os.path.join(WORK, "config.toml"),
        PROVISIONING_PATHS_MODELS_DIR=os.path.join(WORK, "no-models"),
        XDG_CONFIG_HOME="/nonexistent/provisioning-tests",
        PROVISIONING_SIM_LATENCY_MS="20000",
    )
    return e


def structured(result, what):
    expect(not result.is_error, f"{what} failed: {result.content}")
    return result.structured_content


async def main():
    params = StdioServerParameters(command=BINARY, args=["serve", "--standalone"], env=env())
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=10) as s:
            await s.initialize()
            plan = structured(await s.call_tool("plan_changes", {"config": CONFIG}), "plan_changes")
            started = time.monotonic()
            # Raises (the SDK's read timeout) if the server holds the request past 10 s.
            first = structured(await s.call_tool("apply_plan", {"plan_id": plan["plan_id"]}), "apply_plan")
            answered = time.monotonic() - started
            expect(first["status"] == "running", f"a long apply answers running: {first}")
            workflow = first["workflow"]
            expect(workflow and workflow in first["message"], f"the answer names the workflow: {first}")
            polls = 0
            while True:
                await asyncio.sleep(5)
                polls += 1
                view = structured(await s.call_tool("get_workflow", {"workflow_id": workflow}), "get_workflow")
                status = view["workflow"]["status"]
                if status not in ("running", "pending"):
                    break
                expect(time.monotonic() - started < 240, f"still {status} after 4 minutes: {view}")
            took = time.monotonic() - started
            expect(status == "succeeded", f"the workflow succeeded: {view['workflow']}")
            attempts = [step["attempts"] for step in view["steps"]]
            state = structured(await s.call_tool("get_state", {"workspace": "slow"}), "get_state")
            print(
                json.dumps(
                    {
                        "answered_s": round(answered, 1),
                        "took_s": round(took, 1),
                        "polls": polls,
                        "attempts": attempts,
                        "resources": len(state["resources"]),
                    }
                )
            )


asyncio.run(main())
