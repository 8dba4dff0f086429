// Saves a screenshot of every dashboard page of a running demo (`make demo`), signed in as its
// chain administrator, in headless Chromium: `scripts/demo-screenshots.sh` passes
//   ONSHI_BASE          https://localhost:<port> of central's dashboard listener
//   ONSHI_SERVER_CERT   central's certificate (PEM): the browser trusts exactly its key
//   ONSHI_SCREENSHOTS   where to save them
//   ONSHI_ADMIN / ONSHI_ADMIN_PASSWORD
//   ONSHI_SITE          a site to show its page
// Exits 1 naming the page that did not load.

import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (scripts/demo-screenshots.sh passes it)`);
  return value;
};
const base = env('ONSHI_BASE');
const shots = env('ONSHI_SCREENSHOTS');
mkdirSync(shots, { recursive: true });
const spki = new X509Certificate(readFileSync(env('ONSHI_SERVER_CERT')))
  .publicKey.export({ type: 'spki', format: 'der' });
const pin = createHash('sha256').update(spki).digest('base64');

const pages = [
  ['01-overview', '/'],
  ['02-sites', '/sites'],
  ['03-site', `/sites/${env('ONSHI_SITE')}`],
  ['04-certificates', '/certificates'],
  ['05-alerts', '/alerts'],
  ['06-rollout', '/rollout'],
  ['07-audit', '/audit'],
  ['08-notifications', '/notifications'],
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${pin}`,
  ],
});
let current = 'sign-in';
try {
  const context = await browser.newContext({ locale: 'ja-JP', timezoneId: 'Asia/Tokyo', viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${base}/login`);
  await page.fill('#login', env('ONSHI_ADMIN'));
  await page.fill('#password', env('ONSHI_ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL((url) => !url.pathname.startsWith('/login')), page.click('#sign-in')]);
  for (const [name, path] of pages) {
    current = path;
    const response = await page.goto(`${base}${path}`);
    if (!response || response.status() !== 200) {
      throw new Error(`answered ${response ? response.status() : 'nothing'}`);
    }
    // The first screen of each page: a whole audit list would be megabytes.
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: name === '01-overview' });
    console.log(`saved ${name}.png (${path})`);
  }
} catch (error) {
  console.error(`demo screenshots: ${current}: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
