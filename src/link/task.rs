//! The link task: dials, runs the reconnection flow, multiplexes handle commands with hub
//! traffic, renews the token by reconnecting, and backs off after failures.
//!
//! rumqttc's `EventLoop` is driven by a poller sub-task owned by this task (aborted when the
//! connection ends), because `EventLoop::poll` must not be cancelled mid-write by a `select!`.
//! Each connection gets a fresh client and event loop: the password changes on every
//! connect, and unacknowledged work lives in [`Session`], not in rumqttc.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use iothub_proto::topics;

use super::backoff::Backoff;
use super::handle::{Command, Reply};
use super::session::{Inbound, PendingPatch, Session};
use super::{auth, tls, ConnectPacer, LinkError, LinkEvent, LinkSettings, LinkState};
use crate::metrics::Metrics;

/// IoT Hub's limits (128 KB method payloads, 256 KB telemetry) plus MQTT framing.
const MAX_PACKET: usize = 300 * 1024;
/// How long a clean DISCONNECT may take before the socket is just dropped.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
const SUBSCRIPTIONS: [&str; 3] = [
    topics::METHODS_FILTER,
    topics::TWIN_RES_FILTER,
    topics::DESIRED_FILTER,
];

/// Work waiting for a connection.
#[derive(Debug)]
enum Queued {
    Patch(PendingPatch),
    Telemetry { body: Vec<u8>, reply: Reply<()> },
}

/// Why a connection ended.
enum End {
    Renew,
    Lost(String),
    Shutdown,
}

/// One live connection: the client half, the poller's output and the poller itself.
struct Conn {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, ConnectionError>>,
    poller: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

pub(crate) struct Link {
    s: LinkSettings,
    host_name: String,
    port: u16,
    pacer: ConnectPacer,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    cmds: mpsc::Receiver<Command>,
    cmds_open: bool,
    events: mpsc::Sender<LinkEvent>,
    state: watch::Sender<LinkState>,
    session: Session,
    backlog: VecDeque<Queued>,
    backoff: Backoff,
}

impl Link {
    pub(crate) fn new(
        s: LinkSettings,
        pacer: ConnectPacer,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::Sender<LinkEvent>,
        state: watch::Sender<LinkState>,
    ) -> Self {
        let (host_name, port) = auth::split_host(&s.host);
        Link {
            host_name: host_name.to_string(),
            port,
            backoff: Backoff::new(s.backoff),
            s,
            pacer,
            metrics,
            shutdown,
            cmds,
            cmds_open: true,
            events,
            state,
            session: Session::default(),
            backlog: VecDeque::new(),
        }
    }

    fn device(&self) -> &str {
        &self.s.device_id
    }

    pub(crate) async fn run(mut self) {
        let up = self.metrics.link_up.with_label_values(&[self.device()]);
        up.set(0);
        let tls = match self
            .s
            .check_offline()
            .and_then(|()| tls::client_config(self.s.extra_ca_pem.as_deref()))
        {
            Ok(t) => t,
            Err(e) => {
                warn!(device = %self.s.device_id, reason = %e, "door link cannot start");
                self.stop(Some(e.to_string()));
                return;
            }
        };
        let mut after_failure = false;
        loop {
            let attempt = self.backoff.failures() + 1;
            self.state.send_replace(LinkState::Connecting { attempt });
            let pacer = self.pacer.clone();
            if !self.offline_until(pacer.acquire()).await {
                break;
            }
            let started = Instant::now();
            let end = match self.connect(&tls).await {
                Err(reason) => End::Lost(reason),
                Ok(conn) => {
                    let end = self.serve(conn, after_failure).await;
                    up.set(0);
                    self.backoff.connection_ended(started.elapsed());
                    for p in self.session.connection_lost().into_iter().rev() {
                        self.backlog.push_front(Queued::Patch(p));
                    }
                    end
                }
            };
            match end {
                End::Shutdown => break,
                End::Renew => {
                    self.metrics
                        .token_renewals
                        .with_label_values(&[self.device()])
                        .inc();
                    info!(device = %self.s.device_id, host = %self.host_name, "renewing SAS token");
                    after_failure = false;
                }
                End::Lost(reason) => {
                    after_failure = true;
                    let delay = self.backoff.next_delay(rand::random::<f64>());
                    warn!(device = %self.s.device_id, host = %self.host_name, reason = %reason, retry_in = ?delay, "door link down");
                    self.state.send_replace(LinkState::Disconnected {
                        reason,
                        retry_in: delay,
                    });
                    if !self.offline_until(sleep(delay)).await {
                        break;
                    }
                }
            }
        }
        self.stop(None);
    }

    fn stop(&mut self, reason: Option<String>) {
        self.metrics
            .link_up
            .with_label_values(&[self.device()])
            .set(0);
        for q in self.backlog.drain(..) {
            match q {
                Queued::Patch(p) => drop(p.reply.send(Err(LinkError::Stopped))),
                Queued::Telemetry { reply, .. } => drop(reply.send(Err(LinkError::Stopped))),
            }
        }
        self.session.connection_lost();
        self.state.send_replace(LinkState::Stopped { reason });
    }

    /// Waits for `fut` while serving commands as an offline link does; `false` on shutdown.
    async fn offline_until(&mut self, fut: impl std::future::Future<Output = ()>) -> bool {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = &mut fut => return true,
                cmd = self.cmds.recv(), if self.cmds_open => match cmd {
                    Some(cmd) => self.offline_command(cmd),
                    None => self.cmds_open = false,
                },
            }
        }
    }

    fn offline_command(&mut self, cmd: Command) {
        match cmd {
            Command::Respond { rid, reply, .. } => self.method_lost(rid, reply),
            Command::PatchReported { body, reply } => {
                self.enqueue(Queued::Patch(PendingPatch { body, reply }))
            }
            Command::Telemetry { body, reply } => self.enqueue(Queued::Telemetry { body, reply }),
        }
    }

    fn enqueue(&mut self, q: Queued) {
        self.backlog.retain(|q| match q {
            Queued::Patch(p) => !p.reply.is_closed(),
            Queued::Telemetry { reply, .. } => !reply.is_closed(),
        });
        if self.backlog.len() < self.s.queue.max(1) {
            self.backlog.push_back(q);
            return;
        }
        match q {
            Queued::Patch(p) => drop(p.reply.send(Err(LinkError::Busy))),
            Queued::Telemetry { reply, .. } => drop(reply.send(Err(LinkError::Busy))),
        }
    }

    fn method_lost(&self, rid: String, reply: Reply<()>) {
        warn!(device = %self.s.device_id, rid = %rid, "method response dropped: its connection is gone");
        self.metrics
            .link_method_responses_lost
            .with_label_values(&[self.device()])
            .inc();
        let _ = reply.send(Err(LinkError::MethodLost { rid }));
    }

    /// Builds a fresh client with a fresh token and starts its poller.
    async fn connect(&mut self, tls: &Arc<ClientConfig>) -> Result<Conn, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let password = auth::password(
            &self.host_name,
            &self.s.device_id,
            &self.s.key,
            now,
            self.s.token_lifetime,
        )
        .map_err(|e| e.to_string())?;
        let mut opts =
            MqttOptions::new(self.s.device_id.clone(), self.host_name.clone(), self.port);
        opts.set_credentials(auth::username(&self.host_name, &self.s.device_id), password)
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(self.s.keepalive.as_secs().max(1)))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        let cap = self.s.queue.max(1) * 4;
        let (client, mut eventloop) = AsyncClient::new(opts, cap);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(self.s.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(net);
        let (tx, events) = mpsc::channel(cap);
        let poller = tokio::spawn(poll(eventloop, tx));
        Ok(Conn {
            client,
            events,
            poller,
        })
    }

    /// Runs one connection from CONNACK to its end.
    async fn serve(&mut self, mut conn: Conn, after_failure: bool) -> End {
        let setup_deadline = Instant::now() + self.s.connect_timeout;
        let mut renew_at = None;
        let mut subacks = 0;
        loop {
            let online = renew_at.is_some();
            if online && self.session.resync && !self.session.twin_get_outstanding() {
                let topic = self.session.twin_get();
                if conn
                    .client
                    .try_publish(topic, QoS::AtMostOnce, false, Vec::new())
                    .is_err()
                {
                    self.session.resync = true;
                }
            }
            let event = tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.disconnect(&mut conn, "shutdown").await;
                    self.lost(online, "shutdown".into());
                    return End::Shutdown;
                }
                () = sleep_until(setup_deadline), if !online => {
                    return End::Lost(format!("no twin within {:?} of dialling", self.s.connect_timeout));
                }
                () = sleep_until(renew_at.unwrap_or(setup_deadline)), if online => {
                    self.disconnect(&mut conn, "token renewal").await;
                    self.lost(online, "SAS token renewal".into());
                    return End::Renew;
                }
                cmd = self.cmds.recv(), if self.cmds_open => {
                    match cmd {
                        Some(cmd) if online => self.online_command(&conn.client, cmd),
                        // Method requests arrive as soon as the hub has our subscription,
                        // possibly before the twin: their answers must go out on this connection.
                        Some(cmd @ Command::Respond { .. }) => self.online_command(&conn.client, cmd),
                        Some(cmd) => self.offline_command(cmd),
                        None => self.cmds_open = false,
                    }
                    continue;
                }
                event = conn.events.recv() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(e)) => return self.lost(online, connection_error(&e)),
                None => return self.lost(online, "connection closed".into()),
            };
            match event {
                Event::Incoming(Packet::ConnAck(_)) => {
                    debug!(device = %self.s.device_id, "CONNACK");
                    for filter in SUBSCRIPTIONS {
                        if let Err(e) = conn.client.try_subscribe(filter, QoS::AtLeastOnce) {
                            return End::Lost(format!("subscribe: {e}"));
                        }
                    }
                }
                Event::Incoming(Packet::SubAck(ack)) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        return End::Lost("hub refused a subscription".into());
                    }
                    subacks += 1;
                    if subacks == SUBSCRIPTIONS.len() {
                        let topic = self.session.twin_get();
                        if let Err(e) =
                            conn.client
                                .try_publish(topic, QoS::AtMostOnce, false, Vec::new())
                        {
                            return End::Lost(format!("twin GET: {e}"));
                        }
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    match self.session.inbound(&p.topic, &p.payload) {
                        Inbound::Method { name, rid, payload } => {
                            self.method_request(&conn.client, name, rid, payload)
                        }
                        Inbound::Desired { version, patch } => self.desired(version, patch),
                        Inbound::Twin { twin, newer } => {
                            if !online {
                                renew_at =
                                    Some(Instant::now() + auth::renew_after(self.s.token_lifetime));
                                self.connected(after_failure);
                                self.flush_backlog(&conn.client);
                            }
                            if !self.deliver(LinkEvent::Connected { twin }).await {
                                self.session.resync = true;
                            }
                            for (version, patch) in newer {
                                self.desired(version, patch);
                            }
                        }
                        Inbound::TwinFailed(reason) => return self.lost(online, reason),
                        Inbound::Handled => {}
                        Inbound::Dropped(why) => {
                            debug!(device = %self.s.device_id, reason = %why, "inbound publish dropped")
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Tells the bridge a connection that had delivered `Connected` is gone.
    fn lost(&mut self, online: bool, reason: String) -> End {
        if online {
            let _ = self.events.try_send(LinkEvent::Disconnected {
                reason: reason.clone(),
            });
        }
        End::Lost(reason)
    }

    fn connected(&mut self, after_failure: bool) {
        if after_failure {
            self.metrics
                .link_reconnects
                .with_label_values(&[self.device()])
                .inc();
        }
        self.metrics
            .link_up
            .with_label_values(&[self.device()])
            .set(1);
        self.state.send_replace(LinkState::Connected);
        info!(device = %self.s.device_id, host = %self.host_name, "door link up");
    }

    /// A full twin matters too much to drop on a momentarily full queue: wait up to
    /// `op_timeout` for room; `false` means the bridge is not draining (resync later).
    async fn deliver(&mut self, event: LinkEvent) -> bool {
        matches!(
            timeout(self.s.op_timeout, self.events.send(event)).await,
            Ok(Ok(()))
        )
    }

    fn desired(&mut self, version: u64, patch: serde_json::Value) {
        if let Err(e) = self
            .events
            .try_send(LinkEvent::DesiredPatch { version, patch })
        {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                warn!(device = %self.s.device_id, version, "event queue full: desired patch dropped, fetching the twin again");
                self.session.resync = true;
            }
        }
    }

    fn method_request(
        &mut self,
        client: &AsyncClient,
        name: String,
        rid: String,
        payload: Vec<u8>,
    ) {
        let event = LinkEvent::MethodRequest {
            name: name.clone(),
            rid: rid.clone(),
            payload,
        };
        if self.events.try_send(event).is_ok() {
            return;
        }
        // Never silence: a request the bridge cannot take is refused now, before the hub's timeout.
        warn!(device = %self.s.device_id, method = %name, "event queue full: answering 503");
        self.session.take_method(&rid);
        let body = json!({"message": "gateway busy, retry later"}).to_string();
        let _ = client.try_publish(
            topics::method_response(503, &rid),
            QoS::AtMostOnce,
            false,
            body,
        );
        self.metrics
            .methods
            .with_label_values(&[&name, "503"])
            .inc();
    }

    fn online_command(&mut self, client: &AsyncClient, cmd: Command) {
        self.session.prune_abandoned();
        match cmd {
            Command::Respond {
                rid,
                status,
                body,
                reply,
            } => {
                if self.session.take_method(&rid).is_none() {
                    return self.method_lost(rid, reply);
                }
                let r = client
                    .try_publish(
                        topics::method_response(status, &rid),
                        QoS::AtMostOnce,
                        false,
                        body,
                    )
                    .map_err(|_| LinkError::Busy);
                let _ = reply.send(r);
            }
            Command::PatchReported { body, reply } => {
                self.publish_patch(client, PendingPatch { body, reply })
            }
            Command::Telemetry { body, reply } => {
                let topic = topics::telemetry(&self.s.device_id);
                let r = client
                    .try_publish(topic, QoS::AtLeastOnce, false, body)
                    .map_err(|_| LinkError::Busy);
                let _ = reply.send(r);
            }
        }
    }

    fn publish_patch(&mut self, client: &AsyncClient, patch: PendingPatch) {
        let body = patch.body.clone();
        let topic = self.session.reported_patch(patch);
        // On a full request channel the patch stays pending: re-sent on the next connection
        // or failed by its caller's timeout.
        if client
            .try_publish(topic, QoS::AtMostOnce, false, body)
            .is_err()
        {
            warn!(device = %self.s.device_id, "request channel full: reported patch waits for the next connection");
        }
    }

    fn flush_backlog(&mut self, client: &AsyncClient) {
        while let Some(q) = self.backlog.pop_front() {
            match q {
                Queued::Patch(p) if !p.reply.is_closed() => self.publish_patch(client, p),
                Queued::Telemetry { body, reply } if !reply.is_closed() => {
                    let topic = topics::telemetry(&self.s.device_id);
                    let r = client
                        .try_publish(topic, QoS::AtLeastOnce, false, body)
                        .map_err(|_| LinkError::Busy);
                    let _ = reply.send(r);
                }
                _ => {}
            }
        }
    }

    /// Sends DISCONNECT and gives the poller a moment to write it.
    async fn disconnect(&self, conn: &mut Conn, why: &str) {
        debug!(device = %self.s.device_id, reason = why, "disconnecting");
        if conn.client.try_disconnect().is_err() {
            return;
        }
        let _ = timeout(DISCONNECT_GRACE, async {
            while let Some(Ok(ev)) = conn.events.recv().await {
                if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Drives the event loop until its first error, which it forwards as the last item.
async fn poll(mut eventloop: EventLoop, tx: mpsc::Sender<Result<Event, ConnectionError>>) {
    loop {
        let r = eventloop.poll().await;
        let failed = r.is_err();
        if tx.send(r).await.is_err() || failed {
            return;
        }
    }
}

/// A connection error as an operator reads it: TLS errors keep rustls' wording ("invalid
/// peer certificate: UnknownIssuer"), refusals name the CONNACK code.
fn connection_error(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("hub refused the connection: {code:?} (check the device key and id)")
        }
        other => other.to_string(),
    }
}
