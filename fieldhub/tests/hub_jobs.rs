//! Jobs v2 and queries through a running fieldhub: real TLS sockets, rumqttc devices that
//! answer methods, reqwest as the service client (the SDKs' REST calls), hubs in temp dirs.

#[allow(dead_code)]
#[path = "suite/util.rs"]
mod util;

#[path = "hub_jobs/cli.rs"]
mod cli;
#[path = "hub_jobs/crash.rs"]
mod crash;
#[path = "hub_jobs/fleet.rs"]
mod fleet;
#[path = "hub_jobs/rest_api.rs"]
mod rest_api;
#[path = "hub_jobs/restart.rs"]
mod restart;
#[path = "hub_jobs/scale.rs"]
mod scale;
#[path = "hub_jobs/seed.rs"]
mod seed;
