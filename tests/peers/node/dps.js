// Official Azure IoT provisioning SDK for Node.js (azure-iot-provisioning-device with the
// -mqtt transport and a symmetric-key group enrollment) against fieldhub's DPS, unmodified;
// the registered device then opens with the official device SDK at the assigned hub.
// Env: PROVISIONING_HOST (mqtts://HOST, port 8883 unless HOST carries one), ID_SCOPE,
//      GROUP_KEY (the enrollment group's primary key), REGISTRATION_ID, CA_FILE (fieldhub's
//      ca.pem; NODE_EXTRA_CA_CERTS must point at it too), MODEL_ID (optional, sent as payload),
//      EXPECT_DESIRED (JSON: desired properties the enrollment's initial twin sets).
// Prints one JSON line per checked step and exits non-zero on the first failure.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvisioningMqtt } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const env = process.env;
const ca = fs.readFileSync(env.CA_FILE, 'utf8');
const registrationId = env.REGISTRATION_ID;

function step(name, extra) {
  console.log(JSON.stringify(Object.assign({ step: name, ok: true }, extra || {})));
}
function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}
function withTimeout(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms))]);
}

// The device key of a group enrollment: HMAC-SHA256 of the registration id under the group key.
function deriveKey(groupKey, id) {
  return crypto.createHmac('SHA256', Buffer.from(groupKey, 'base64')).update(id, 'utf8').digest('base64');
}

async function main() {
  const key = deriveKey(env.GROUP_KEY, registrationId);
  const security = new SymmetricKeySecurityClient(registrationId, key);
  const client = ProvisioningDeviceClient.create(env.PROVISIONING_HOST, env.ID_SCOPE, new ProvisioningMqtt(), security);
  if (env.MODEL_ID) {
    client.setProvisioningPayload({ modelId: env.MODEL_ID });
  }
  const result = await withTimeout(client.register(), 30000, 'register');
  check(result.deviceId === registrationId, 'deviceId is the registration id');
  check(result.assignedHub, 'an assigned hub');
  step('provisioning.register', { assignedHub: result.assignedHub, deviceId: result.deviceId, status: result.status });

  // A wrong key is refused.
  const wrong = ProvisioningDeviceClient.create(env.PROVISIONING_HOST, env.ID_SCOPE, new ProvisioningMqtt(),
    new SymmetricKeySecurityClient(registrationId, deriveKey(env.GROUP_KEY, registrationId + '-x')));
  let refused = false;
  try {
    await withTimeout(wrong.register(), 30000, 'register with a wrong key');
  } catch (e) {
    refused = true;
  }
  check(refused, 'a wrong key is refused');
  step('provisioning.register.wrong-key-refused');

  const device = DeviceClient.fromConnectionString(
    `HostName=${result.assignedHub};DeviceId=${result.deviceId};SharedAccessKey=${key}`, Mqtt);
  await device.setOptions({ ca });
  await withTimeout(device.open(), 15000, 'device open');
  const twin = await withTimeout(device.getTwin(), 15000, 'getTwin');
  const expect = JSON.parse(env.EXPECT_DESIRED || '{}');
  for (const k of Object.keys(expect)) {
    check(JSON.stringify(twin.properties.desired[k]) === JSON.stringify(expect[k]), 'initial twin desired ' + k);
  }
  step('device.open+getTwin', { desired: twin.properties.desired });
  await device.close();
  step('done');
}

main().then(() => process.exit(0), (e) => {
  console.log(JSON.stringify({ step: 'error', ok: false, error: String(e && e.stack || e) }));
  process.exit(1);
});
