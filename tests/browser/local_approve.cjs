// The local server's Control Center in a real browser (Debian's chromium through
// playwright-core): no token; the page is signed in as this machine's account (the kernel says
// who opened the loopback connection), shows the assistant's pending request, and the person
// approves it out of band with a comment. Saves a screenshot.
//
// With LINK (the approval link the assistant was given), the page is opened there: the request
// must be the one marked and scrolled to.
//
//   BASE_URL=http://127.0.0.1:PORT REQUEST_ID=apr-... ACCOUNT=name SCREENSHOT=/path/shot.png
//   [LINK=http://127.0.0.1:PORT/#approval/apr-...] node tests/browser/local_approve.cjs
"use strict";
const { chromium } = require("playwright-core");

const env = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`missing ${k}`); process.exit(2); }
  return v;
};
const BASE = env("BASE_URL"), REQUEST = env("REQUEST_ID"), ACCOUNT = env("ACCOUNT"), SHOT = env("SCREENSHOT");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

function expect(cond, what) { if (!cond) throw new Error("expectation failed: " + what); }

(async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  try {
    const LINK = process.env.LINK;
    if (LINK) expect(LINK === `${BASE}/#approval/${REQUEST}`, `the link leads to this request: ${LINK}`);
    await page.goto(LINK || BASE + "/");
    await page.waitForSelector(`#who:has-text('signed in as user:${ACCOUNT}')`, { timeout: 15000 });
    const who = await page.locator("#who").innerText();
    expect(/this machine's account/.test(who), `no token asked: ${who}`);
    expect(await page.locator("#signin").isHidden(), "the token form is not shown");

    const card = page.locator(`.approval[data-id="${REQUEST}"]`);
    await card.waitFor({ timeout: 15000 });
    if (LINK) {
      await page.locator(`.approval.linked[data-id="${REQUEST}"]`).waitFor({ timeout: 5000 });
      expect(await page.locator(".approval.linked").count() === 1, "only the linked request is marked");
    }
    const text = await card.innerText();
    expect(/Blast radius\s+deletes server\//.test(text), `the blast radius in words: ${text}`);
    expect(/USD \d+\.\d\d → 0\.00 \(-\d+\.\d\d\)/.test(text), `the cost per currency: ${text}`);
    const requester = await card.locator(".requester").innerText();
    expect(requester.includes(ACCOUNT), `requested by this account's assistant: ${requester}`);
    await card.locator(".comment").fill("my assistant's dev destroy, approved out of band");
    await card.locator(".approve").click();
    await card.locator(".result:has-text('can now be applied once')").waitFor({ timeout: 10000 });
    await page.screenshot({ path: SHOT, fullPage: true });
    expect(consoleErrors.length === 0, `no page errors: ${consoleErrors.join("; ")}`);
    console.log(`local control center: ok (screenshot ${SHOT})`);
  } catch (e) {
    await page.screenshot({ path: SHOT.replace(/\.png$/, "-failure.png"), fullPage: true }).catch(() => {});
    console.error(e.stack || String(e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
