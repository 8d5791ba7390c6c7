// Swagger UI's OAuth2 password flow in headless Chromium: node swagger_oauth2.mjs DOCS_URL
//
// Opens the docs page, authorizes in the Authorize dialog (username "ann", password "secret",
// scope "me": Swagger UI posts the token URL's form), then runs "Try it out" on GET /me, which
// sends the token it got. Prints one JSON line: {"authorized": what Swagger UI holds,
// "status": the /me answer's status, "body": its body}. Used by tests/security/test_oauth2.py.
import { chromium } from "playwright-core";

const [docsUrl] = process.argv.slice(2);
if (!docsUrl) {
  console.error("usage: node swagger_oauth2.mjs DOCS_URL");
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
  await page.goto(docsUrl);
  await page.click("button.authorize");
  await page.fill("#oauth_username", "ann");
  await page.fill("#oauth_password", "secret");
  // The checkbox itself is hidden behind its styled label.
  await page.click(".scopes label[for='me-password-checkbox-OAuth2PasswordBearer']");
  await page.click(".auth-btn-wrapper button.authorize");
  // Authorized: the dialog offers "Logout" (an error would show in the dialog instead).
  await page.waitForSelector(".auth-btn-wrapper button:has-text('Logout'), .auth-container .errors");
  const authorized = await page.evaluate(() => ui.authSelectors.authorized().toJS());
  await page.click("button.btn-done");
  await page.click(".opblock-summary:has(.opblock-summary-path[data-path='/me'])");
  await page.click("button.try-out__btn");
  await page.click("button.execute");
  const status = await page.textContent(".live-responses-table .response .response-col_status");
  const body = await page.textContent(".live-responses-table .response .microlight");
  console.log(JSON.stringify({ authorized, status: status.trim(), body: JSON.parse(body) }));
} finally {
  await browser.close();
}
