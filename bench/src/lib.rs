//! fieldgate-bench: fieldgate measured against the RS-485 line's physical limit and against
//! the usual SDK-based bridge. [`run`] starts an in-process fieldhub and doorsims,
//! runs each workload with the gateway as a separate process (and the Node.js reference
//! bridge where the issue asks for a comparison), and returns a [`report::Report`].
//!
//! Workloads: 1 [`saturation`], 2 [`latency`], 3 and 4 [`footprint`], 5 [`storm`],
//! 6 [`fanout`] (jobs through the hub's engine: [`jobs`]), 7 [`deadunits`], 8 [`cost`] (CPU
//! per Modbus transaction against the [`floor`]), 9 [`linkmem`] (KB per door against the
//! link floor), 10 [`churn`] (RSS over token renewal rounds).
#![forbid(unsafe_code)]
#![warn(rust_2018_idioms, missing_debug_implementations)]

pub mod bridges;
pub mod child;
pub mod churn;
pub mod cost;
pub mod deadunits;
pub mod env;
pub mod fanout;
pub mod floor;
pub mod footprint;
pub mod gateway;
pub mod jobs;
pub mod latency;
pub mod linkmem;
pub mod placement;
pub mod plan;
pub mod procstat;
pub mod pypeer;
pub mod report;
pub mod saturation;
pub mod storm;

pub use plan::{run, Options};
