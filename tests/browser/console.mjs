// Drives the console in headless Chromium for tests/tests/console.rs.
//
//   node console.mjs <gateway url> <screenshot dir> <scenario.json>
//
// The scenario names three accounts (operator admin, security staff, registry admin). The
// script clicks through the console as a person would and reports what it saw as one JSON
// object per line on stdout ({"event": ...}). After some events it waits for one line on
// stdin (JSON) from the Rust test, which meanwhile checks the API effects itself (the token
// works, then is refused; the credential is blacklisted...). Any failure prints
// {"event":"error"} with a screenshot, and exits 1. No request may leave the gateway's
// origin: every other one is aborted and reported.

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const [url, shots, scenarioPath] = process.argv.slice(2);
if (!url || !shots || !scenarioPath) {
  console.error('usage: node console.mjs <gateway url> <screenshot dir> <scenario.json>');
  process.exit(2);
}
const scenario = JSON.parse(readFileSync(scenarioPath, 'utf8'));
mkdirSync(shots, { recursive: true });

const emit = (event, data = {}) => process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Waits for the Rust test's go-ahead (a JSON line). */
async function proceed() {
  const { value, done } = await stdin.next();
  if (done) throw new Error('the test closed stdin');
  return JSON.parse(value);
}

const outside = [];
const pageErrors = [];
let currentStep = 'launch';
let page;

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function step(name, fn) {
  currentStep = name;
  return fn();
}

const text = async (selector) => (await page.locator(selector).first().textContent())?.trim() ?? '';

async function signIn({ login, password }) {
  await page.waitForSelector('#page-signin');
  await page.fill('#signin-login', login);
  await page.fill('#signin-password', password);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#nav a');
  return page.$$eval('#nav a', (links) => links.map((a) => a.dataset.page));
}

async function signOut() {
  await page.click('#sign-out');
  await page.waitForSelector('#page-signin');
}

/** Opens a page from the sidebar and waits for its content. */
async function open(name, ready) {
  await page.click(`#nav-${name}`);
  await page.waitForSelector(`#page-${name}`);
  if (ready) await page.waitForSelector(ready);
}

/** Status and gateway reason of an API call made by the page itself, with its session. */
const fetchFromPage = (method, path) => page.evaluate(async ([m, p]) => {
  const r = await fetch(p, { method: m, headers: { accept: 'application/json' } });
  return { status: r.status, reason: r.headers.get('x-gateway-error') };
}, [method, path]);

async function operatorAdmin(who) {
  await step('signin page', async () => {
    await page.goto(`${url}/console/`);
    await page.waitForSelector('#page-signin');
    await shot('01-signin');
    // The sign-in page links the API description, which the gateway serves.
    const href = await page.getAttribute('#api-description', 'href');
    const described = await page.evaluate(async (path) => (await fetch(path)).json(), href);
    if (described.openapi !== '3.1.0' || !described.paths['/{version}/journeys']) {
      throw new Error(`the sign-in page links ${href}, which is not the API description`);
    }
  });
  const signInError = await step('wrong password', async () => {
    await page.fill('#signin-login', who.login);
    await page.fill('#signin-password', 'not the password');
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('#signin-password-error:not(:empty)');
    await shot('01-signin-error');
    return text('#signin-password-error');
  });
  const nav = await step('operator admin signs in', () => signIn(who));
  // The session cookies as the browser keeps them (names, and whether TLS only).
  const cookies = (await page.context().cookies(url)).map((c) => ({ name: c.name, secure: c.secure }));
  emit('signed_in', { role: await text('#who-role'), nav, sign_in_error: signInError, cookies });

  const created = await step('create token', async () => {
    await page.waitForSelector('#page-tokens #new-token');
    await page.fill('#new-token-name', '   ');
    await page.click('#new-token button[type=submit]');
    await page.waitForSelector('#new-token-name-error:not(:empty)');
    const nameError = await text('#new-token-name-error');
    await page.fill('#new-token-name', 'backend');
    await page.click('#new-token button[type=submit]');
    await page.waitForSelector('#token-value');
    await page.waitForSelector('#tokens');
    const token = await page.inputValue('#token-value');
    await page.click('#token-value-copy');
    await page.waitForSelector('#token-value-copied:not(:empty)');
    const clipboard = await page.evaluate(() => navigator.clipboard.readText()).catch(() => null);
    const warning = await text('#shown-once .notice.warning');
    await shot('02-tokens');
    return { token, name_error: nameError, clipboard_matches: clipboard === token, warning };
  });
  emit('token', created);
  const { journey, refused, anomaly } = await proceed();

  const after = await step('token not shown again', async () => {
    await page.reload();
    await page.waitForSelector('#tokens');
    return {
      listed: await page.locator('#tokens tbody tr', { hasText: 'backend' }).count(),
      shown_again: (await page.content()).includes(created.token),
    };
  });

  const journeys = await step('journeys', async () => {
    await open('journeys', '#journey-filter');
    // Its checks are done (the test moved the registry's clock by 49 h): its status is final.
    await page.selectOption('#journey-filter-status', 'ok');
    await page.click('#journey-filter button[type=submit]');
    await page.waitForSelector(`#journeys a:text-is("${journey}")`);
    await shot('03-journeys');
    await page.selectOption('#journey-filter-status', 'terms_violation_error');
    await page.click('#journey-filter button[type=submit]');
    await page.click(`#journeys a:text-is("${refused}")`);
    await page.waitForSelector('#journey-status');
    await shot('04-journey');
    const status = await text('#journey-status');
    const terms = await page.$$eval('#terms-labels li', (items) => items.map((li) => li.textContent));
    await page.click('a:text-is("← All journeys")');
    await page.waitForSelector('#journey-filter');
    await page.selectOption('#journey-filter-status', 'anomaly_error');
    await page.click('#journey-filter button[type=submit]');
    await page.click(`#journeys a:text-is("${anomaly}")`);
    await page.waitForSelector('#anomaly-labels');
    await shot('04-journey-anomaly');
    return {
      status,
      terms,
      anomaly_status: await text('#journey-status'),
      anomalies: await page.$$eval('#anomaly-labels li', (items) => items.map((li) => li.textContent)),
      fraud: await page.$$eval('#fraud-labels li', (items) => items.map((li) => li.textContent)),
    };
  });
  emit('journeys', { ...after, ...journeys });

  await step('revoke token', async () => {
    await open('tokens', '#tokens');
    await page.click('#tokens button[aria-label="Revoke backend"]');
    await page.waitForSelector('#tokens-empty');
  });
  emit('token_revoked');
  await proceed();

  const credentials = await step('credentials', async () => {
    await open('credentials', '#new-credential');
    const create = async () => {
      await page.click('#new-credential button[type=submit]');
      await page.waitForSelector('#api-key-value');
      const made = { access_key: await page.inputValue('#access-key-value'), api_key: await page.inputValue('#api-key-value') };
      await page.waitForSelector(`#credentials [data-revoke="${made.access_key}"]`);
      return made;
    };
    const first = await create();
    await shot('05-credentials');
    await page.click(`#credentials [data-revoke="${first.access_key}"]`);
    await page.waitForSelector(`#credentials [data-revoke="${first.access_key}"]`, { state: 'detached' });
    await page.click('#shown-once-done');
    const second = await create();
    return { revoked: first, live: second };
  });
  emit('credentials', credentials);
  await proceed();

  const users = await step('users', async () => {
    await open('users', '#users');
    await page.fill('#new-user-first_name', 'Grace');
    await page.fill('#new-user-last_name', 'Hopper');
    await page.fill('#new-user-email', 'grace@operator');
    await page.fill('#new-user-password', 'a long enough password');
    await page.click('#new-user button[type=submit]');
    await page.waitForSelector('#new-user-email-error:not(:empty)');
    const emailError = await text('#new-user-email-error');
    await shot('06-users-error');
    await page.fill('#new-user-email', scenario.newUserEmail);
    await page.click('#new-user button[type=submit]');
    await page.waitForSelector(`#users td:text-is("${scenario.newUserEmail}")`);
    await shot('06-users');
    return { email_error: emailError, listed: await page.$$eval('#users tbody tr', (rows) => rows.length) };
  });
  emit('users', users);

  const forbidden = await step('blacklist refused to an operator admin', async () => {
    await page.goto(`${url}/console/#/blacklist`);
    await page.waitForSelector('#forbidden');
    await shot('07-forbidden');
    return {
      in_nav: await page.locator('#nav-blacklist').count(),
      notice: await text('#forbidden'),
      api: await fetchFromPage('GET', '/admin/blacklist'),
    };
  });
  emit('forbidden', forbidden);

  const phone = await step('phone width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${url}/console/#/tokens`);
    await page.waitForSelector('#page-tokens #new-token');
    const hiddenBefore = !(await page.isVisible('#nav-tokens'));
    await page.click('#menu-toggle');
    const shownAfter = await page.isVisible('#nav-tokens');
    await shot('08-tokens-phone');
    const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
    await page.setViewportSize({ width: 1280, height: 800 });
    return { menu_folds: hiddenBefore && shownAfter, fits };
  });
  emit('phone', phone);

  await step('operator admin signs out', async () => {
    await signOut();
  });
  emit('signed_out', { profile: await fetchFromPage('GET', '/profile') });
  return credentials.live.access_key;
}

async function security(who, credential) {
  const nav = await step('security signs in', () => signIn(who));
  emit('signed_in', { role: await text('#who-role'), nav });
  const added = await step('blacklist a credential', async () => {
    await open('blacklist', '#new-entry');
    await page.selectOption('#new-entry-kind', 'credential');
    await page.fill('#new-entry-value', 'not-an-access-key');
    await page.fill('#new-entry-reason', 'abusive traffic');
    await page.click('#new-entry button[type=submit]');
    await page.waitForSelector('#new-entry-value-error:not(:empty)');
    const valueError = await text('#new-entry-value-error');
    await page.fill('#new-entry-value', credential);
    await page.click('#new-entry button[type=submit]');
    await page.waitForSelector(`#blacklist [data-lift="${credential}"]`);
    await shot('09-blacklist');
    return { value_error: valueError };
  });
  emit('blacklisted', added);
  await proceed();

  const audit = await step('audit log', async () => {
    await open('audit', '#audit');
    await page.fill('#audit-filter', credential);
    const row = page.locator('#audit tbody tr', { hasText: `credential:${credential}` });
    await row.first().waitFor();
    await shot('10-audit');
    return { actions: await row.locator('td:nth-child(2)').allTextContents() };
  });
  emit('audit', audit);

  await step('lift the entry', async () => {
    await open('blacklist', '#blacklist');
    await page.click(`#blacklist [data-lift="${credential}"]`);
    await page.waitForSelector(`#blacklist [data-lift="${credential}"]`, { state: 'detached' });
  });
  emit('lifted');
  const { signal_credential: flagged } = await proceed();

  const activity = await step('activity', async () => {
    await open('activity', '#signals');
    await page.click(`#signals [data-inspect="${flagged}"]`);
    await page.waitForSelector('#chart-24h');
    const seen = {
      bars: await page.locator('#chart-24h g.bar').count(),
      refused_bars: await page.locator('#chart-24h rect[data-group="credential"]').count(),
      networks: await page.locator('#networks tbody tr').count(),
      last_used: await text('#activity-credential .last-used'),
    };
    await shot('10b-activity');
    await page.fill('#activity-blacklist-reason', 'still tried after its revocation');
    await page.click('#activity-blacklist button[type=submit]');
    await page.waitForSelector('#activity-credential .notice.ok');
    await shot('10c-activity-blacklisted');
    return seen;
  });
  emit('activity', activity);
  await proceed();

  const forbidden = await step('operators refused to security staff', async () => {
    await page.goto(`${url}/console/#/operators`);
    await page.waitForSelector('#forbidden');
    return { notice: await text('#forbidden'), api: await fetchFromPage('GET', '/admin/operators') };
  });
  emit('forbidden', forbidden);
  await step('security signs out', signOut);
}

async function registryAdmin(who, operator) {
  const nav = await step('registry admin signs in', () => signIn(who));
  emit('signed_in', { role: await text('#who-role'), nav });
  const created = await step('create an operator and its admin', async () => {
    await open('operators', '#new-operator');
    await page.fill('#new-operator-name', operator.name);
    await page.fill('#new-operator-siret', '1234');
    await page.fill('#new-operator-admin_first_name', 'Ada');
    await page.fill('#new-operator-admin_last_name', 'Lovelace');
    await page.fill('#new-operator-admin_email', operator.adminEmail);
    await page.fill('#new-operator-admin_password', operator.adminPassword);
    await page.click('#new-operator button[type=submit]');
    await page.waitForSelector('#new-operator-siret-error:not(:empty)');
    const siretError = await text('#new-operator-siret-error');
    await page.fill('#new-operator-siret', operator.siret);
    await page.click('#new-operator button[type=submit]');
    await page.waitForSelector(`#operators td:text-is("${operator.name}")`);
    await page.waitForSelector('#top .notice.ok');
    await shot('11-operators');
    return { siret_error: siretError, notice: await text('#top .notice.ok') };
  });
  emit('operator', created);
  await step('registry admin signs out', signOut);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    // Over HTTPS the gateway's certificate comes from the test's own authority: Chromium
    // trusts that one key only (the SHA-256 of its SubjectPublicKeyInfo), nothing else.
    ...(process.env.TRUST_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.TRUST_SPKI}`] : []),
  ],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url });
  await context.route('**/*', (route) => {
    const target = route.request().url();
    if (target.startsWith(`${url}/`) || target === url) return route.continue();
    outside.push(target);
    return route.abort();
  });
  page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('dialog', (dialog) => dialog.accept());
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      pageErrors.push(message.text());
    }
  });
  const accessKey = await operatorAdmin(scenario.operatorAdmin);
  await security(scenario.security, accessKey);
  await registryAdmin(scenario.registryAdmin, scenario.newOperator);
  emit('done', { outside_requests: outside, page_errors: pageErrors });
} catch (error) {
  failed = true;
  emit('error', { step: currentStep, message: String(error?.stack || error) });
  if (page) await shot(`failure-${currentStep.replace(/\W+/g, '-')}`).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
