// The MCP flow driven by the official TypeScript SDK (npm `@modelcontextprotocol/sdk` 1.x), the
// library most MCP clients are built on, a client we did not write.
//
//     node mcp_flow.cjs BINARY WORKDIR           over stdio (`serve --standalone`)
//     node mcp_flow.cjs --http URL TOKEN         over streamable HTTP (`serve --http`)
//
// List the tools (the SDK rejects a tool list whose schemas
// it cannot accept), then call the tools of a whole dev apply and a gated prod apply. The SDK
// checks every structured result against the tool's output schema (Ajv) and throws when one
// does not match. Prints one JSON line with what it saw; exits non-zero on the first failure.
"use strict";
const path = require("node:path");
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const {
  StreamableHTTPClientTransport,
} = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const {
  LoggingMessageNotificationSchema,
  ElicitRequestSchema,
} = require("@modelcontextprotocol/sdk/types.js");
const { execFile } = require("node:child_process");

const [binary, work] = process.argv.slice(2);
const DEV =
  '{ workspace = { name = "tslab", environment = "dev" }, servers = [{ name = "t1", provider = "sim", plan = "small", zone = "sim-1" }] }';
const PROD =
  '{ workspace = { name = "tsshop", environment = "prod" }, servers = [{ name = "w1", provider = "sim", plan = "small", zone = "sim-1" }] }';

function fail(what) {
  console.error(`FAILED: ${what}`);
  process.exit(1);
}

async function main() {
  const env = { ...process.env };
  Object.assign(env, {
    PROVISIONING_PATHS_DATA_DIR: path.join(work, "data"),
    PROVISIONING_CONFIG: path.join(work, "config.toml"),
    PROVISIONING_PATHS_MODELS_DIR: path.join(work, "no-models"),
    XDG_CONFIG_HOME: "/nonexistent/provisioning-tests",
  });
  const transport =
    binary === "--http"
      ? new StreamableHTTPClientTransport(new URL(work), {
          requestInit: { headers: { Authorization: `Bearer ${process.argv[4]}` } },
        })
      : new StdioClientTransport({
          command: binary,
          args: ["serve", "--standalone"],
          env,
          stderr: "ignore",
        });
  // With APPROVER_TOKEN (over HTTP), the client takes URL-mode elicitation: shown the approval
  // link of a gated apply, the user has a second person (APPROVER) open it in a real browser,
  // sign in and approve there (tests/browser/link_approve.cjs); the client then answers accept.
  const approver = process.env.APPROVER_TOKEN;
  const client = new Client(
    { name: "ts-sdk-flow", version: "1.0.0" },
    approver ? { capabilities: { elicitation: { url: {} } } } : undefined,
  );
  const links = [];
  if (approver) {
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      const { mode, url, message, elicitationId } = request.params;
      links.push({ mode, url, message, elicitationId });
      if (mode !== "url") return { action: "decline" };
      const browser = await new Promise((resolve) =>
        execFile(
          process.execPath,
          [path.join(__dirname, "..", "browser", "link_approve.cjs")],
          {
            env: {
              ...process.env,
              LINK: url,
              APPROVER: process.env.APPROVER,
              SCREENSHOT: path.join(process.env.SCREENSHOT_DIR || "/tmp", "ts-link-approve.png"),
            },
          },
          (error, stdout, stderr) => resolve({ ok: !error, out: (stdout + stderr).trim() }),
        ),
      );
      links[links.length - 1].browser = browser;
      return { action: browser.ok ? "accept" : "cancel" };
    });
  }
  await client.connect(transport);
  const seen = { server: client.getServerVersion(), checked: [], log: [], links };
  seen.protocol = transport.protocolVersion || null;
  seen.capabilities = Object.keys(client.getServerCapabilities() || {}).sort();
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    seen.log.push({ level: n.params.level, logger: n.params.logger, event: n.params.data.event });
  });
  // Log messages from here on: the dev apply's steps at info and above.
  await client.setLoggingLevel("info");

  const { tools } = await client.listTools();
  seen.tools = tools.map((t) => t.name).sort();
  seen.with_output_schema = tools.filter((t) => t.outputSchema).length;

  // Every call's structured result is checked against its output schema by the SDK.
  const call = async (name, args, options) => {
    const result = await client.callTool({ name, arguments: args }, undefined, options);
    if (result.isError) fail(`${name}: ${JSON.stringify(result.content)}`);
    if (!result.structuredContent) fail(`${name}: no structured content`);
    seen.checked.push(name);
    return result.structuredContent;
  };

  await call("list_catalog", {});
  await call("list_catalog", { provider: "sim" });
  await call("list_catalog", { what: "taskservs" });
  await call("get_schema", {});
  // The built-in drafter (no sampling offered by this client): a config and its questions.
  const drafted = await call("draft_config", {
    intent: "two sim servers with nginx, dev",
    drafter: "built-in",
  });
  if (!drafted.config) fail(`draft_config drafted nothing: ${JSON.stringify(drafted)}`);
  seen.drafted = drafted.valid === true;
  const valid = await call("validate_config", { config: DEV });
  if (!valid.valid) fail(`the dev config is invalid: ${JSON.stringify(valid)}`);
  const invalid = await call("validate_config", { config: '{ workspace = { name = "x" } }' });
  if (invalid.valid) fail("an incomplete config validated");
  const plan = await call("plan_changes", { config: DEV });
  await call("check_policy", { plan_id: plan.plan_id });
  // Progress notifications while the apply runs (the SDK sends a progress token for this).
  const progress = [];
  const applied = await call(
    "apply_plan",
    { plan_id: plan.plan_id },
    { onprogress: (p) => progress.push(p), resetTimeoutOnProgress: true },
  );
  seen.progress = progress.length;
  seen.progress_done = progress.length > 0 && progress[progress.length - 1].progress === progress[progress.length - 1].total;
  if (applied.status !== "succeeded") fail(`dev apply: ${JSON.stringify(applied)}`);
  await call("get_workflow", { workflow_id: applied.workflow });
  await call("list_workflows", {});
  await call("get_state", { workspace: "tslab" });
  await call("detect_drift", { workspace: "tslab" });
  await call("troubleshoot", { workflow_id: applied.workflow });

  // Completions of what exists: the workflow and plan just made, a schema name.
  const complete = async (ref, name, value) =>
    (await client.complete({ ref, argument: { name, value } })).completion;
  const workflows = await complete(
    { type: "ref/resource", uri: "provisioning://workflows/{workflow_id}" },
    "workflow_id",
    "wf-",
  );
  const plans = await complete({ type: "ref/prompt", name: "review_plan" }, "plan_id", "");
  const schemas = await complete(
    { type: "ref/resource", uri: "provisioning://schemas/{name}" },
    "name",
    "con",
  );
  const nothing = await complete({ type: "ref/prompt", name: "provision" }, "intent", "two");
  const zones = await complete({ type: "ref/prompt", name: "provision" }, "zone", "hel");
  seen.completions = {
    workflow: workflows.values.includes(applied.workflow),
    plan: plans.values.includes(plan.plan_id),
    schemas: schemas.values,
    intent: nothing.values,
    zones: zones.values,
  };

  const prod = await call("plan_changes", { config: PROD });
  const asked = await call("request_approval", { plan_id: prod.plan_id });
  const gated = await call("apply_plan", { plan_id: prod.plan_id });
  seen.dev_status = applied.status;
  seen.prod_status = gated.status;
  seen.prod_decision = asked.decision;
  seen.asked_url = asked.approval_url;
  if (approver) {
    // Approved through the link while the call was open: the same call applied.
    if (gated.status !== "succeeded") fail(`prod apply after the link: ${JSON.stringify(gated)}`);
    gated.approval_request = { id: (asked.approval_url || "").split("#approval/")[1] };
  } else if (gated.status !== "needs_approval" || !gated.approval_request) {
    fail(`prod apply was not gated: ${JSON.stringify(gated)}`);
  }
  const request = await call("get_approval", { approval_id: gated.approval_request.id });
  seen.approval_id = gated.approval_request.id;
  seen.approval_url = gated.approval_url;
  seen.approval_message = gated.message;
  seen.approval_status = request.status;
  seen.approved_by = (request.request.approvals || []).map((a) => a.principal);
  // The approval and the workspace complete and read as resources too.
  const approvals = await complete(
    { type: "ref/resource", uri: "provisioning://approvals/{approval_id}" },
    "approval_id",
    "apr-",
  );
  const workspaces = await complete(
    { type: "ref/resource", uri: "provisioning://workspaces/{workspace}" },
    "workspace",
    "tsl",
  );
  seen.completions.approval = approvals.values[0] === gated.approval_request.id;
  seen.completions.workspaces = workspaces.values;
  const read = async (uri) => JSON.parse((await client.readResource({ uri })).contents[0].text);
  const approvalResource = await read(`provisioning://approvals/${gated.approval_request.id}`);
  seen.approval_resource = approvalResource.status;
  const workspace = await read("provisioning://workspaces/tslab");
  seen.workspace_resources = workspace.resources.length;

  // A wrong argument type is refused with a message that names it.
  const wrong = await client
    .callTool({ name: "apply_plan", arguments: { plan_id: 7 } })
    .then((r) => (r.isError ? JSON.stringify(r.content) : "accepted"))
    .catch((e) => String(e.message || e));
  seen.wrong_argument = wrong;

  await client.close();
  console.log(JSON.stringify(seen));
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
