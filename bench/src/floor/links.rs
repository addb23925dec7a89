//! The link floor: N idle MQTT connections to the hub over rustls, each authenticated with a
//! device SAS token and subscribed to what a door subscribes to (methods, twin responses,
//! desired patches), with the client options the gateway's links use. One task per
//! connection drives its event loop; nothing else runs. Prints `links up N` once every
//! connection has its three SUBACKs.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use iothub_proto::{sas, topics};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration};
use rustls::{ClientConfig, RootCertStore};

/// What the gateway's links set (src/link/conn.rs): packet limit, in-flight window, the
/// initial size of the decoded-event buffer.
const MAX_PACKET: usize = 300 * 1024;
const INFLIGHT: u16 = 16;
const EVENT_BUFFER: usize = 4;
const REQUEST_QUEUE: usize = 16;

const FILTERS: [&str; 3] = [
    topics::METHODS_FILTER,
    topics::TWIN_RES_FILTER,
    topics::DESIRED_FILTER,
];

/// The floor's input, written by the harness as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkFloor {
    /// TLS and SAS host name (the gateway's, without the port).
    pub host_name: String,
    pub port: u16,
    pub ca_file: PathBuf,
    pub keep_alive_secs: u64,
    /// (device id, base64 key)
    pub doors: Vec<(String, String)>,
}

/// Runs until killed.
pub async fn run(f: LinkFloor) -> anyhow::Result<()> {
    let tls = client_config(&f)?;
    let subscribed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::with_capacity(f.doors.len());
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 24 * 3600;
    for (id, key) in &f.doors {
        let password = sas::generate(&sas::device_resource(&f.host_name, id), key, None, expiry)
            .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        let mut opts = MqttOptions::new(id.clone(), f.host_name.clone(), f.port);
        opts.set_transport(rumqttc::Transport::tls_with_config(
            TlsConfiguration::Rustls(tls.clone()),
        ))
        .set_credentials(
            format!("{}/{id}/?api-version=2021-04-12", f.host_name),
            password,
        )
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(f.keep_alive_secs.max(1)))
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(INFLIGHT);
        let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_QUEUE);
        eventloop.state.events = VecDeque::with_capacity(EVENT_BUFFER);
        for filter in FILTERS {
            client.try_subscribe(filter, QoS::AtLeastOnce)?;
        }
        tokio::spawn(drive(eventloop, subscribed.clone()));
        clients.push(client);
    }
    let want = f.doors.len() * FILTERS.len();
    while subscribed.load(Ordering::Relaxed) < want {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("links up {}", f.doors.len());
    // The clients must outlive the event loops: dropping one ends its connection.
    std::future::pending::<()>().await;
    drop(clients);
    Ok(())
}

/// Polls one connection's event loop for ever, counting its SUBACKs; a lost connection is
/// retried after a second (rumqttc reconnects on the next poll).
async fn drive(mut eventloop: EventLoop, subscribed: Arc<AtomicUsize>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                subscribed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("link: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let events = &mut eventloop.state.events;
        if events.is_empty() && events.capacity() > EVENT_BUFFER {
            events.shrink_to(EVENT_BUFFER);
        }
    }
}

/// One client config for every connection, trusting only the hub's CA.
fn client_config(f: &LinkFloor) -> anyhow::Result<Arc<ClientConfig>> {
    let pem = std::fs::read(&f.ca_file).with_context(|| format!("{}", f.ca_file.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert?)?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
