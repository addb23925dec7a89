"""Issue 14 through the official Python service SDK (azure-iot-hub): query projections keep
IoT Hub's property names (so they deserialize into the SDK's Twin fields), a twin-update job
without etag "*" refused, and a direct method with response_timeout_in_seconds below 5
refused. Prints one JSON line per checked step."""

import json
import os
import sys
import time
from datetime import datetime, timezone

from azure.iot.hub import IoTHubJobManager, IoTHubRegistryManager
from azure.iot.hub.models import (CloudToDeviceMethod, JobRequest, QuerySpecification, Twin,
                                  TwinProperties)

SERVICE_CS = os.environ["SERVICE_CS"]


def step(name, **extra):
    print(json.dumps({"step": name, "ok": True, **extra}), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError("check failed: " + what)


def status_of(call):
    try:
        call()
    except Exception as e:  # msrest HttpOperationError
        return getattr(getattr(e, "response", None), "status_code", None)
    raise AssertionError("expected a failure")


def main():
    registry = IoTHubRegistryManager(SERVICE_CS)

    # Item 1: the SDK deserializes rows into Twin by IoT Hub's names; `DeviceId` would be lost.
    res = registry.query_iot_hub(QuerySpecification(
        query="SELECT DeviceId, LastActivityTime FROM devices WHERE deviceId = 'q-1'"))
    check(len(res.items) == 1, "one row")
    check(res.items[0].device_id == "q-1", "deviceId deserialized: " + repr(res.items[0]))
    check(res.items[0].last_activity_time is not None, "lastActivityTime deserialized")
    step("registry.query_iot_hub(projection)")

    # Item 5: a twin-update job needs etag "*".
    jm = IoTHubJobManager(SERVICE_CS)
    jid = f"py-no-etag-{int(time.time() * 1000)}"
    st = status_of(lambda: jm.create_scheduled_job(jid, JobRequest(
        job_id=jid, type="scheduleUpdateTwin", query_condition="deviceId = 'q-1'",
        update_twin=Twin(properties=TwinProperties(desired={"Floor": 3})),
        start_time=datetime.now(timezone.utc), max_execution_time_in_seconds=60)))
    check(st == 400, f"no etag → 400, got {st}")
    step("jobManager.create_scheduled_job(twin, no etag)", status=st)

    # Item 7: response_timeout_in_seconds is 5 to 300.
    st = status_of(lambda: registry.invoke_device_method("q-1", CloudToDeviceMethod(
        method_name="lockDoor", response_timeout_in_seconds=3)))
    check(st == 400, f"timeout 3 → 400, got {st}")
    step("registry.invoke_device_method(response_timeout_in_seconds 3)", status=st)


def throttled():
    """Item 6, on a hub started with the S1 throttle profile: the 21st query within a minute
    is refused with 429."""
    registry = IoTHubRegistryManager(SERVICE_CS)
    status = None
    for _ in range(22):
        try:
            registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"))
        except Exception as e:  # msrest HttpOperationError
            status = getattr(getattr(e, "response", None), "status_code", None)
            break
    check(status == 429, f"throttled → 429, got {status}")
    step("registry.query_iot_hub(throttled)", status=status)


try:
    throttled() if os.environ.get("MODE") == "throttled" else main()
    step("done")
except Exception as e:  # report, then fail the process
    print(json.dumps({"step": "error", "ok": False, "error": repr(e)}), flush=True)
    sys.exit(1)
