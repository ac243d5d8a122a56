// Drives the operator console in headless Chromium as an operator would: sign in, find
// the parked message, press its Replay button, read the result, sign out. Prints one
// JSON line.
// Usage: node drive.mjs <base url> <operator> <secret> <message id>
import puppeteer from 'puppeteer-core';

const [, , base, operator, secret, messageId] = process.argv;
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
  await page.type('#secret', secret);
  await Promise.all([page.waitForNavigation(), page.click('#sign-in')]);
  out.signed_in_as = await page.$eval('#operator', (e) => e.textContent);
  out.role = await page.$eval('#role', (e) => e.textContent);
  out.parked_page = await page.content();
  out.sees_message = out.parked_page.includes(`data-message="${messageId}"`);
  const button = await page.$(`button.replay-one[data-message="${messageId}"]`);
  if (button) {
    const [response] = await Promise.all([page.waitForNavigation(), button.click()]);
    out.replay_status = response ? response.status() : null;
    out.done = await page.$eval('#done', (e) => e.textContent).catch(() => null);
    out.forbidden = await page.$eval('#forbidden', (e) => e.textContent).catch(() => null);
    out.after_page = await page.content();
    await page.goto(`${base}/console`);
  }
  const cookies = await page.cookies();
  out.cookie = cookies.find((c) => c.name === 'clw_console') || null;
  await Promise.all([page.waitForNavigation(), page.click('#sign-out')]);
  out.signed_out_url = page.url();
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
