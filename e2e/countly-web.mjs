// Drives the real Countly web SDK (npm `countly-sdk-web`, loaded from node_modules) in
// headless Chromium against a running `sundial serve`, and prints what the SDK sent.
//
// Usage:
//   node e2e/countly-web.mjs --server http://127.0.0.1:8080 --app-key KEY
//        [--device-id ID] [--chromium /usr/bin/chromium] [--timeout-secs 90]
//
// The scenario is fixed (crates/cli/tests/countly_web_sdk.rs asserts its exact effect):
//   device 1 (`--device-id`, default `web-e2e-device-1`, developer supplied), app version 2.1.0
//     session 1: begin_session; purchase {count 2, sum 19.5, dur 4, plan=pro, source=web};
//                level_up {count 3, level=7 (a number)}; session_duration(30); end_session(15)
//     session 2: begin_session; purchase {count 1, sum 5.25, plan=basic, source=web};
//                end_session(20)
//   device 2 (a fresh browser context: the SDK generates its own device id), app version 2.1.0
//     session 1: begin_session; share {count 1, network=mail}; end_session(10)
// Sessions are begun without the SDK's heartbeat extension (`begin_session(true)`) and with
// `use_session_cookie: false`, so every session_duration the SDK sends is one we asked for.
// `ignore_bots: false` because the SDK otherwise drops every request from a `HeadlessChrome`
// user agent as a bot.
//
// The page and the SDK are served by a small HTTP server this script starts on 127.0.0.1
// (its own port), so the SDK's requests to the server are cross-origin, as on a real site.
// (A made-up public origin would not do: Chromium blocks requests from public pages to
// loopback addresses, Local Network Access.) Each device's run ends when its last
// end_session was answered, the SDK's request and event queues are empty and no request to
// the server is in flight.
//
// Output (stdout, one JSON document): the Chromium and SDK versions, and for every request
// the browser sent to the server: device, method, path, the parameters (query string and
// form body merged), the HTTP status and the answer's body. Exit status 0 only if every
// request got a 2xx answer whose body is a JSON object with a truthy `result` (what the SDK
// needs to drop a request from its queue) and both devices finished in time; otherwise 1,
// with the reason on stderr (the JSON is still printed).

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const APP_VERSION = '2.1.0';

function fail(message) {
  process.stderr.write(`countly-web: ${message}\n`);
  process.exitCode = 1;
}

const { values: opts } = parseArgs({
  options: {
    server: { type: 'string' },
    'app-key': { type: 'string' },
    'device-id': { type: 'string', default: 'web-e2e-device-1' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'timeout-secs': { type: 'string', default: '90' },
  },
});
if (!opts.server || !opts['app-key']) {
  process.stderr.write(
    'usage: node e2e/countly-web.mjs --server http://HOST:PORT --app-key KEY ' +
      '[--device-id ID] [--chromium PATH] [--timeout-secs N]\n',
  );
  process.exit(2);
}
const server = opts.server.replace(/\/+$/, '');
const timeoutMs = Number(opts['timeout-secs']) * 1000;
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
  process.stderr.write('countly-web: --timeout-secs must be a positive number\n');
  process.exit(2);
}

const sdkMain = require.resolve('countly-sdk-web');
const sdkSource = await readFile(sdkMain, 'utf8');
const sdkVersion = JSON.parse(
  await readFile(join(dirname(sdkMain), '..', 'package.json'), 'utf8'),
).version;

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Sundial Countly e2e</title>
<script src="/countly.js"></script></head>
<body><p>Countly web SDK against Sundial</p></body></html>`;

/** Serves the page and the SDK; resolves to the server and its origin. */
function servePage() {
  const site = createServer((req, res) => {
    const path = new URL(req.url, 'http://page').pathname;
    if (path === '/countly.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      res.end(sdkSource);
    } else if (path === '/' || path === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE_HTML);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  return new Promise((resolve, reject) => {
    site.once('error', reject);
    site.listen(0, '127.0.0.1', () => {
      resolve({ site, origin: `http://127.0.0.1:${site.address().port}` });
    });
  });
}

/** Every request the browser sent to the server, in the order they were sent. */
const requests = [];
/** The entry of `requests` of each Playwright request to the server. */
const entryOf = new WeakMap();
const problems = [];

function paramsOf(request) {
  const url = new URL(request.url());
  const params = Object.fromEntries(url.searchParams);
  const body = request.postData();
  if (body) {
    const type = request.headers()['content-type'] ?? '';
    if (type.includes('application/json')) {
      try {
        Object.assign(params, JSON.parse(body));
      } catch {
        params['<unparsed body>'] = body;
      }
    } else {
      Object.assign(params, Object.fromEntries(new URLSearchParams(body)));
    }
  }
  return { path: url.pathname, params };
}

/** Opens a fresh context (empty storage: a new visitor) with the page and the SDK. */
async function openDevice(browser, origin, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const inFlight = new Set();
  page.on('request', (request) => {
    if (!request.url().startsWith(`${server}/`)) return;
    const { path, params } = paramsOf(request);
    const entry = {
      device: label,
      method: request.method(),
      path,
      params,
      status: null,
      body: null,
    };
    requests.push(entry);
    inFlight.add(request);
    entryOf.set(request, entry);
  });
  page.on('requestfinished', async (request) => {
    const entry = entryOf.get(request);
    if (!entry) return;
    try {
      const response = await request.response();
      entry.status = response ? response.status() : null;
      entry.body = response ? await response.text() : null;
      if (entry.method !== 'OPTIONS') checkAnswer(entry);
    } catch (e) {
      entry.error = String(e);
      problems.push(`${label}: ${entry.method} ${entry.path}: cannot read the answer: ${e}`);
    } finally {
      inFlight.delete(request);
    }
  });
  page.on('requestfailed', (request) => {
    const entry = entryOf.get(request);
    if (!entry) return;
    entry.error = request.failure()?.errorText ?? 'failed';
    problems.push(`${label}: ${entry.method} ${entry.path} failed: ${entry.error}`);
    inFlight.delete(request);
  });
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e}`));
  await page.goto(`${origin}/`);
  return { context, page, inFlight, label };
}

function checkAnswer(entry) {
  const where = `${entry.device}: ${entry.method} ${entry.path}`;
  if (!(entry.status >= 200 && entry.status < 300)) {
    problems.push(`${where} answered HTTP ${entry.status}: ${entry.body}`);
    return;
  }
  let parsed;
  try {
    parsed = JSON.parse(entry.body);
  } catch {
    problems.push(`${where} answered a body that is not JSON: ${entry.body}`);
    return;
  }
  if (entry.path.startsWith('/o/')) {
    // Read API (server configuration): any JSON object or array is fine for the SDK.
    if (parsed === null || typeof parsed !== 'object') {
      problems.push(`${where} answered ${entry.body}, not a JSON object`);
    }
    return;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || !parsed.result) {
    problems.push(`${where} answered ${entry.body}: the SDK keeps (and resends) such requests`);
  }
}

/** Initialises the SDK in the page. */
async function init(device, deviceId) {
  await device.page.evaluate(
    ({ appKey, url, deviceId, appVersion }) => {
      const config = {
        app_key: appKey,
        url,
        app_version: appVersion,
        ignore_bots: false,
        use_session_cookie: false,
        debug: false,
      };
      if (deviceId) config.device_id = deviceId;
      window.Countly.init(config);
    },
    { appKey: opts['app-key'], url: server, deviceId, appVersion: APP_VERSION },
  );
  return device.page.evaluate(() => window.Countly.get_device_id());
}

/** Runs SDK calls in the page: `calls` is a list of [method, ...args]. */
async function run(device, calls) {
  await device.page.evaluate((calls) => {
    for (const [method, ...args] of calls) window.Countly[method](...args);
  }, calls);
}

/** Waits until the device's sessions are all answered and nothing is left to send. */
async function drain(device, endSessions, deadline) {
  for (;;) {
    if (problems.length > 0) return false;
    const answeredEnds = requests.filter(
      (r) => r.device === device.label && r.params.end_session === '1' && r.status !== null,
    ).length;
    const queues = await device.page.evaluate(() => ({
      requests: window.Countly._internals.getRequestQueue().length,
      events: window.Countly._internals.getEventQueue().length,
      asyncCalls: window.Countly.q ? window.Countly.q.length : 0,
    }));
    if (
      answeredEnds >= endSessions &&
      queues.requests === 0 &&
      queues.events === 0 &&
      queues.asyncCalls === 0 &&
      device.inFlight.size === 0
    ) {
      return true;
    }
    if (Date.now() > deadline) {
      problems.push(
        `${device.label}: not flushed in time: ${answeredEnds}/${endSessions} end_session ` +
          `answered, queues ${JSON.stringify(queues)}, ${device.inFlight.size} in flight`,
      );
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const deadline = Date.now() + timeoutMs;
const devices = [];
let browser;
let page;
let browserVersion = null;
try {
  page = await servePage();
  browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  browserVersion = browser.version();

  const first = await openDevice(browser, page.origin, 'device-1');
  const firstId = await init(first, opts['device-id']);
  devices.push({ label: first.label, device_id: firstId });
  await run(first, [
    ['begin_session', true],
    [
      'add_event',
      {
        key: 'purchase',
        count: 2,
        sum: 19.5,
        dur: 4,
        segmentation: { plan: 'pro', source: 'web' },
      },
    ],
    ['add_event', { key: 'level_up', count: 3, segmentation: { level: 7 } }],
    ['session_duration', 30],
    ['end_session', 15],
  ]);
  if (await drain(first, 1, deadline)) {
    await run(first, [
      ['begin_session', true],
      [
        'add_event',
        {
          key: 'purchase',
          count: 1,
          sum: 5.25,
          segmentation: { plan: 'basic', source: 'web' },
        },
      ],
      ['end_session', 20],
    ]);
    await drain(first, 2, deadline);
  }

  if (problems.length === 0) {
    const second = await openDevice(browser, page.origin, 'device-2');
    const secondId = await init(second, null);
    devices.push({ label: second.label, device_id: secondId });
    await run(second, [
      ['begin_session', true],
      ['add_event', { key: 'share', count: 1, segmentation: { network: 'mail' } }],
      ['end_session', 10],
    ]);
    await drain(second, 1, deadline);
  }
} catch (e) {
  problems.push(`error: ${e && e.stack ? e.stack : e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (page) page.site.close();
}

const report = { chromium: browserVersion, sdk_version: sdkVersion, devices, requests };
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
for (const problem of problems) fail(problem);
