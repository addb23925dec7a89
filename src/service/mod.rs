//! A client of Azure IoT Hub's service REST API (<https://learn.microsoft.com/rest/api/iothub/>),
//! the back end's side of the hub: device identities, twins, direct methods, queries, jobs v2,
//! and a provisioning service's enrollment REST calls. `fieldctl` is built on it; nothing here
//! prints, parses arguments or knows about exit codes, so tests and other tools use it as is.
//!
//! - [`client`]: [`ServiceClient`], one hub's API over HTTPS with a per-request timeout and a
//!   SAS token signed locally for every request.
//! - [`auth`]: service connection strings and the SAS `Authorization` header.
//! - [`retry`]: throttled (429) requests retried with bounded backoff and jitter, each retry
//!   announced through a [`Notifier`].
//! - [`model`]: the API's JSON shapes (job requests and responses, devices, twins, methods).
//! - [`error`]: the hub's error envelopes ([`ServiceError`]) and [`ClientError`].
//! - [`acks`]: whether doors acknowledged desired properties (the Plug and Play convention).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fieldgate::service::{auth, ClientOptions, ServiceClient};
//!
//! let conn = auth::service_connection_string(
//!     "HostName=myhub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=…",
//! )?;
//! let client = ServiceClient::new(conn, ClientOptions::default())?;
//! let twin = client.get_twin("door-1").await?;
//! println!("{}", twin.device_id);
//! # Ok(())
//! # }
//! ```

pub mod acks;
pub mod auth;
pub mod client;
pub mod error;
pub mod model;
pub mod retry;
#[cfg(test)]
pub(crate) mod testhub;

pub use client::{ClientOptions, ServiceClient, API_VERSION, DPS_API_VERSION};
pub use error::{ClientError, ServiceError};
pub use retry::{human_delay, Notifier, RetryNotice, RetryPolicy};
