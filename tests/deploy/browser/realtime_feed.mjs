// A page of tests/apps/realtime_feed.py in headless Chromium: node realtime_feed.mjs BASE_URL ROOM TOTAL SHOT_DIR
//
// Loads BASE_URL/?room=ROOM and prints one JSON line per event of the page's realtime client
// as it happens ({"event": "state" | "joined" | "reset" | "left" | "ready", ...}), so that the
// test can time its network outages against them. Once the test writes "finish" on stdin and
// the page holds TOTAL messages (and a little longer, so that a late duplicate would be seen),
// it prints {"event": "done", ...} with everything the page received, and exits. Any failure
// exits non-zero.
//
// playwright-core drives the system's Chromium ($CHROMIUM); it never downloads a browser.
import { chromium } from "playwright-core";
import path from "node:path";

const [baseUrl, room, totalText, shotDir] = process.argv.slice(2);
const total = Number(totalText);
if (!baseUrl || !room || !(total > 0) || !shotDir) {
  console.error("usage: node realtime_feed.mjs BASE_URL ROOM TOTAL SHOT_DIR");
  process.exit(2);
}
// The whole run (30 s of publishing, the outages, and reconnect backoff up to 20 s) fits in it.
const RUN_TIMEOUT = Number(process.env.FEED_RUN_TIMEOUT_MS || 180_000);
// After the last expected message: one more wait for anything that should not come.
const QUIET_AFTER_MS = 3_000;

// The test says "finish" when its publisher and its outages are done.
const finished = new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => { text += chunk; if (text.includes("finish")) resolve(); });
});
let timer;
const runTimeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Error(`no "finish" within ${RUN_TIMEOUT} ms`)), RUN_TIMEOUT);
});

const say = (event) => process.stdout.write(JSON.stringify({ ...event, at: Date.now() }) + "\n");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 30_000,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const consoleErrors = [];
let page;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(30_000);
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => consoleErrors.push(err.message));
  await page.exposeFunction("report", (text) => say(JSON.parse(text)));
  await page.goto(`${baseUrl}/?room=${encodeURIComponent(room)}`);
  await page.waitForFunction(() => window.feed && window.feed.joined);
  await Promise.race([finished, runTimeout]);
  clearTimeout(timer);
  await page.waitForFunction((n) => window.feed.received.length >= n, total, { timeout: RUN_TIMEOUT, polling: 200 });
  await page.waitForTimeout(QUIET_AFTER_MS);
  const feed = await page.evaluate(() => ({
    received: window.feed.received,
    offsets: window.feed.offsets,
    epochs: [...window.feed.epochs],
    resets: window.feed.resets,
    joins: window.feed.joins,
    left: window.feed.left,
    reconnects: window.rt.reconnects,
    state: window.rt.state,
  }));
  const shot = path.join(shotDir, "realtime-feed.png");
  await page.screenshot({ path: shot });
  say({ event: "done", ...feed, consoleErrors, screenshot: shot });
} catch (error) {
  console.error(`browser run failed: ${error.stack || error}`);
  if (consoleErrors.length) console.error("page console errors:\n" + consoleErrors.join("\n"));
  if (page) {
    try {
      const count = await page.evaluate(() => window.feed && window.feed.received.length);
      console.error(`the page held ${count} messages`);
      await page.screenshot({ path: path.join(shotDir, "realtime-feed-failure.png") });
    } catch {}
  }
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  await browser.close();
  process.stdin.destroy();
}
