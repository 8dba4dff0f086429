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

// Pages shown whole (their point is below the first screen); the others show their first
// screen (a whole audit list would be megabytes).
const wholePages = new Set(['01-overview', '06-rollout']);

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
  // The site page of a simulated site with an open availability alert (an outage or an
  // unplugged reader shows more than a quiet site); ONSHI_SITE when none is open.
  current = '/api/v1/alerts';
  // Asked from the signed-in page (the browser trusts central's pinned key; Node would not).
  const alerts = await page.evaluate(async () => (await fetch('/api/v1/alerts')).json());
  const troubled = alerts.find((a) => a.kind === 'site_unavailable' && a.site_code);
  const site = troubled ? troubled.site_code : env('ONSHI_SITE');
  const pages = [
    ['01-overview', '/'],
    ['02-sites', '/sites'],
    ['03-site', `/sites/${site}`],
    ['04-certificates', '/certificates'],
    ['05-alerts', '/alerts'],
    ['06-rollout', '/rollout'],
    ['07-audit', '/audit'],
    ['08-notifications', '/notifications'],
    ['09-account', '/account'],
    ['10-audit-report', '/audit/report'],
  ];
  for (const [name, path] of pages) {
    current = path;
    const response = await page.goto(`${base}${path}`);
    if (!response || response.status() !== 200) {
      throw new Error(`answered ${response ? response.status() : 'nothing'}`);
    }
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: wholePages.has(name) });
    console.log(`saved ${name}.png (${path})`);
  }
} catch (error) {
  console.error(`demo screenshots: ${current}: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
