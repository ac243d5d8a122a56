// Drives the operator console in headless Chromium as an operator would: sign in, find
// the parked message, press its Replay button, read the result. Prints one JSON line.
// Usage: node drive.mjs <base url> <token> <operator name> <message id>
import puppeteer from 'puppeteer-core';

const [, , base, token, operator, messageId] = process.argv;
const browser = await puppeteer.launch({
  executablePath: process.env.CLW_TEST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const out = {};
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(`${base}/console`);
  out.login_url = page.url();
  await page.type('#operator', operator);
  await page.type('#token', token);
  await Promise.all([page.waitForNavigation(), page.click('#sign-in')]);
  out.signed_in_as = await page.$eval('#operator', (e) => e.textContent);
  out.parked_page = await page.content();
  const button = await page.$(`button.replay-one[data-message="${messageId}"]`);
  if (!button) throw new Error(`no Replay button for ${messageId}`);
  await Promise.all([page.waitForNavigation(), button.click()]);
  out.done = await page.$eval('#done', (e) => e.textContent);
  out.after_page = await page.content();
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
