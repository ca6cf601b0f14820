// The real Unleash Node.js SDK (npm unleash-client, pinned in package.json) against the control
// plane, driven by tests/crosslang/test_unleash_node_sdk.py.
//
// Reads one JSON request on stdin:
//   {url, token, appName, instanceId, namePrefix?, projectName?, metrics: bool,
//    checks: [{name, contexts: [context, ...]}], timeoutMs}
// Starts the SDK with the token as the Authorization custom header, waits for `synchronized`
// (the first fetch from the server, never a backup: storage is in memory), then writes one JSON
// object on stdout:
//   {synchronized, features: [names the SDK knows, sorted], enabled: {flag: [bool per context]},
//    registered, metricsSent, errors: [messages]}
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
const features = (unleash.getFeatureToggleDefinitions() ?? []).map((f) => f.name).sort();

if (request.metrics && synchronized) {
  await unleash.destroyWithFlush();
} else {
  unleash.destroy();
}

process.stdout.write(
  JSON.stringify({ synchronized, features, enabled, registered, metricsSent, errors }),
);
