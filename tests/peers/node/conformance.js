// Official Azure IoT SDKs for Node.js against fieldhub (or any IoT Hub), unmodified.
// Env: SERVICE_CS (iothubowner connection string, HostName=localhost → port 443),
//      CA_FILE (fieldhub's ca.pem; NODE_EXTRA_CA_CERTS must point at it too for the service SDK),
//      DEVICE_ID, MODE:
//        device-service  registry create, device open/getTwin/reported/desired/telemetry, invoke (issue 2)
//        jobs            JobClient + registry queries against an open device (issue 4)
//        device          DEVICE_CS: an open device answering `lockDoor` until stdin closes
//        invoke          Client.invokeDeviceMethod('lockDoor') on DEVICE_ID (someone else's device)
//        negative        a reported patch over 32 KB, wrong key, expired SAS, READ_CS (registryRead policy) invoking a method,
//                        a method to OFFLINE_ID (404), a method nobody answers (504), a twin over
//                        the size limit (400); then the hub still serves this process's device
// Prints one JSON line per checked step ({"step":…,"ok":true,…}) and exits non-zero on the
// first failure, so the Rust test that runs it sees exactly which step broke.
'use strict';
const fs = require('fs');
const { Registry, Client: ServiceClient, JobClient } = require('azure-iothub');
const { Client: DeviceClient, Message, SharedAccessSignature } = require('azure-iot-device');
const { Mqtt: MqttTcp, MqttWs } = require('azure-iot-device-mqtt');
// TRANSPORT=ws: MQTT over WebSockets on 443 (the SDK's MqttWs) instead of 8883.
const Mqtt = process.env.TRANSPORT === 'ws' ? MqttWs : MqttTcp;

const serviceCs = process.env.SERVICE_CS;
const ca = fs.readFileSync(process.env.CA_FILE, 'utf8');
const deviceId = process.env.DEVICE_ID || 'node-sdk-door';
const mode = process.env.MODE || 'device-service';
const host = /HostName=([^;]+)/.exec(serviceCs)[1];

function step(name, extra) {
  console.log(JSON.stringify(Object.assign({ step: name, ok: true }, extra || {})));
}
function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}
function withTimeout(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms))]);
}

async function openDevice(registry, id) {
  let device;
  try {
    device = (await registry.create({ deviceId: id })).responseBody;
  } catch (e) {
    if (e.constructor.name !== 'DeviceAlreadyExistsError') throw e;
    device = (await registry.get(id)).responseBody;
  }
  const key = device.authentication.symmetricKey.primaryKey;
  check(key && key.length > 20, 'hub generated a primary key');
  const client = DeviceClient.fromConnectionString(`HostName=${host};DeviceId=${id};SharedAccessKey=${key}`, Mqtt);
  // setOptions is asynchronous when given a CA: open() must wait for it.
  await client.setOptions({ ca });
  await withTimeout(client.open(), 15000, 'device open');
  return client;
}

async function deviceService() {
  const registry = Registry.fromConnectionString(serviceCs);
  const client = await openDevice(registry, deviceId);
  step('registry.create+device.open', { deviceId });

  const methodCalls = [];
  client.onDeviceMethod('lockDoor', (req, res) => {
    methodCalls.push(req.payload);
    res.send(200, { locked: true, echo: req.payload }, (err) => { if (err) console.error(err); });
  });

  const twin = await withTimeout(client.getTwin(), 10000, 'getTwin');
  check(typeof twin.properties.desired.$version === 'number', 'desired $version in twin');
  step('device.getTwin', { desiredVersion: twin.properties.desired.$version, reportedSdk: twin.properties.reported.sdk });

  await withTimeout(new Promise((resolve, reject) =>
    twin.properties.reported.update({ sdk: 'node', firmware: { version: '1.2.3' } }, (e) => (e ? reject(e) : resolve()))), 10000, 'reported');
  step('device.reported.update');

  const desiredSeen = new Promise((resolve) => {
    twin.on('properties.desired', (delta) => { if (delta.Floor === 3) resolve(delta); });
  });

  const got = (await registry.getTwin(deviceId)).responseBody;
  check(got.properties.reported.sdk === 'node', 'service sees reported.sdk');
  check(got.properties.reported.firmware.version === '1.2.3', 'service sees nested reported');
  step('registry.getTwin', { reportedVersion: got.properties.reported.$version });

  const updated = (await registry.updateTwin(deviceId, { tags: { building: '43' }, properties: { desired: { Building: 43, Floor: 3 } } }, '*')).responseBody;
  check(updated.tags.building === '43', 'tags merged');
  check(updated.properties.desired.Floor === 3, 'desired merged');
  step('registry.updateTwin', { etag: updated.etag });

  const delta = await withTimeout(desiredSeen, 10000, 'desired notification');
  check(typeof delta.$version === 'number', 'desired notification carries $version');
  step('device.properties.desired', { version: delta.$version });

  const svc = ServiceClient.fromConnectionString(serviceCs);
  const r = await withTimeout(svc.invokeDeviceMethod(deviceId, { methodName: 'lockDoor', payload: { seconds: 5 }, responseTimeoutInSeconds: 10 }), 15000, 'invoke');
  check(r.result.status === 200, 'method status 200');
  check(r.result.payload.locked === true && r.result.payload.echo.seconds === 5, 'method payload round trip');
  check(methodCalls.length === 1, 'device saw exactly one call');
  step('client.invokeDeviceMethod', { status: r.result.status });

  const msg = new Message(JSON.stringify({ sdk: 'node', temperature: 21.5 }));
  msg.properties.add('doorEvent', 'opened');
  msg.contentType = 'application/json';
  msg.contentEncoding = 'utf-8';
  await withTimeout(client.sendEvent(msg), 10000, 'sendEvent');
  step('device.sendEvent');

  await client.close();
}

// Fails unless `p` rejects; returns the error.
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

async function serveDevice() {
  const client = DeviceClient.fromConnectionString(process.env.DEVICE_CS, Mqtt);
  // setOptions is asynchronous when given a CA: open() must wait for it.
  await client.setOptions({ ca });
  client.on('disconnect', () => step('device.disconnect'));
  client.on('error', (e) => step('device.error', { error: String(e) }));
  client.onDeviceMethod('lockDoor', (req, res) => {
    step('device.method', { name: req.methodName, payload: req.payload });
    res.send(200, { locked: true, by: 'node' }, (err) => { if (err) step('device.method.send', { error: String(err) }); });
  });
  await withTimeout(client.open(), 15000, 'device open');
  // Methods are subscribed lazily after open; the test waits for the hub to see the subscription.
  step('device.ready');
  await new Promise((resolve) => { process.stdin.on('end', resolve); process.stdin.on('close', resolve); process.stdin.resume(); });
  await client.close();
}

async function invoke() {
  const svc = ServiceClient.fromConnectionString(serviceCs);
  const r = await withTimeout(svc.invokeDeviceMethod(deviceId, { methodName: 'lockDoor', payload: { from: 'node-service' }, responseTimeoutInSeconds: 10 }), 15000, 'invoke');
  check(r.result.status === 200, 'method status 200: ' + r.result.status);
  check(r.result.payload.locked === true, 'method payload: ' + JSON.stringify(r.result.payload));
  step('client.invokeDeviceMethod', { deviceId, status: r.result.status, payload: r.result.payload });
}

async function negative() {
  const registry = Registry.fromConnectionString(serviceCs);
  const client = await openDevice(registry, deviceId);
  client.onDeviceMethod('lockDoor', (req, res) => res.send(200, { locked: true }, () => {}));
  client.onDeviceMethod('hang', () => { /* never answers: the hub must time out */ });
  step('device.open');

  const twin = await withTimeout(client.getTwin(), 10000, 'getTwin');
  const bigReported = {};
  for (let i = 0; i < 10; i++) bigReported['k' + i] = 'z'.repeat(4000);
  const update = (patch) => new Promise((resolve, reject) => twin.properties.reported.update(patch, (e) => (e ? reject(e) : resolve())));
  // The SDK fails the update when the hub's twin response carries an errorCode body.
  const e0 = await withTimeout(rejects(update(bigReported), 'reported patch over 32 KB'), 10000, 'big reported');
  step('device.reported.update(over 32 KB)', { error: e0.message });
  await withTimeout(update({ afterBig: true }), 10000, 'reported after big');
  const seen = (await registry.getTwin(deviceId)).responseBody.properties.reported;
  check(seen.afterBig === true && seen.k0 === undefined, 'only the small reported patch applied');
  step('device.reported.update(after over 32 KB)');

  const badKey = Buffer.alloc(32, 7).toString('base64');
  const wrong = DeviceClient.fromConnectionString(`HostName=${host};DeviceId=${deviceId};SharedAccessKey=${badKey}`, Mqtt);
  await wrong.setOptions({ ca });
  const e1 = await withTimeout(rejects(wrong.open(), 'open with a wrong key'), 30000, 'wrong-key open');
  check(e1.constructor.name === 'UnauthorizedError', 'wrong key → UnauthorizedError, got ' + e1.constructor.name + ': ' + e1.message);
  step('device.open(wrong key)', { error: e1.constructor.name });

  const device = (await registry.get(deviceId)).responseBody;
  const key = device.authentication.symmetricKey.primaryKey;
  const expired = SharedAccessSignature.create(host, deviceId, key, Math.floor(Date.now() / 1000) - 60).toString();
  const old = DeviceClient.fromSharedAccessSignature(`HostName=${host};DeviceId=${deviceId};SharedAccessSignature=${expired}`, Mqtt);
  await old.setOptions({ ca });
  const e2 = await withTimeout(rejects(old.open(), 'open with an expired SAS'), 30000, 'expired open');
  check(e2.constructor.name === 'UnauthorizedError', 'expired SAS → UnauthorizedError, got ' + e2.constructor.name + ': ' + e2.message);
  step('device.open(expired sas)', { error: e2.constructor.name });

  const ro = ServiceClient.fromConnectionString(process.env.READ_CS);
  const e3 = await rejects(ro.invokeDeviceMethod(deviceId, { methodName: 'lockDoor', payload: null, responseTimeoutInSeconds: 5 }), 'registryRead invoking');
  check(e3.constructor.name === 'UnauthorizedError' && statusOf(e3) === 401, 'registryRead → 401, got ' + statusOf(e3));
  step('client.invokeDeviceMethod(registryRead policy)', { status: statusOf(e3) });

  const svc = ServiceClient.fromConnectionString(serviceCs);
  const offline = process.env.OFFLINE_ID;
  const e4 = await rejects(svc.invokeDeviceMethod(offline, { methodName: 'lockDoor', payload: null, responseTimeoutInSeconds: 5 }), 'offline device');
  const code4 = e4.response && e4.response.headers['iothub-errorcode'];
  check(statusOf(e4) === 404 && code4 === 'DeviceNotOnline' && String(e4.responseBody).includes('404103'), 'offline → 404 DeviceNotOnline (404103), got ' + statusOf(e4) + ' ' + code4 + ' ' + e4.responseBody);
  step('client.invokeDeviceMethod(offline)', { status: statusOf(e4), code: code4 });

  const started = Date.now();
  // 5 s: IoT Hub's minimum responseTimeoutInSeconds (fieldhub refuses less, issue 14 item 7).
  const e5 = await withTimeout(rejects(svc.invokeDeviceMethod(deviceId, { methodName: 'hang', payload: null, responseTimeoutInSeconds: 5 }), 'unanswered method'), 15000, 'hang');
  check(e5.constructor.name === 'GatewayTimeoutError' && statusOf(e5) === 504, 'unanswered → 504, got ' + statusOf(e5));
  check(Date.now() - started >= 4900, 'the hub waited for responseTimeoutInSeconds');
  step('client.invokeDeviceMethod(timeout)', { status: statusOf(e5), ms: Date.now() - started });

  const big = {};
  for (let i = 0; i < 10; i++) big['k' + i] = 'z'.repeat(4000);
  const e6 = await rejects(registry.updateTwin(deviceId, { properties: { desired: big } }, '*'), 'twin over 32 KB');
  check(e6.constructor.name === 'ArgumentError' && statusOf(e6) === 400, 'oversized twin → 400, got ' + statusOf(e6));
  check((await registry.getTwin(deviceId)).responseBody.properties.desired.k0 === undefined, 'oversized patch not applied');
  step('registry.updateTwin(over 32 KB)', { status: statusOf(e6) });

  // The hub kept serving: the same device still answers through the same connection.
  const r = await withTimeout(svc.invokeDeviceMethod(deviceId, { methodName: 'lockDoor', payload: null, responseTimeoutInSeconds: 10 }), 15000, 'invoke after errors');
  check(r.result.status === 200, 'method after errors: ' + r.result.status);
  step('client.invokeDeviceMethod(after errors)', { status: r.result.status });
  await client.close();
}

async function jobs() {
  const registry = Registry.fromConnectionString(serviceCs);
  const client = await openDevice(registry, deviceId);
  let calls = 0;
  client.onDeviceMethod('lockDoor', (req, res) => { calls += 1; res.send(200, { locked: true }, () => {}); });
  const twin = await client.getTwin();
  const desiredSeen = new Promise((resolve) => twin.on('properties.desired', (d) => { if (d.Building === 43) resolve(d); }));
  step('device.ready');

  const jc = JobClient.fromConnectionString(serviceCs);
  const waitJob = async (id) => {
    for (let i = 0; i < 300; i++) {
      const j = (await jc.getJob(id)).jobStatus;
      if (['completed', 'failed', 'cancelled'].includes(j.status)) return j;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('job did not finish: ' + id);
  };

  const mid = 'node-method-' + Date.now();
  const created = (await jc.scheduleDeviceMethod(mid, `deviceId = '${deviceId}'`, { methodName: 'lockDoor', payload: { by: 'job' }, responseTimeoutInSeconds: 10 }, new Date(), 60)).jobStatus;
  check(created.jobId === mid, 'scheduleDeviceMethod echoes jobId');
  const mj = await waitJob(mid);
  check(mj.status === 'completed', 'method job completed: ' + mj.status);
  check(mj.deviceJobStatistics.deviceCount === 1 && mj.deviceJobStatistics.succeededCount === 1, 'method job statistics');
  check(calls === 1, 'device saw the job method once');
  step('jobClient.scheduleDeviceMethod', { jobId: mid, stats: mj.deviceJobStatistics });

  const tid = 'node-twin-' + Date.now();
  await jc.scheduleTwinUpdate(tid, `deviceId = '${deviceId}'`, { etag: '*', tags: { floor: '3' }, properties: { desired: { Building: 43, Floor: 3 }, reported: {} } }, new Date(), 60);
  const tj = await waitJob(tid);
  check(tj.status === 'completed' && tj.deviceJobStatistics.succeededCount === 1, 'twin job completed');
  await withTimeout(desiredSeen, 10000, 'desired from twin job');
  step('jobClient.scheduleTwinUpdate', { jobId: tid, stats: tj.deviceJobStatistics });

  const fid = 'node-future-' + Date.now();
  await jc.scheduleDeviceMethod(fid, `deviceId = '${deviceId}'`, { methodName: 'lockDoor', payload: null, responseTimeoutInSeconds: 10 }, new Date(Date.now() + 3600 * 1000), 60);
  const before = (await jc.getJob(fid)).jobStatus;
  check(before.status === 'scheduled' || before.status === 'queued', 'future job scheduled: ' + before.status);
  const cancelled = (await jc.cancelJob(fid)).jobStatus;
  check(cancelled.status === 'cancelled', 'cancelJob → cancelled: ' + cancelled.status);
  step('jobClient.cancelJob', { jobId: fid });

  const q = jc.createQuery('scheduleDeviceMethod', 'completed', 100);
  const page = await q.next();
  check(Array.isArray(page.result) && page.result.some((j) => j.jobId === mid), 'job query lists the completed job');
  step('jobClient.createQuery', { n: page.result.length });

  const dq = registry.createQuery(`SELECT * FROM devices WHERE deviceId = '${deviceId}'`, 10);
  const twins = (await dq.nextAsTwin()).result;
  check(twins.length === 1 && twins[0].deviceId === deviceId, 'registry query');
  step('registry.createQuery');

  await client.close();
}

const modes = { 'device-service': deviceService, jobs, device: serveDevice, invoke, negative };
if (!modes[mode]) {
  console.log(JSON.stringify({ step: 'error', ok: false, error: 'unknown MODE ' + mode }));
  process.exit(2);
}
modes[mode]().then(
  () => { step('done'); process.exit(0); },
  (e) => { console.log(JSON.stringify({ step: 'error', ok: false, error: String(e && e.stack || e) })); process.exit(1); },
);
