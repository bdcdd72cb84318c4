"""A gated apply approved through the link a 2026-07-28 client is given (URL-mode elicitation).

    NODE=... NODE_PATH=... python approval_link.py BINARY WORKDIR

A team server (`serve --http`) with two people: olga (operator) asks her assistant to apply a
prod plan; bea (approver) approves. The official Python SDK 2.x `Client` negotiates 2026-07-28
and declares URL-mode elicitation (it has an elicitation callback). `apply_plan` answers with an
input request (the multi-round-trip pattern) carrying the Control Center link of the approval
request and a sealed `requestState`. The callback is the user: bea opens the link in a real
browser, signs in with her own token and approves (tests/browser/link_approve.cjs); the callback
answers `accept`, the SDK retries the call with the state, and the same `apply_plan` applies.

Then the rounds driven by hand: a state altered, replayed, bound to another plan, or sent without
its input request is refused; a declined link answers `needs_approval` (never a second input
request). Prints one JSON line with what it saw; exits non-zero on the first failed expectation.
"""

import hashlib
import json
import os
import subprocess
import sys

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

BINARY, WORK = sys.argv[1], sys.argv[2]
DATA = os.path.join(WORK, "data")
CONFIG = os.path.join(WORK, "config.toml")
OLGA = "py-link-token-for-olga-0123456789"
BEA = "py-link-token-for-bea-0123456789"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def prod(name):
    return (
        f'{{ workspace = {{ name = "{name}", environment = "prod" }}, '
        'servers = [{ name = "w1", provider = "sim", plan = "small", zone = "sim-1" }] }'
    )


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
    )
    return e


def start_http():
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


async def main():
    seen = {"asked": []}
    proc, url = start_http()
    seen["base"] = url.removesuffix("/mcp")

    async def person_follows_the_link(ctx, params):
        # The user, shown the link by their client: a person (bea) opens it and approves there.
        seen["asked"].append({"mode": params.mode, "url": params.url, "message": params.message})
        shot = os.path.join(WORK, "link-approve.png")
        out = await anyio.run_process(
            [os.environ["NODE"], os.path.join(ROOT, "tests/browser/link_approve.cjs")],
            env=dict(os.environ, LINK=params.url, APPROVER_TOKEN=BEA, APPROVER="bea", SCREENSHOT=shot),
            check=False,
        )
        seen["browser"] = out.stdout.decode().strip() or out.stderr.decode()[-2000:]
        expect(out.returncode == 0, f"bea approves in the browser: {seen['browser']}")
        return types.ElicitResult(action="accept")

    try:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {OLGA}"}, timeout=60) as http:
            async with Client(
                streamable_http_client(url, http_client=http),
                elicitation_callback=person_follows_the_link,
            ) as c:
                seen["protocol"] = str(c.protocol_version)
                plan = structured(await c.call_tool("plan_changes", {"config": prod("linkshop")}), "plan")
                done = structured(await c.call_tool("apply_plan", {"plan_id": plan["plan_id"]}), "apply")
                seen["applied"] = done["status"]
                seen["workflow"] = done.get("workflow")
                expect(len(seen["asked"]) == 1, f"asked once: {seen['asked']}")
                request = seen["asked"][0]["url"].rpartition("#approval/")[2]
                seen["approval"] = structured(await c.call_tool("get_approval", {"approval_id": request}), "approval")

                # The rounds by hand, on a second prod plan.
                other = structured(await c.call_tool("plan_changes", {"config": prod("linkshop2")}), "plan 2")
                third = structured(await c.call_tool("plan_changes", {"config": prod("linkshop3")}), "plan 3")
                s = c.session
                first = await s.call_tool("apply_plan", {"plan_id": other["plan_id"]}, allow_input_required=True)
                expect(isinstance(first, types.InputRequiredResult), f"an input request: {first}")
                state = first.request_state
                ask = first.input_requests["approval"]
                seen["input_request"] = {"method": ask.method, "mode": ask.params.mode, "url": ask.params.url}

                async def refused(**kw):
                    try:
                        r = await s.call_tool(allow_input_required=True, **kw)
                        return f"answered: {r}"
                    except MCPError as e:
                        return str(e)

                altered = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
                declined = {"approval": {"action": "decline"}}
                seen["altered"] = await refused(
                    name="apply_plan", arguments={"plan_id": other["plan_id"]},
                    input_responses=declined, request_state=altered,
                )
                seen["other_plan"] = await refused(
                    name="apply_plan", arguments={"plan_id": third["plan_id"]},
                    input_responses=declined, request_state=state,
                )
                seen["other_tool"] = await refused(
                    name="get_state", arguments={"workspace": "linkshop"},
                    input_responses=declined, request_state=state,
                )
                seen["responses_alone"] = await refused(
                    name="apply_plan", arguments={"plan_id": other["plan_id"]}, input_responses=declined,
                )
                again = await s.call_tool(
                    "apply_plan", {"plan_id": other["plan_id"]},
                    input_responses=declined, request_state=state, allow_input_required=True,
                )
                expect(isinstance(again, types.CallToolResult), f"a declined link ends the rounds: {again}")
                seen["declined"] = again.structured_content["status"]
                seen["replayed"] = await refused(
                    name="apply_plan", arguments={"plan_id": other["plan_id"]},
                    input_responses=declined, request_state=state,
                )

                # Another person's client cannot redeem olga's state, even for the same plan.
                third_ask = await s.call_tool("apply_plan", {"plan_id": third["plan_id"]}, allow_input_required=True)
                expect(isinstance(third_ask, types.InputRequiredResult), f"an input request: {third_ask}")
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {BEA}"}, timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http)) as c:
                try:
                    r = await c.session.call_tool(
                        "apply_plan", {"plan_id": third["plan_id"]},
                        input_responses={"approval": {"action": "accept"}},
                        request_state=third_ask.request_state, allow_input_required=True,
                    )
                    seen["other_caller"] = f"answered: {r}"
                except MCPError as e:
                    seen["other_caller"] = str(e)
    finally:
        proc.kill()
        proc.wait()
    print(json.dumps(seen))


if __name__ == "__main__":
    with open(CONFIG, "w") as f:
        f.write(
            f'[users.bea]\nroles = ["approver"]\ntoken_sha256 = "{hashlib.sha256(BEA.encode()).hexdigest()}"\n\n'
            f'[users.olga]\nroles = ["operator"]\ntoken_sha256 = "{hashlib.sha256(OLGA.encode()).hexdigest()}"\n'
        )
    anyio.run(main)
