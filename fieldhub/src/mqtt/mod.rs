//! The device endpoint: MQTT 3.1.1 over TLS (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub). This module accepts TCP
//! connections and spawns one task per connection ([`conn`]); [`rules`] holds the pure
//! protocol rules (usernames, topic isolation, property bags).

mod conn;
pub mod rules;

pub use conn::serve_stream;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::throttle::{Operation, Throttle};

/// Accepts device connections until `shutdown`; connection tasks are tracked by `tracker`.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    hub: Hub,
    throttle: Option<std::sync::Arc<Throttle>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let _ = tcp.set_nodelay(true);
                    // The new-connection quota counts connections as they arrive.
                    let admitted = throttle
                        .as_ref()
                        .is_none_or(|t| t.admit(Operation::NewConnection, 1.0).is_ok());
                    tracker.spawn(conn::run(hub.clone(), acceptor.clone(), tcp, admitted));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
