//! fieldhub integration tests: real TLS sockets on 127.0.0.1:0, rumqttc as the device and
//! reqwest as the service client, each hub in its own temp dir.

#[path = "suite/binary.rs"]
mod binary;
#[path = "suite/mqtt_device.rs"]
mod mqtt_device;
#[path = "suite/mqtt_edges.rs"]
mod mqtt_edges;
#[path = "suite/rest_service.rs"]
mod rest_service;
#[path = "suite/restart.rs"]
mod restart;
#[path = "suite/robustness.rs"]
mod robustness;
#[path = "suite/throttling.rs"]
mod throttling;
#[path = "suite/util.rs"]
mod util;
