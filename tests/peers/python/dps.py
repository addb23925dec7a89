"""Official Azure IoT provisioning SDK for Python (azure-iot-device's ProvisioningDeviceClient
with a symmetric-key group enrollment) against fieldhub's DPS, unmodified; the registered device
then connects with the official device SDK at the assigned hub.

Env: PROVISIONING_HOST (dialled on 8883), ID_SCOPE, REGISTRATION_ID, CA_FILE (fieldhub's ca.pem),
MODEL_ID (optional, sent as payload), EXPECT_DESIRED (JSON: desired properties the enrollment's
initial twin sets), and either GROUP_KEY (a symmetric-key group's primary key) or CERT_FILE and
KEY_FILE (a device certificate, CN = REGISTRATION_ID, signed by an X.509 group's CA).
Prints one JSON line per checked step and exits non-zero on the first failure.
"""
import base64
import hashlib
import hmac
import json
import os
import sys

from azure.iot.device import IoTHubDeviceClient, ProvisioningDeviceClient, X509

ENV = os.environ
CA = open(ENV["CA_FILE"]).read()
REG = ENV["REGISTRATION_ID"]


def step(name, **extra):
    print(json.dumps({"step": name, "ok": True, **extra}), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError("check failed: " + what)


def derive(group_key, registration_id):
    """The device key of a group enrollment: HMAC-SHA256 of the id under the group key."""
    mac = hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def provisioning(key):
    return ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=ENV["PROVISIONING_HOST"], registration_id=REG,
        id_scope=ENV["ID_SCOPE"], symmetric_key=key, server_verification_cert=CA)


def main():
    if ENV.get("CERT_FILE"):
        x509 = X509(cert_file=ENV["CERT_FILE"], key_file=ENV["KEY_FILE"])
        client = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host=ENV["PROVISIONING_HOST"], registration_id=REG,
            id_scope=ENV["ID_SCOPE"], x509=x509, server_verification_cert=CA)
    else:
        key = derive(ENV["GROUP_KEY"], REG)
        client = provisioning(key)
    if ENV.get("MODEL_ID"):
        client.provisioning_payload = {"modelId": ENV["MODEL_ID"]}
    result = client.register()
    check(result.status == "assigned", "status assigned, got %r" % result.status)
    state = result.registration_state
    check(state.device_id == REG, "deviceId is the registration id")
    step("provisioning.register", assignedHub=state.assigned_hub, deviceId=state.device_id,
         substatus=state.sub_status)

    if ENV.get("CERT_FILE"):
        device = IoTHubDeviceClient.create_from_x509_certificate(
            x509=X509(cert_file=ENV["CERT_FILE"], key_file=ENV["KEY_FILE"]),
            hostname=state.assigned_hub, device_id=state.device_id,
            server_verification_cert=CA)
    else:
        device = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id,
            server_verification_cert=CA)
    device.connect()
    twin = device.get_twin()
    for k, v in json.loads(ENV.get("EXPECT_DESIRED", "{}")).items():
        check(twin["desired"].get(k) == v, "initial twin desired %s" % k)
    step("device.connect+get_twin", desired=twin["desired"])
    device.shutdown()
    step("done")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line the Rust test can show
        print(json.dumps({"step": "error", "ok": False, "error": repr(e)}), flush=True)
        sys.exit(1)
