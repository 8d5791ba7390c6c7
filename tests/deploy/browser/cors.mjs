// A page on one origin POSTs to an API on another with an Authorization header, in headless
// Chromium: node cors.mjs PAGE_URL API_URL
//
// Prints one JSON line: {"ok": true, "status", "body"} when the browser let the page read the
// answer, {"ok": false, "error"} when CORS stopped it. Used by tests/middleware/test_cors.py.
import { chromium } from "playwright-core";

const [pageUrl, apiUrl] = process.argv.slice(2);
if (!pageUrl || !apiUrl) {
  console.error("usage: node cors.mjs PAGE_URL API_URL");
  process.exit(2);
}
const TIMEOUT = 30_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: TIMEOUT,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(pageUrl);
  const result = await page.evaluate(async (url) => {
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { Authorization: "Bearer s3cret", "Content-Type": "application/json" },
        body: "{}",
      });
      return { ok: true, status: response.status, body: await response.json() };
    } catch (error) {
      return { ok: false, error: String(error) };
    }
  }, apiUrl);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
