//! One task per door owning its MQTT link to IoT Hub: TLS, SAS renewal, reconnect with backoff, connect pacing.
