// The Control Center in a real browser (Debian's chromium through playwright-core): an approver
// signs in with a token, sees a pending prod plan requested by someone else (diff, gates,
// requester), approves it with a comment; the requester applies; the page follows the workflow
// live until it reaches `succeeded`. Saves a screenshot.
//
//   BASE_URL=http://127.0.0.1:PORT APPROVER_TOKEN=... REQUESTER_TOKEN=... REQUEST_ID=apr-...
//   PLAN_ID=plan-... SCREENSHOT=/path/shot.png node tests/browser/approve.cjs
"use strict";
const { chromium } = require("playwright-core");

const env = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`missing ${k}`); process.exit(2); }
  return v;
};
const BASE = env("BASE_URL"), APPROVER = env("APPROVER_TOKEN"), REQUESTER = env("REQUESTER_TOKEN");
const REQUEST = env("REQUEST_ID"), PLAN = env("PLAN_ID"), SHOT = env("SCREENSHOT");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

function expect(cond, what) { if (!cond) throw new Error("expectation failed: " + what); }

(async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  try {
    await page.goto(BASE + "/");
    // A wrong token is refused on the page.
    await page.fill("#token", "not-a-token");
    await page.click("#signin-form button");
    await page.waitForSelector("#signin-error:has-text('Sign-in failed')");

    await page.fill("#token", APPROVER);
    await page.click("#signin-form button");
    await page.waitForSelector("#who:has-text('signed in as user:bob')");
    const card = page.locator(`.approval[data-id="${REQUEST}"]`);
    await card.waitFor({ timeout: 15000 });
    const requester = await card.locator(".requester").innerText();
    expect(requester.includes("alice"), `requested by alice: ${requester}`);
    const diff = await card.locator(".diff").innerText();
    expect(diff.includes("w1"), `the diff shows the server: ${diff}`);
    const text = await card.innerText();
    expect(/Gated by/.test(text) && /prod/.test(text), `gates shown: ${text}`);

    await card.locator(".comment").fill("looks right; approved from the browser test");
    await card.locator(".approve").click();
    await card.locator(".result:has-text('can now be applied once')").waitFor({ timeout: 10000 });

    // The requester applies the approved plan (as they would from their assistant or the CLI).
    const res = await fetch(`${BASE}/api/v1/plans/${PLAN}/apply`, {
      method: "POST", headers: { "Authorization": "Bearer " + REQUESTER },
    });
    const body = await res.json();
    expect(res.status === 202, `apply accepted: ${res.status} ${JSON.stringify(body)}`);
    const wf = body.workflow;

    await page.click("#tabs button[data-tab='workflows']");
    await page.click(`a[data-wf="${wf}"]`);
    await page.waitForSelector("#wf-status:has-text('succeeded')", { timeout: 30000 });
    const nodes = await page.locator(".dag .node").count();
    expect(nodes >= 1, `the DAG shows the steps (${nodes})`);
    // The status comes from the workflow record, the log from the event stream, which may
    // arrive a moment later: wait for the stream's last event.
    await page.waitForSelector("#wf-log:has-text('workflow_finished')", { timeout: 15000 });

    await page.click("#tabs button[data-tab='audit']");
    await page.click("#verify");
    await page.waitForSelector("#verify-result:has-text('chain intact')", { timeout: 10000 });

    await page.click("#tabs button[data-tab='workflows']");
    await page.click(`a[data-wf="${wf}"]`);
    await page.waitForSelector("#wf-status:has-text('succeeded')", { timeout: 30000 });
    await page.waitForSelector("#wf-log:has-text('workflow_finished')", { timeout: 15000 });
    await page.screenshot({ path: SHOT, fullPage: true });
    expect(consoleErrors.length === 0, `no page errors: ${consoleErrors.join("; ")}`);
    console.log(`browser flow: ok (workflow ${wf}, ${nodes} steps, screenshot ${SHOT})`);
  } catch (e) {
    await page.screenshot({ path: SHOT.replace(/\.png$/, "-failure.png"), fullPage: true }).catch(() => {});
    console.error(e.stack || String(e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
