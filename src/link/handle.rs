//! The cheap `Clone` side of a link: each call is a command with a oneshot reply over the
//! link's bounded command queue, the whole round trip bounded by the link's `op_timeout`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::{LinkError, LinkState};
use iothub_proto::Status;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, LinkError>>;

#[derive(Debug)]
pub(crate) enum Command {
    Respond {
        rid: String,
        status: Status,
        body: Vec<u8>,
        reply: Reply<()>,
    },
    PatchReported {
        body: Vec<u8>,
        reply: Reply<u64>,
    },
    Telemetry {
        body: Vec<u8>,
        reply: Reply<()>,
    },
}

/// Commands travel boxed: a channel allocates its first block of 32 slots up front, and
/// 32 × 64 bytes per door buys nothing for a few commands a second.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    device_id: Arc<str>,
    tx: mpsc::Sender<Box<Command>>,
    state: watch::Receiver<LinkState>,
    op_timeout: Duration,
}

impl LinkHandle {
    pub(crate) fn new(
        device_id: String,
        tx: mpsc::Sender<Box<Command>>,
        state: watch::Receiver<LinkState>,
        op_timeout: Duration,
    ) -> Self {
        LinkHandle {
            device_id: device_id.into(),
            tx,
            state,
            op_timeout,
        }
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Answers a method request. Fails with [`LinkError::MethodLost`] when the connection
    /// that carried the request has ended (the hub has failed the call already), and when the
    /// rid was already answered.
    pub async fn respond_method(
        &self,
        rid: &str,
        status: Status,
        body: Value,
    ) -> Result<(), LinkError> {
        let body = body.to_string().into_bytes();
        let rid = rid.to_string();
        self.call("method response", |reply| Command::Respond {
            rid,
            status,
            body,
            reply,
        })
        .await
    }

    /// Sends a reported-properties merge patch and waits for the hub's 204; returns the new
    /// reported `$version`. Queued while offline and re-sent if its connection dies before the
    /// acknowledgement; fails with [`LinkError::Timeout`] after `op_timeout`.
    pub async fn patch_reported(&self, patch: Value) -> Result<u64, LinkError> {
        let body = patch.to_string().into_bytes();
        self.call("reported patch", |reply| Command::PatchReported {
            body,
            reply,
        })
        .await
    }

    /// Sends a telemetry message (QoS 1). `Ok` once handed to a live connection; queued
    /// while offline until `op_timeout`. Not durable: door events go through the event store
    /// (`LinkSettings::events`), and this only when there is none.
    pub async fn send_telemetry(&self, body: Value) -> Result<(), LinkError> {
        let body = body.to_string().into_bytes();
        self.call("telemetry", |reply| Command::Telemetry { body, reply })
            .await
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// Whether the link is up, without copying its state (asked on every poll cycle).
    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == LinkState::Connected
    }

    /// A receiver that sees every state change (for health output and tests).
    pub fn watch_state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    async fn call<T>(
        &self,
        op: &'static str,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, LinkError> {
        let (reply, rx) = oneshot::channel();
        let round_trip = async {
            self.tx
                .send(Box::new(make(reply)))
                .await
                .map_err(|_| LinkError::Stopped)?;
            rx.await.map_err(|_| LinkError::Stopped)?
        };
        tokio::time::timeout(self.op_timeout, round_trip)
            .await
            .map_err(|_| LinkError::Timeout {
                op,
                after: self.op_timeout,
            })?
    }
}
