//! The device endpoint: MQTT 3.1.1 over TLS (reference §2). This module accepts TCP
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

/// Accepts device connections until `shutdown`; connection tasks are tracked by `tracker`.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    hub: Hub,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tracker.spawn(conn::run(hub.clone(), acceptor.clone(), tcp));
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
