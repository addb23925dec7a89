//! Jobs v2 and queries through a running fieldhub: real TLS sockets, rumqttc devices that
//! answer methods, reqwest as the service client (the SDKs' REST calls), hubs in temp dirs.

mod cli;
mod crash;
mod fleet;
mod rest_api;
mod restart;
mod scale;
mod seed;
