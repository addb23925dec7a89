//! The IoT Hub service REST client used by `fieldctl`, and the CLI built on it.
//!
//! - [`client`]: [`ServiceClient`] — registry, twins, methods, queries, jobs v2 over HTTPS,
//!   SAS signed locally; [`retry`]: 429 retried with backoff and jitter.
//! - [`model`]: the API's JSON shapes (job requests and responses, devices, twins).
//! - [`error`]: hub error envelopes, [`CtlError`], exit statuses.
//! - [`auth`]: connection string sources and SAS headers.
//! - [`cli`]: the clap command line; [`args`]: parsing of typed values (`K=V`, `--start`).
//! - [`run()`]: dispatch of a parsed command; [`jobs`], [`commands`], [`provision`], [`dps`]:
//!   the commands; [`progress`] and [`output`]: what the operator sees.

pub mod acks;
pub mod args;
pub mod auth;
pub mod cli;
pub mod client;
pub mod commands;
pub mod dps;
pub mod error;
pub mod jobs;
pub mod model;
pub mod output;
pub mod progress;
pub mod provision;
pub mod retry;
pub mod run;
#[cfg(test)]
mod testhub;

pub use cli::Cli;
pub use client::{ClientError, ClientOptions, RetryPolicy, ServiceClient};
pub use error::{CtlError, Outcome, ServiceError};
pub use output::{Console, SharedBuf};
pub use provision::ProvisionItem;
pub use run::{run, run_with_client, Env};
