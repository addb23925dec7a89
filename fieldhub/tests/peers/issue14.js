// Issue 14 through the official Node service SDK (azure-iothub, from tests/peers/node via
// NODE_PATH): query projections keep IoT Hub's property names, the query language guide's
// GROUP BY example, a twin-update job without etag "*" refused, and a direct method with
// responseTimeoutInSeconds below 5 refused; on a throttled hub, queries and (with DEVICE_CS,
// azure-iot-device over MQTT) reported-property updates refused. Prints one JSON line per
// checked step.
'use strict';
const { Registry, Client: ServiceClient, JobClient } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const serviceCs = process.env.SERVICE_CS;

function step(name, extra) {
  console.log(JSON.stringify(Object.assign({ step: name, ok: true }, extra || {})));
}
function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}
async function rejects(p, what) {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a failure: ' + what);
}
function statusOf(e) {
  return e.response && e.response.statusCode;
}

async function main() {
  const registry = Registry.fromConnectionString(serviceCs);

  // Item 1: keys as IoT Hub spells them, not as the query typed them.
  const pq = registry.createQuery("SELECT DeviceId, LastActivityTime FROM devices WHERE deviceId = 'q-1'", 10);
  const rows = (await pq.next()).result;
  check(rows.length === 1, 'one row: ' + JSON.stringify(rows));
  const keys = Object.keys(rows[0]).sort();
  check(JSON.stringify(keys) === '["deviceId","lastActivityTime"]', 'keys: ' + JSON.stringify(keys));
  check(rows[0].deviceId === 'q-1', 'deviceId value');
  step('registry.createQuery(projection)', { keys });

  // Item 2: the guide's GROUP BY example.
  const gq = registry.createQuery(
    'SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices ' +
      'FROM devices GROUP BY properties.reported.telemetryConfig.status', 100);
  const groups = {};
  for (const r of (await gq.next()).result) {
    if (r.status !== undefined) groups[r.status] = r.numberOfDevices;
  }
  check(groups.Success === 2 && groups.Pending === 1 && groups.Error === 1, 'groups: ' + JSON.stringify(groups));
  step('registry.createQuery(GROUP BY)', { groups });

  // Item 5: a twin-update job needs etag "*".
  const jc = JobClient.fromConnectionString(serviceCs);
  const e1 = await rejects(
    jc.scheduleTwinUpdate('node-no-etag-' + Date.now(), "deviceId = 'q-1'",
      { properties: { desired: { Floor: 3 } } }, new Date(), 60),
    'twin job without etag');
  check(statusOf(e1) === 400, 'no etag → 400, got ' + statusOf(e1));
  step('jobClient.scheduleTwinUpdate(no etag)', { status: statusOf(e1), error: e1.constructor.name });

  // Item 7: responseTimeoutInSeconds is 5 to 300.
  const svc = ServiceClient.fromConnectionString(serviceCs);
  const e2 = await rejects(
    svc.invokeDeviceMethod('q-1', { methodName: 'lockDoor', payload: null, responseTimeoutInSeconds: 3 }),
    'responseTimeoutInSeconds 3');
  check(statusOf(e2) === 400, 'timeout 3 → 400, got ' + statusOf(e2));
  step('client.invokeDeviceMethod(responseTimeoutInSeconds 3)', { status: statusOf(e2), error: e2.constructor.name });
}

// Item 6, on a hub started with the S1 throttle profile: the 21st query within a minute is
// refused, and the SDK surfaces it as its throttling error.
async function throttled() {
  const registry = Registry.fromConnectionString(serviceCs);
  let error;
  for (let i = 0; i < 22 && !error; i++) {
    try {
      await registry.createQuery('SELECT * FROM devices', 10).next();
    } catch (e) {
      error = e;
    }
  }
  check(error, 'a query was throttled');
  check(statusOf(error) === 429 && error.constructor.name === 'ThrottlingError',
    'throttled → 429 ThrottlingError, got ' + statusOf(error) + ' ' + error.constructor.name);
  step('registry.createQuery(throttled)', { status: statusOf(error), error: error.constructor.name });
  if (process.env.DEVICE_CS) await throttledTwinUpdates();
}

// The device side: S1 allows 50 twin updates a second, so of 80 reported patches sent at
// once some are answered on $iothub/twin/res/429. The MQTT transport turns a response body
// with an errorCode into a plain Error carrying its message (it ignores the status).
async function throttledTwinUpdates() {
  const client = DeviceClient.fromConnectionString(process.env.DEVICE_CS, Mqtt);
  await client.open();
  const twin = await client.getTwin();
  const results = await Promise.all(Array.from({ length: 80 }, (_, i) => new Promise((resolve) => {
    twin.properties.reported.update({ n: i }, (err) => resolve(err || null));
  })));
  const errors = results.filter((e) => e);
  check(errors.length > 0, 'some of 80 reported patches were throttled');
  check(errors.length <= 30, errors.length + ' of 80 refused: at most 30 beyond the 50 a second');
  const message = String(errors[0].message);
  check(message.includes('Throttling limit exceeded'), 'throttled patch error: ' + message);
  step('twin.properties.reported.update(throttled)', {
    refused: errors.length, error: errors[0].constructor.name, message,
  });
  await client.close();
}

(process.env.MODE === 'throttled' ? throttled() : main()).then(
  () => { step('done'); process.exit(0); },
  (e) => { console.log(JSON.stringify({ step: 'error', ok: false, error: String(e && e.stack || e) })); process.exit(1); },
);
