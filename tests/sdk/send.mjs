// Sends one user's identify, group, track, page and screen through an official Node SDK, unchanged,
// to a Nudge endpoint, then flushes. Used by tests/e2e/test_server_sdks.py:
//   node send.mjs <analytics-node|rudder-sdk-node> <baseUrl> <writeKey> <userId> [flushAt]
// flushAt (default 10): messages per request; 1 sends one event a request, as browsers and apps do.
// Exits 1 (printing what failed) when the SDK reports an error or a non-2xx answer.
import { Analytics } from "@segment/analytics-node";
import RudderAnalytics from "@rudderstack/rudder-sdk-node";

const [sdk, baseUrl, writeKey, userId, flushArg] = process.argv.slice(2);
const flushAt = Number(flushArg ?? 10);
const account = `acct-${userId}`;
const failures = [];
const sizes = []; // messages in each request analytics-node made

async function segment() {
  const client = new Analytics({ writeKey, host: baseUrl, maxRetries: 1, flushAt });
  client.on("error", (error) => failures.push(String(error?.reason ?? error)));
  client.on("http_request", (request) => {
    try {
      sizes.push(JSON.parse(request.body).batch.length);
    } catch {
      sizes.push(-1);
    }
    if (request.status !== undefined && (request.status < 200 || request.status > 299)) {
      failures.push(`HTTP ${request.status}`);
    }
  });
  client.identify({ userId, traits: { email: `${userId}@example.com`, plan: "team" } });
  client.group({ userId, groupId: account, traits: { name: "Acme", mrr: 900 } });
  client.track({ userId, event: "project_created", properties: { template: "kanban" } });
  client.page({ userId, name: "Getting started" });
  client.screen({ userId, name: "Home" });
  await client.closeAndFlush({ timeout: 20000 });
}

async function rudder() {
  // gzip is on by default: axios then declares the body application/x-www-form-urlencoded.
  const client = new RudderAnalytics(writeKey, {
    dataPlaneUrl: baseUrl,
    flushAt: 10,
    retryCount: 0,
    logLevel: "error",
    errorHandler: (error) => failures.push(String(error?.message ?? error)),
  });
  client.identify({ userId, traits: { email: `${userId}@example.com`, plan: "team" } });
  client.group({ userId, groupId: account, traits: { name: "Acme", mrr: 900 } });
  client.track({ userId, event: "project_created", properties: { template: "kanban" } });
  client.page({ userId, name: "Getting started" });
  client.screen({ userId, name: "Home" });
  await client.flush();
}

try {
  await (sdk === "analytics-node" ? segment() : rudder());
} catch (error) {
  failures.push(String(error?.stack ?? error));
}
if (failures.length) {
  console.error(JSON.stringify(failures));
  process.exit(1);
}
// What the test can check: the messages in each request analytics-node made.
console.log(JSON.stringify({ sizes }));
process.exit(0);
