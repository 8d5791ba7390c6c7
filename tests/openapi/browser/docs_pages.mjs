// Open an app's /docs, /redoc and /asyncapi in headless Chromium: node docs_pages.mjs BASE_URL
//
// Every request to another origin is aborted and recorded (the pages must need none). On
// /docs it lists the operations Swagger UI shows, then authorizes with a bearer token through
// the Authorize dialog and runs GET /me/optional with "Try it out", to see the token reach the
// app. It prints one JSON line with what it saw. playwright-core comes from the deploy tests'
// install (PLAYWRIGHT_CORE is its index.mjs); it drives the system's Chromium, never a download.
const { chromium } = await import(process.env.PLAYWRIGHT_CORE);

const baseUrl = process.argv[2];
if (!baseUrl) {
  console.error("usage: node docs_pages.mjs BASE_URL");
  process.exit(2);
}
const origin = new URL(baseUrl).origin;
const TIMEOUT = 30_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: TIMEOUT,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const offOrigin = [];
const consoleErrors = [];
const sameOrigin = new Set();

async function open(path) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith("data:") || url.startsWith("blob:") || new URL(url).origin === origin) {
      sameOrigin.add(new URL(url).pathname);
      return route.continue();
    }
    offOrigin.push(`${path}: ${url}`);
    return route.abort();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(`${path}: ${msg.text()}`); });
  page.on("pageerror", (err) => consoleErrors.push(`${path}: ${err.message}`));
  await page.goto(baseUrl + path, { waitUntil: "load" });
  return page;
}

const result = {};

async function swagger() {
  // Swagger UI: every operation, then the Authorize button and a real call with the token.
  const docs = await open("/docs");
  await docs.waitForSelector(".opblock");
  result.swaggerOperations = await docs.$$eval(".opblock", (blocks) => blocks.map((b) =>
    `${b.querySelector(".opblock-summary-method").textContent.trim()} ${b.querySelector("[data-path]").getAttribute("data-path")}`));
  await docs.click("button.authorize");
  const bearer = docs.locator(".auth-container", { hasText: "HTTPBearer" }).first();
  await bearer.locator("input").first().fill("token-from-the-browser");
  await bearer.locator("button.authorize").click();
  await docs.click("button.btn-done");
  const operation = docs.locator("#operations-default-me_optional_me_optional_get");
  await operation.locator(".opblock-summary").click();
  await operation.locator("button.try-out__btn").click();
  await operation.locator("button.execute").click();
  await operation.locator(".live-responses-table .response-col_status").first().waitFor();
  await docs.waitForLoadState("networkidle");
  result.tryItOut = {
    status: (await operation.locator(".live-responses-table .response .response-col_status").first().textContent()).trim(),
    body: (await operation.locator(".live-responses-table .response-col_description pre").first().textContent()).trim(),
  };
}

async function redoc(path, key, waitText) {
  const page = await open(path);
  await page.waitForFunction((text) => document.body.innerText.includes(text), waitText);
  await page.waitForLoadState("networkidle");
  result[key] = await page.evaluate(() => document.body.innerText);
}

try {
  // The three pages at once: each in its own context, so one's failure names its page.
  await Promise.all([
    swagger(),
    redoc("/redoc", "redocText", "Adopt a cat or a dog"),
    redoc("/asyncapi", "asyncapiText", "A line a client says in the room"),
  ]);
} catch (error) {
  console.error(String(error && error.stack || error));
  console.log(JSON.stringify({ ...result, offOrigin, consoleErrors, sameOrigin: [...sameOrigin] }));
  await browser.close();
  process.exit(1);
}
console.log(JSON.stringify({ ...result, offOrigin, consoleErrors, sameOrigin: [...sameOrigin] }));
await browser.close();
