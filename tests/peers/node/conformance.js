// Official Azure IoT SDKs for Node.js against fieldhub (or any IoT Hub), unmodified.
// Env: SERVICE_CS (iothubowner connection string, HostName=localhost → port 443),
//      CA_FILE (fieldhub's ca.pem; NODE_EXTRA_CA_CERTS must point at it too for the service SDK),
//      DEVICE_ID (created here), MODE = "device-service" (issue 2) | "jobs" (issue 4).
// Prints one JSON line per checked step ({"step":…,"ok":true,…}) and exits non-zero on the
// first failure, so the Rust test that runs it sees exactly which step broke.
'use strict';
const fs = require('fs');
const { Registry, Client: ServiceClient, JobClient } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

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
  client.setOptions({ ca });
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
  step('device.getTwin', { desiredVersion: twin.properties.desired.$version });

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
  step('jobClient.scheduleDeviceMethod', { stats: mj.deviceJobStatistics });

  const tid = 'node-twin-' + Date.now();
  await jc.scheduleTwinUpdate(tid, `deviceId = '${deviceId}'`, { etag: '*', tags: { floor: '3' }, properties: { desired: { Building: 43, Floor: 3 }, reported: {} } }, new Date(), 60);
  const tj = await waitJob(tid);
  check(tj.status === 'completed' && tj.deviceJobStatistics.succeededCount === 1, 'twin job completed');
  await withTimeout(desiredSeen, 10000, 'desired from twin job');
  step('jobClient.scheduleTwinUpdate', { stats: tj.deviceJobStatistics });

  const fid = 'node-future-' + Date.now();
  await jc.scheduleDeviceMethod(fid, `deviceId = '${deviceId}'`, { methodName: 'lockDoor', payload: null, responseTimeoutInSeconds: 10 }, new Date(Date.now() + 3600 * 1000), 60);
  const before = (await jc.getJob(fid)).jobStatus;
  check(before.status === 'scheduled' || before.status === 'queued', 'future job scheduled: ' + before.status);
  const cancelled = (await jc.cancelJob(fid)).jobStatus;
  check(cancelled.status === 'cancelled', 'cancelJob → cancelled: ' + cancelled.status);
  step('jobClient.cancelJob');

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

(mode === 'jobs' ? jobs() : deviceService()).then(
  () => { step('done'); process.exit(0); },
  (e) => { console.log(JSON.stringify({ step: 'error', ok: false, error: String(e && e.stack || e) })); process.exit(1); },
);
