// Reference bridge for fieldgate's benchmarks (issue 7): Modbus door controllers presented
// as IoT Hub devices the way a user following the Azure IoT Hub Node.js tutorial would build
// it — one official device client (azure-iot-device + azure-iot-device-mqtt) per door,
// `onDeviceMethod('lockDoor')` → modbus-serial writeCoil + readCoils on the door's unit, and
// reported properties from polling each door every second.
//
// Usage: node reference-bridge.js CONFIG.json
//   { "hostName": "localhost", "gatewayHostName": "localhost:PORT", "caFile": "ca.pem",
//     "pollMs": 1000, "doors": [{ "id", "key", "host", "port", "unit" }] }
// GatewayHostName moves only the socket to fieldhub's port (reference §6a); the private CA is
// given with setOptions({ca}). One Modbus TCP connection per controller (host:port), its
// requests serialized, as modbus-serial keeps a single unit id per client.
// Prints "ready N" once every door's client is open, then runs until SIGTERM/SIGINT.
'use strict';
const fs = require('fs');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const ModbusRTU = require('modbus-serial');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const ca = fs.readFileSync(cfg.caFile, 'utf8');
const OPEN_PARALLEL = 10;
const MODBUS_TIMEOUT_MS = 1000;

// One Modbus TCP client per controller; calls run one at a time in arrival order.
const controllers = new Map();
function controller(host, port) {
  const key = `${host}:${port}`;
  let c = controllers.get(key);
  if (!c) {
    const client = new ModbusRTU();
    client.setTimeout(MODBUS_TIMEOUT_MS);
    c = { client, queue: client.connectTCP(host, { port }) };
    controllers.set(key, c);
  }
  return c;
}
function modbus(door, fn) {
  const c = controller(door.host, door.port);
  const run = c.queue.then(() => {
    c.client.setID(door.unit);
    return fn(c.client);
  });
  c.queue = run.catch(() => {});
  return run;
}

async function lockDoor(door) {
  await modbus(door, (m) => m.writeCoil(0, true));
  const r = await modbus(door, (m) => m.readCoils(0, 1));
  return r.data[0] === true;
}

async function poll(door) {
  const coils = await modbus(door, (m) => m.readCoils(0, 1));
  const inputs = await modbus(door, (m) => m.readInputRegisters(0, 2));
  const states = ['closed', 'open', 'forced', 'held'];
  return {
    locked: coils.data[0] === true,
    doorState: states[inputs.data[0]] || inputs.data[0],
    batteryVoltage: inputs.data[1] / 100,
  };
}

function startPolling(door, twin) {
  let last = '';
  let busy = false;
  setInterval(async () => {
    if (busy) return; // a slow cycle is not stacked on itself
    busy = true;
    try {
      const state = await poll(door);
      const text = JSON.stringify(state);
      if (text !== last) {
        // Only what changed goes to the hub, as fieldgate does (no patch every second).
        await new Promise((resolve, reject) =>
          twin.properties.reported.update(state, (err) => (err ? reject(err) : resolve())));
        last = text;
      }
    } catch (e) {
      console.error(`${door.id}: poll failed: ${e.message}`);
    } finally {
      busy = false;
    }
  }, cfg.pollMs);
}

async function openDoor(door) {
  const cs = `HostName=${cfg.hostName};DeviceId=${door.id};SharedAccessKey=${door.key};GatewayHostName=${cfg.gatewayHostName}`;
  const client = Client.fromConnectionString(cs, Mqtt);
  // setOptions is asynchronous when given `ca` (it first tries to read it as a file name):
  // opening before it settles connects without the CA, now and then.
  await client.setOptions({ ca });
  client.on('error', (e) => console.error(`${door.id}: ${e.message}`));
  await client.open();
  client.onDeviceMethod('lockDoor', (req, res) => {
    lockDoor(door).then(
      (locked) => res.send(locked ? 200 : 500, { locked }, () => {}),
      (e) => res.send(504, { error: e.message }, () => {}));
  });
  const twin = await client.getTwin();
  startPolling(door, twin);
  return client;
}

async function main() {
  const clients = [];
  let next = 0;
  async function worker() {
    while (next < cfg.doors.length) {
      const door = cfg.doors[next++];
      clients.push(await openDoor(door));
    }
  }
  await Promise.all(Array.from({ length: OPEN_PARALLEL }, worker));
  console.log(`ready ${clients.length}`);
  const stop = () => {
    Promise.all(clients.map((c) => c.close().catch(() => {}))).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(`reference bridge failed: ${e.stack || e}`);
  process.exit(1);
});
