// The demo hub's page through a network outage: node demo_resume.mjs BASE_URL ROOM COUNT SHOT_DIR
//
// Joins ROOM as "carol", prints {"event": "ready"} once connected, then waits for the test to
// write "finish" on stdin (it cuts the network meanwhile and posts COUNT messages). Then it
// waits until the page shows COUNT messages and a resumed join, and prints {"event": "done",
// ...} with what the page shows. Any failure exits non-zero.
//
// playwright-core drives the system's Chromium ($CHROMIUM); it never downloads a browser.
import { chromium } from "playwright-core";
import path from "node:path";

const [baseUrl, room, countText, shotDir] = process.argv.slice(2);
const count = Number(countText);
if (!baseUrl || !room || !(count > 0) || !shotDir) {
  console.error("usage: node demo_resume.mjs BASE_URL ROOM COUNT SHOT_DIR");
  process.exit(2);
}
const TIMEOUT = 60_000;
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const finished = new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => { text += chunk; if (text.includes("finish")) resolve(); });
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 30_000,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const pageErrors = [];
let page;
let timer;
try {
  page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (err) => pageErrors.push(err.message));
  await page.goto(baseUrl + "/");
  await page.fill("#room", room);
  await page.fill("#name", "carol");
  await page.click("#join");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Connected"
    && document.querySelector("#worker").textContent.startsWith("pid "));
  say({ event: "ready" });
  await Promise.race([finished, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("no finish from the test")), 3 * TIMEOUT);
  })]);
  await page.waitForFunction((n) => document.querySelectorAll("#messages li.message").length >= n
    && document.querySelector("#recovered").textContent !== "0"
    && document.querySelector("#status").textContent === "Connected", count);
  const shows = await page.evaluate(() => ({
    texts: [...document.querySelectorAll("#messages li.message .text")].map((el) => el.textContent),
    system: [...document.querySelectorAll("#messages li.system")].map((el) => el.textContent),
    status: document.querySelector("#status").textContent,
    reconnects: document.querySelector("#reconnects").textContent,
    recovered: document.querySelector("#recovered").textContent,
    resets: document.querySelector("#resets").textContent,
    worker: document.querySelector("#worker").textContent,
  }));
  const shot = path.join(shotDir, "demo-hub-resumed.png");
  await page.screenshot({ path: shot, fullPage: true });
  say({ event: "done", ...shows, pageErrors, screenshot: shot });
} catch (error) {
  console.error(`browser check failed: ${error.stack || error}`);
  if (pageErrors.length) console.error("page errors:\n" + pageErrors.join("\n"));
  if (page) {
    try { await page.screenshot({ path: path.join(shotDir, "demo-hub-resumed-failure.png"), fullPage: true }); } catch {}
  }
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  await browser.close();
  process.stdin.destroy();
}
