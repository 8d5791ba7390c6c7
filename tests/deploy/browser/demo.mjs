// Two people use the demo hub in a real (headless) Chromium: node demo.mjs BASE_URL ROOM SCREENSHOT_DIR
//
// Opens two pages, joins ROOM as "alice" and "bob", waits for both to show 2 members, sends a
// message each way, saves a screenshot of each page, and prints one JSON line with what the
// pages showed. Any failure exits non-zero with the reason on stderr.
//
// playwright-core drives the system's Chromium (Debian's /usr/bin/chromium, or $CHROMIUM); it
// never downloads a browser. launch() gives the browser a fresh temporary profile.
import { chromium } from "playwright-core";
import path from "node:path";

const [baseUrl, room, shotDir] = process.argv.slice(2);
if (!baseUrl || !room || !shotDir) {
  console.error("usage: node demo.mjs BASE_URL ROOM SCREENSHOT_DIR");
  process.exit(2);
}
const TIMEOUT = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: TIMEOUT,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

const consoleErrors = [];
const pages = [];

async function join(name) {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  pages.push([name, page]);
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(`${name}: ${msg.text()}`); });
  page.on("pageerror", (err) => consoleErrors.push(`${name}: ${err.message}`));
  await page.goto(baseUrl + "/");
  await page.fill("#room", room);
  await page.fill("#name", name);
  await page.click("#join");
  // The hello names the server process holding this page's socket.
  await page.waitForFunction(() => document.querySelector("#worker").textContent.startsWith("pid "));
  return page;
}

async function say(page, text) {
  await page.waitForSelector("#text:not([disabled])");
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

async function waitForMessage(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li.message .text")].some((el) => el.textContent === t),
    text,
  );
  return page.evaluate(
    (t) => [...document.querySelectorAll("#messages li.message")]
      .find((li) => li.querySelector(".text").textContent === t)
      .querySelector(".meta").textContent,
    text,
  );
}

try {
  const alice = await join("alice");
  const bob = await join("bob");
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelector("#members").textContent === "2");
  }
  await say(alice, "hello from alice");
  const bobSawMeta = await waitForMessage(bob, "hello from alice");
  await say(bob, "hi alice, bob here");
  const aliceSawMeta = await waitForMessage(alice, "hi alice, bob here");
  await waitForMessage(alice, "hello from alice");  // a sender receives its own broadcast too

  const shows = async (page) => ({
    worker: await page.textContent("#worker"),
    members: await page.textContent("#members"),
    status: await page.textContent("#status"),
  });
  const result = {
    alice: { ...(await shows(alice)), sawMeta: aliceSawMeta },
    bob: { ...(await shows(bob)), sawMeta: bobSawMeta },
    screenshots: [],
    consoleErrors,
  };
  for (const [name, page] of [["alice", alice], ["bob", bob]]) {
    const file = path.join(shotDir, `demo-hub-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    result.screenshots.push(file);
  }
  console.log(JSON.stringify(result));
} catch (error) {
  console.error(`browser check failed: ${error.stack || error}`);
  if (consoleErrors.length) console.error("page console errors:\n" + consoleErrors.join("\n"));
  // What the pages showed when it failed, for the person reading the test report.
  for (const [name, page] of pages) {
    const file = path.join(shotDir, `demo-hub-${name}-failure.png`);
    try { await page.screenshot({ path: file, fullPage: true }); console.error(`screenshot: ${file}`); } catch {}
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
