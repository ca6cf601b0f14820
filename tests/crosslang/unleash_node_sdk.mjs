// The real Unleash Node.js SDK (npm unleash-client, pinned in package.json) against the control
// plane, driven by tests/crosslang/test_unleash_node_sdk.py.
//
// Reads one JSON request on stdin:
//   {url, token, appName, instanceId, namePrefix?, projectName?, metrics: bool,
//    streaming?: bool, checks: [{name, contexts: [context, ...]}], timeoutMs,
//    awaitChange?: {name, enabled}}
// Starts the SDK with the token as the Authorization custom header, waits for `synchronized`
// (the first fetch from the server, never a backup: storage is in memory), then writes one JSON
// object on stdout:
//   {synchronized, features: [names the SDK knows, sorted], enabled: {flag: [bool per context]},
//    registered, metricsSent, fetchMode: 'polling' | 'streaming' at the end, changeSeen,
//    errors: [messages]}
// With `awaitChange`, once synchronised it writes the line SYNCHRONIZED on stderr (the test
// then changes the flag) and waits until `isEnabled(name)` is `enabled`.
// With `metrics`, the counts of the checks are flushed to the server before the SDK stops.
import { InMemStorageProvider, Unleash } from 'unleash-client';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const errors = [];
let registered = false;
let metricsSent = false;

const unleash = new Unleash({
  url: request.url,
  appName: request.appName,
  instanceId: request.instanceId,
  namePrefix: request.namePrefix,
  projectName: request.projectName,
  customHeaders: { Authorization: request.token },
  refreshInterval: 1_000,
  metricsInterval: 60_000, // flushed explicitly below, never by the timer mid-test
  disableMetrics: !request.metrics,
  storageProvider: new InMemStorageProvider(),
  skipInstanceCountWarning: true,
  experimentalMode: request.streaming ? { type: 'streaming' } : { type: 'polling' },
});
unleash.on('error', (error) => errors.push(String(error && error.message ? error.message : error)));
unleash.on('warn', () => {}); // an unhandled 'warn' would only print
unleash.on('registered', () => {
  registered = true;
});
unleash.on('sent', () => {
  metricsSent = true;
});

const synchronized = await new Promise((resolve) => {
  const timer = setTimeout(() => resolve(false), request.timeoutMs ?? 15_000);
  unleash.once('synchronized', () => {
    clearTimeout(timer);
    resolve(true);
  });
});

const enabled = {};
if (synchronized) {
  for (const check of request.checks ?? []) {
    enabled[check.name] = check.contexts.map((context) => unleash.isEnabled(check.name, context));
  }
}
let changeSeen = null;
if (request.awaitChange && synchronized) {
  const { name, enabled: wanted } = request.awaitChange;
  process.stderr.write('SYNCHRONIZED\n');
  const deadline = Date.now() + (request.timeoutMs ?? 15_000);
  changeSeen = false;
  while (Date.now() < deadline) {
    if (unleash.isEnabled(name, {}) === wanted) {
      changeSeen = true;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// How it fetched at the end: streaming falls back to polling on a failed stream. The pinned
// SDK keeps this on its repository (no public getter, and the top-level client does not
// re-emit the repository's 'mode' event).
const fetchMode = unleash.repository?.getMode?.() ?? null;
const features = (unleash.getFeatureToggleDefinitions() ?? []).map((f) => f.name).sort();

if (request.metrics && synchronized) {
  await unleash.destroyWithFlush();
} else {
  unleash.destroy();
}

process.stdout.write(
  JSON.stringify({
    synchronized,
    features,
    enabled,
    registered,
    metricsSent,
    fetchMode,
    changeSeen,
    errors,
  }),
);
