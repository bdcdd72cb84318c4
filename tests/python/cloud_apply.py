"""Plans and applies one config through MCP with the official Python SDK (pip package `mcp`), a
client we did not write, over stdio: the cloud trials' "from an MCP client".

    python cloud_apply.py BINARY WORKDIR CONFIG.ncl

The server gets this process's environment (the cloud's credentials among it) with its data
directory and config file in WORKDIR. An apply that outlasts the call answers `running` with its
workflow id (the product's contract for long work); this client then follows it with
`get_workflow`, as the answer tells a model to, until it leaves `running` (at most 10 minutes).
Prints `{"status": <final workflow status>, "answered": <apply_plan's result>, "steps": [...]}`
as one JSON line; exits non-zero with a message when a call fails.
"""

import asyncio
import json
import os
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BINARY, WORK, CONFIG = sys.argv[1], sys.argv[2], sys.argv[3]


def fail(what):
    print(f"FAILED: {what}", file=sys.stderr)
    sys.exit(1)


def env():
    e = dict(os.environ)
    e.update(
        PROVISIONING_PATHS_DATA_DIR=os.path.join(WORK, "data"),
        PROVISIONING_CONFIG=os.path.join(WORK, "config.toml"),
        PROVISIONING_PATHS_MODELS_DIR=os.path.join(WORK, "no-models"),
        XDG_CONFIG_HOME="/nonexistent/provisioning-tests",
    )
    return e


def structured(result, what):
    if result.is_error:
        fail(f"{what}: {result.content}")
    return result.structured_content


async def main():
    with open(CONFIG) as f:
        config = f.read()
    params = StdioServerParameters(command=BINARY, args=["serve", "--standalone"], env=env())
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            plan = structured(await s.call_tool("plan_changes", {"config": config}), "plan_changes")
            started = time.monotonic()
            answered = structured(await s.call_tool("apply_plan", {"plan_id": plan["plan_id"]}), "apply_plan")
            status, steps = answered["status"], []
            while status in ("running", "pending"):
                if time.monotonic() - started > 600:
                    fail(f"still {status} after 10 minutes: {answered}")
                await asyncio.sleep(3)
                view = structured(
                    await s.call_tool("get_workflow", {"workflow_id": answered["workflow"]}), "get_workflow"
                )
                status, steps = view["workflow"]["status"], view["steps"]
            print(json.dumps({"status": status, "answered": answered, "steps": steps}))


asyncio.run(main())
