// Drives Debian's headless Chromium through the central dashboard, as chain IT and as an area
// manager would, and saves a screenshot of every page it visits.
//
// Started by services/central/tests/browser.rs, which runs central with seeded data and passes:
//   ONSHI_BASE          https://127.0.0.1:<port> of central's dashboard listener
//   ONSHI_SERVER_CERT   central's certificate (PEM): the browser trusts exactly its key
//   ONSHI_SCREENSHOTS   where to save the screenshots
//   ONSHI_ADMIN / ONSHI_ADMIN_PASSWORD, ONSHI_MANAGER / ONSHI_MANAGER_PASSWORD
//   ONSHI_IN_SCOPE      a Tokyo (13) site the area manager may see
//   ONSHI_OUT_OF_SCOPE  an Osaka (27) site they may not
// Exits 0 when every step held; otherwise prints the step that failed and exits 1.

import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (the Rust test passes it)`);
  return value;
};

const base = env('ONSHI_BASE');
const shots = env('ONSHI_SCREENSHOTS');
mkdirSync(shots, { recursive: true });

// Trust central's own key only (no blanket "ignore certificate errors").
const spki = new X509Certificate(readFileSync(env('ONSHI_SERVER_CERT')))
  .publicKey.export({ type: 'spki', format: 'der' });
const pin = createHash('sha256').update(spki).digest('base64');

const STEP_TIMEOUT_MS = 15_000;
let step = 'launching Chromium';

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function signIn(context, login, password) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  await page.goto(`${base}/login`);
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((url) => !url.pathname.startsWith('/login')), page.click('#sign-in')]);
  return page;
}

async function asChainAdmin(browser) {
  const context = await browser.newContext({ acceptDownloads: true, locale: 'ja-JP', timezoneId: 'Asia/Tokyo' });
  step = 'sign in as chain administrator';
  const page = await signIn(context, env('ONSHI_ADMIN'), env('ONSHI_ADMIN_PASSWORD'));
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'onshi_session');
  check(session && session.httpOnly && session.secure && session.sameSite === 'Strict',
    `the session cookie must be HttpOnly, Secure, SameSite=Strict: ${JSON.stringify(session)}`);

  step = 'see the overview';
  await page.waitForSelector('#overview');
  check((await page.locator('[data-metric]').count()) >= 6, 'the overview shows its metrics');
  check(await page.locator('#lookups-chart svg, svg#lookups-chart').count() > 0, 'the lookups chart is drawn');
  await shot(page, '01-overview');

  step = 'filter sites by prefecture';
  await page.goto(`${base}/sites`);
  await page.waitForSelector('table#sites');
  const all = await page.locator('table#sites tr[data-site]').count();
  await page.selectOption('select[name=prefecture], input[name=prefecture]', '13').catch(async () => {
    await page.fill('[name=prefecture]', '13');
  });
  await Promise.all([page.waitForURL(/prefecture=13/), page.locator('form#site-filter [type=submit], form#site-filter button').first().click()]);
  const codes = await page.locator('table#sites tr[data-site]').evaluateAll((rows) => rows.map((r) => r.dataset.site));
  check(codes.length > 0 && codes.length < all, `the filter keeps some sites, not all (${codes.length} of ${all})`);
  check(codes.every((c) => c.startsWith('13')), `only Tokyo sites after filtering: ${codes}`);
  await shot(page, '02-sites-tokyo');

  step = 'open a site';
  const inScope = env('ONSHI_IN_SCOPE');
  await Promise.all([page.waitForURL(`**/sites/${inScope}`), page.click(`table#sites tr[data-site="${inScope}"] a`)]);
  await page.waitForSelector('#site');
  check((await page.locator('h1').innerText()).includes(inScope), 'the site page names its code');
  await shot(page, '03-site');

  step = 'export certificates as CSV';
  await page.goto(`${base}/certificates?within=all`);
  await page.waitForSelector('table#certificates');
  const listed = await page.locator('table#certificates tr[data-fingerprint]').count();
  check(listed > 0, 'the certificates page lists certificates');
  await shot(page, '04-certificates');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('a#export-csv')]);
  const csv = readFileSync(await download.path(), 'utf8').replace(/^\uFEFF/, '');
  const lines = csv.trim().split(/\r?\n/);
  check(lines.length === listed + 1, `the CSV has a header and one line per listed certificate (${lines.length - 1} vs ${listed})`);
  check(/^[^\n]*fingerprint/i.test(lines[0]) || /指紋|フィンガープリント/.test(lines[0]), `the CSV header names its columns: ${lines[0]}`);

  step = 'start a rollout';
  await page.goto(`${base}/rollout`);
  await page.waitForSelector('form#start-rollout');
  await shot(page, '05-rollout');
  await page.fill('form#start-rollout [name=target_version]', '9.9.9');
  await page.fill('form#start-rollout [name=waves]', '10,100');
  await Promise.all([page.waitForURL(/\/rollouts\/\d+$/), page.click('form#start-rollout [type=submit]')]);
  await page.waitForSelector('#rollout');
  check(await page.locator('#rollout').innerText().then((t) => t.includes('9.9.9')), 'the rollout page shows its target version');
  await shot(page, '06-rollout-started');

  step = 'pause the rollout';
  await Promise.all([page.waitForURL(/\/rollouts\/\d+$/), page.click('form#pause [type=submit]')]);
  await page.waitForSelector('[data-state=paused]');
  check(await page.locator('form#resume').count() === 1, 'a paused rollout offers resume');
  await shot(page, '07-rollout-paused');

  step = 'see the audit and alert pages';
  await page.goto(`${base}/audit`);
  await page.waitForSelector('#audit');
  await shot(page, '08-audit');
  await page.goto(`${base}/alerts`);
  await page.waitForSelector('table#alerts');
  await shot(page, '09-alerts');
  await context.close();
}

async function asAreaManager(browser) {
  const context = await browser.newContext({ locale: 'ja-JP', timezoneId: 'Asia/Tokyo' });
  step = 'sign in as the Tokyo area manager';
  const page = await signIn(context, env('ONSHI_MANAGER'), env('ONSHI_MANAGER_PASSWORD'));

  step = 'the area manager sees only their sites';
  await page.goto(`${base}/sites`);
  await page.waitForSelector('table#sites');
  const codes = await page.locator('table#sites tr[data-site]').evaluateAll((rows) => rows.map((r) => r.dataset.site));
  check(codes.length > 0 && codes.every((c) => c.startsWith('13')), `only Tokyo sites for the Tokyo manager: ${codes}`);
  await shot(page, '10-manager-sites');

  step = 'the area manager cannot reach a site outside their scope';
  const outside = env('ONSHI_OUT_OF_SCOPE');
  const response = await page.goto(`${base}/sites/${outside}`);
  check(response.status() === 403, `a site outside the scope answers 403, got ${response.status()}`);
  check(!(await page.content()).includes('table#site'), 'nothing of the site is shown');
  await shot(page, '11-manager-out-of-scope');
  // The JSON API from the same page (the browser's own fetch, with the session cookie).
  const api = await page.evaluate(async (url) => {
    const r = await fetch(url);
    return { status: r.status, body: await r.json() };
  }, `${base}/api/v1/sites/${outside}/events`);
  check(api.status === 403, `the API refuses it too, got ${api.status}`);
  check(api.body.code === 'out_of_scope', `with the machine-readable code out_of_scope: ${JSON.stringify(api.body)}`);
  await context.close();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${pin}`,
  ],
});
try {
  await asChainAdmin(browser);
  await asAreaManager(browser);
  console.log('dashboard browser test: every step held');
} catch (error) {
  console.error(`dashboard browser test failed at "${step}": ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
