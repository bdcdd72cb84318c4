// A person follows the approval link an assistant's client showed them (URL-mode elicitation),
// in a real browser (Debian's chromium through playwright-core): the Control Center opens at the
// request, they sign in with their own token, the request is the one marked, they approve it
// with a comment. The link approved nothing by itself: the request is pending until they do.
//
//   LINK=http://127.0.0.1:PORT/#approval/apr-... APPROVER_TOKEN=... APPROVER=name
//   SCREENSHOT=/path/shot.png node tests/browser/link_approve.cjs
"use strict";
const { chromium } = require("playwright-core");

const env = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`missing ${k}`); process.exit(2); }
  return v;
};
const LINK = env("LINK"), TOKEN = env("APPROVER_TOKEN"), APPROVER = env("APPROVER"), SHOT = env("SCREENSHOT");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

function expect(cond, what) { if (!cond) throw new Error("expectation failed: " + what); }

(async () => {
  const match = /^(https?:\/\/[^#]+)#approval\/(apr-[0-9a-z]+)$/.exec(LINK);
  expect(match, `the link names a request on a Control Center: ${LINK}`);
  const REQUEST = match[2];
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  try {
    await page.goto(LINK);
    await page.fill("#token", TOKEN);
    await page.click("#signin-form button");
    await page.waitForSelector(`#who:has-text('signed in as user:${APPROVER}')`);
    const card = page.locator(`.approval.linked[data-id="${REQUEST}"]`);
    await card.waitFor({ timeout: 15000 });
    expect(await page.locator(".approval.linked").count() === 1, "only the linked request is marked");
    expect(/Approvals\s+0 of 1/.test(await card.innerText()), "nothing approved yet when the person arrives");
    await card.locator(".comment").fill("approved from the link my colleague's assistant showed");
    await card.locator(".approve").click();
    await card.locator(".result:has-text('can now be applied once')").waitFor({ timeout: 10000 });
    await page.screenshot({ path: SHOT, fullPage: true });
    expect(consoleErrors.length === 0, `no page errors: ${consoleErrors.join("; ")}`);
    console.log(`approved ${REQUEST} through the link (screenshot ${SHOT})`);
  } catch (e) {
    await page.screenshot({ path: SHOT.replace(/\.png$/, "-failure.png"), fullPage: true }).catch(() => {});
    console.error(e.stack || String(e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
