#!/usr/bin/env python3
"""Writes the hand-made seed inputs into corpus/<target>/seed-*. Run from fuzz/.

The fuzzers grow the corpus from these; `cargo fuzz cmin` keeps it small (see README.md).
"""
import json
import os
import struct


def put(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- MQTT 3.1.1 packets (client → hub) ------------------------------------------------------
def remaining(n):
    out = b""
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">H", len(x)) + x


def packet(kind, body):
    return bytes([kind]) + remaining(len(body)) + body


def publish(topic, payload=b"", qos=0, pkid=1):
    body = s(topic) + (struct.pack(">H", pkid) if qos else b"") + payload
    return packet(0x30 | (qos << 1), body)


def subscribe(*filters, pkid=1):
    return packet(0x82, struct.pack(">H", pkid) + b"".join(s(f) + bytes([q]) for f, q in filters))


def unsubscribe(*filters, pkid=2):
    return packet(0xA2, struct.pack(">H", pkid) + b"".join(s(f) for f in filters))


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
D = "fuzz-dev"
# Byte 0 of a hub_mqtt input: 0 = a valid CONNECT goes first (clean session), 2 = persistent
# session, 4 = with a Will, 1 = raw bytes only.
mqtt = {
    "subscribe": subscribe(("$iothub/methods/POST/#", 0), ("$iothub/twin/res/#", 1),
                           ("$iothub/twin/PATCH/properties/desired/#", 2)),
    "twin-get": subscribe(("$iothub/twin/res/#", 0)) + publish("$iothub/twin/GET/?$rid=1"),
    "reported": publish("$iothub/twin/PATCH/properties/reported/?$rid=2",
                        b'{"door":"closed","battery":3.31,"nested":{"a":1}}'),
    "telemetry": publish(f"devices/{D}/messages/events/a=1&b=x%20y", b"hello", qos=1, pkid=7),
    "method-res": publish("$iothub/methods/res/200/?$rid=5", b'{"result":"done"}'),
    "foreign": publish("devices/other/messages/events/", b"x"),
    "unsub-ping": unsubscribe("$iothub/methods/POST/#") + PINGREQ + DISCONNECT,
    "qos2": publish(f"devices/{D}/messages/events/", b"x", qos=2),
}
for name, body in mqtt.items():
    put("hub_mqtt", name, b"\x00" + body)
put("hub_mqtt", "persistent-will", b"\x06" + subscribe(("$iothub/methods/POST/#", 1)) + PINGREQ)
connect_body = (s("MQTT") + b"\x04" + bytes([0xC2]) + struct.pack(">H", 60) + s(D)
                + s(f"fuzz.hub/{D}/?api-version=2021-04-12") + s("SharedAccessSignature sr=x&sig=y&se=1"))
put("hub_mqtt", "raw-bad-token", b"\x01" + packet(0x10, connect_body) + PINGREQ)

# --- twin patches: steps separated by 0xFF, first byte 0 PATCH, 1 PUT, 2 reported --------------
def step(kind, doc):
    return bytes([kind]) + json.dumps(doc).encode()


twin = {
    "patch-put-reported": [
        step(0, {"tags": {"building": "43", "floor": 2}, "properties": {"desired": {"mode": "lockdown", "x": {"y": 1}}}}),
        step(2, {"door": "closed", "n": {"a": [1, 2, {"b": None}]}}),
        step(1, {"tags": {}, "properties": {"desired": {"x": {"z": True}}}}),
        step(0, {"properties": {"desired": {"x": None, "$version": 4, "$metadata": {}}}}),
    ],
    "bad-keys": [step(0, {"tags": {"a.b": 1}}), step(2, {"$x": 1}), step(2, {"a b": 1})],
    "deep": [step(0, {"properties": {"desired": json.loads('{"k":' * 11 + "1" + "}" * 11)}})],
    "big": [step(2, {f"k{i}": "z" * 4000 for i in range(9)}), step(2, {"k1": None})],
}
for name, steps in twin.items():
    put("hub_twin_patch", name, b"\xff".join(steps))

# --- queries and queryConditions -------------------------------------------------------------
queries = [
    "SELECT * FROM devices WHERE tags.building = '43'",
    "SELECT * FROM devices WHERE tags.building = '43' AND properties.reported.door = 'closed'",
    "SELECT COUNT() AS n FROM devices WHERE NOT IS_DEFINED(tags.zone)",
    "SELECT TOP 2 deviceId, tags.floor AS f FROM devices",
    "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND status = 'completed'",
    "deviceId IN ['door-01', 'door-02']",
    "deviceId NIN ['door-02'] OR (tags.floor >= 2 AND tags.floor <> -1.5e3)",
    "tags.floor NOT IN ('3', 4, true, null, [1,'a'])",
    "properties.desired.mode != \"normal\\u0041\\\\\"",
    "*",
    "NOT (false OR tags.missing = undefined)",
    '{"jobId":"j","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"lockDoor","payload":{}},'
    '"queryCondition":"tags.building = \'43\'","startTime":"2026-11-26T11:00:00Z","maxExecutionTimeInSeconds":600}',
    '{"type":"scheduleUpdateTwin","updateTwin":{"properties":{"desired":{"mode":"lockdown"}}},'
    '"queryCondition":"*","maxExecutionTimeInSeconds":0}',
]
for i, q in enumerate(queries):
    put("hub_query", f"{i:02}", q)

# --- config: the examples plus small variants ----------------------------------------------
for f in ("demo.toml", "rs485-site.toml"):
    with open(os.path.join("..", "config", f)) as src:
        put("config_parse", f, src.read())
put("config_parse", "minimal.toml", """[hub]
hostname = "h.example"
group_key = "AAAA"
[[bus]]
name = "b"
tcp = "127.0.0.1:502"
[profile.p.methods.lock]
action = "pulse_coil"
address = 0
value = false
seconds_from = "seconds"
default_duration = "5s"
max_duration = "30s"
[profile.p.desired.mode]
address = 10
enum = { 0 = "normal", 1 = "lockdown" }
[profile.p.reported.temp]
source = "input"
address = 1
type = "i16"
scale = 0.1
[[door]]
device_id = "d1"
bus = "b"
unit = 1
profile = "p"
group_key = true
""")

# --- desired patches: byte 0 = (version << 1) | full -----------------------------------------
desired = [
    {"locked": True, "mode": "lockdown", "floor": 3, "$version": 7},
    {"alarm": False, "setpoint": 21.5, "openMs": 5000, "gain": 0.25, "total": 18446744073709551615},
    {"offset": -3.5, "building": 65536, "floor": -6, "mode": "nope", "unmapped": {"a": 1}},
    {"setpoint": 21.55, "openMs": "5000", "locked": 1, "total": -1, "gain": 1e39, "x": None},
]
for i, d in enumerate(desired):
    put("desired_patch", f"{i}", bytes([(i * 2 + 1) << 1 | (i & 1)]) + json.dumps(d).encode())

# --- method payloads: 8-byte header (see fuzz_targets/method_payload.rs), then the payload ------
def header(kind, dtype=0, order=0, scale=0, flags=0, addr=0, b=30):
    return bytes([kind, dtype, order, scale, flags]) + struct.pack(">H", addr) + bytes([b])


methods = {
    "coil-fixed": header(0, dtype=1) + b"",
    "coil-payload": header(1, addr=3) + b'{"value": true}',
    "register-u16": header(2, dtype=0, flags=3, b=100) + b'{"value": 42}',
    "register-scaled": header(2, dtype=1, scale=1, flags=3, b=50) + b'{"value": -12.5}',
    "register-f32": header(2, dtype=6, order=3) + b'{"value": 0.1}',
    "register-u64": header(2, dtype=4, order=1) + b'{"value": 18446744073709551615}',
    "register-enum": header(2, dtype=0, flags=4) + b'{"value": "lockdown"}',
    "pulse-seconds": header(3, flags=8 | 16, b=60) + b'{"seconds": 2.5}',
    "pulse-default": header(3, flags=8) + b"  ",
    "pulse-array": header(3, flags=8) + b"[1]",
}
for name, data in methods.items():
    put("method_payload", name, data)

# --- inputs that crashed a target before its fix (regression seeds) --------------------------
put("method_payload", "regress-pulse-huge-seconds", header(3, flags=8) + b'{"seconds": 1e300}')
put("hub_query", "regress-job-huge-budget",
    '{"jobId":"j","type":"scheduleUpdateTwin","updateTwin":{},"queryCondition":"*",'
    '"maxExecutionTimeInSeconds":100000000000000000}')
put("hub_query", "regress-job-budget-overflow",
    '{"jobId":"j","type":"scheduleUpdateTwin","updateTwin":{},"queryCondition":"*",'
    '"maxExecutionTimeInSeconds":9000000000000000}')
put("hub_query", "regress-deep-parens", "(" * 2000 + "true" + ")" * 2000)
put("hub_query", "regress-deep-not", "NOT " * 1000 + "true")
put("hub_query", "regress-deep-list", "a IN [" + "[" * 2000 + "]" * 2000 + "]")
