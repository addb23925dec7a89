//! `fieldctl`, the operator's command line, built on the service client in
//! [`crate::service`]: argument parsing, the commands, and what the operator sees.
//!
//! - [`cli`]: the clap command line; [`args`]: parsing of typed values (`K=V`, `--start`).
//! - [`hub`]: which hub (`--hub`, `--hub-file`, `IOTHUB_CONNECTION_STRING`).
//! - [`run()`]: dispatch of a parsed command; [`context`]: what a command runs with and how it
//!   prints its result.
//! - The commands, one module per family: [`jobs`], [`invoke`], [`twin`], [`devices`] (with
//!   [`provision`]), [`dps`].
//! - [`progress`] and [`output`]: what the operator sees; [`error`]: [`CtlError`], exit
//!   statuses, and the reading of hub errors per command.

pub mod args;
pub mod cli;
pub mod context;
pub mod devices;
pub mod dps;
pub mod error;
pub mod hub;
pub mod invoke;
pub mod jobs;
pub mod output;
pub mod progress;
pub mod provision;
pub mod run;
pub mod twin;

pub use cli::Cli;
pub use context::Env;
pub use error::{CtlError, Outcome};
pub use output::{Console, SharedBuf};
pub use provision::ProvisionItem;
pub use run::{run, run_with_client};
