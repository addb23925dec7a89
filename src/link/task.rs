//! The link task: dials, runs the reconnection flow, multiplexes handle commands with hub
//! traffic, renews the token by reconnecting, and backs off after failures.
//!
//! Each connection ([`Conn`]) gets a fresh client and event loop because the password changes
//! on every connect; unacknowledged work therefore lives in [`Session`] and the backlog here,
//! not in rumqttc.

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS, SubscribeReasonCode};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use iothub_proto::topics;

use super::backoff::Backoff;
use super::conn::{self, Conn};
use super::drain::Drain;
use super::handle::{Command, Reply};
use super::outflow::Outflow;
use super::session::{Inbound, PendingPatch, Session};
use super::transport::Chosen;
use super::{auth, tls, ConnectPacer, LinkError, LinkEvent, LinkSettings, LinkState};
use crate::events::{wire, DoorEvents};
use crate::lograte::{summary_text, RepeatGate, Verdict};
use crate::metrics::Metrics;
use iothub_proto::Status;

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

/// Connections in a row lost soon after coming online before the log says why it may be.
const SHORT_LIVED_WARN: u32 = 3;

/// Why a connection ended.
enum End {
    Renew,
    Lost(String),
    Shutdown,
}

pub(crate) struct Link {
    settings: LinkSettings,
    host_name: String,
    port: u16,
    pacer: ConnectPacer,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    cmds: mpsc::Receiver<Box<Command>>,
    cmds_open: bool,
    events: mpsc::Sender<Box<LinkEvent>>,
    state: watch::Sender<LinkState>,
    session: Session,
    backlog: VecDeque<Queued>,
    backoff: Backoff,
    /// When the current connection came online (twin received).
    online_since: Option<Instant>,
    /// Connections in a row that came online and were lost soon after (see
    /// [`Link::note_short_lived`]).
    short_lived: u32,
    /// The door's stored events (taken out of the settings) and their state on the connection.
    stored: Option<DoorEvents>,
    outflow: Outflow,
    /// The paced slot reserved for the next event publish.
    event_slot: Option<Instant>,
}

impl Link {
    pub(crate) fn new(
        s: LinkSettings,
        pacer: ConnectPacer,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        cmds: mpsc::Receiver<Box<Command>>,
        events: mpsc::Sender<Box<LinkEvent>>,
        state: watch::Sender<LinkState>,
    ) -> Self {
        let mut s = s;
        let stored = s.events.take();
        let (host_name, port) = auth::split_host(&s.hub.host);
        Link {
            stored,
            outflow: Outflow::default(),
            event_slot: None,
            host_name: host_name.to_string(),
            port,
            backoff: Backoff::new(s.hub.backoff),
            settings: s,
            pacer,
            metrics,
            shutdown,
            cmds,
            cmds_open: true,
            events,
            state,
            session: Session::default(),
            backlog: VecDeque::new(),
            online_since: None,
            short_lived: 0,
        }
    }

    /// IoT Hub keeps one connection per device id and drops the older one when another
    /// client connects with the same id: two gateways given the same device map knock each
    /// other off for ever, each connection lasting until the other reconnects. The hub says
    /// nothing to the dropped client, so the sign is connections that come online and are
    /// lost again soon, over and over; the backoff already grows for those, and this says
    /// why in the log and in `fieldgate_link_short_lived_total`.
    fn note_short_lived(&mut self, reason: &str) {
        let Some(since) = self.online_since.take() else {
            return;
        };
        if since.elapsed() >= self.settings.hub.backoff.stable_after {
            self.short_lived = 0;
            return;
        }
        self.short_lived += 1;
        self.metrics
            .link_short_lived
            .with_label_values(&[self.device()])
            .inc();
        if self.short_lived == SHORT_LIVED_WARN || self.short_lived % (SHORT_LIVED_WARN * 10) == 0 {
            warn!(
                device = %self.settings.device_id,
                host = %self.host_name,
                times = self.short_lived,
                last_reason = %reason,
                "the hub keeps dropping this door's connection soon after it connects: another client may be using the same device id (a second gateway with the same device map?); IoT Hub keeps only the newest connection of a device"
            );
        }
    }

    fn device(&self) -> &str {
        &self.settings.device_id
    }

    pub(crate) async fn run(mut self) {
        let up = self.metrics.link_up.with_label_values(&[self.device()]);
        up.set(0);
        let tls =
            match self
                .settings
                .check_offline()
                .and_then(|()| match &self.settings.client_cert {
                    Some(c) => {
                        tls::client_config_with_cert(self.settings.hub.extra_ca_pem.as_deref(), c)
                    }
                    None => tls::client_config(self.settings.hub.extra_ca_pem.as_deref()),
                }) {
                Ok(t) => t,
                Err(e) => {
                    warn!(device = %self.settings.device_id, reason = %e, "door link cannot start");
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
            let chosen = self.settings.hub.transport.choose(&self.metrics);
            let assigned = match self.settings.hub.dps.clone() {
                None => Ok(()),
                // Boxed: a registration holds a whole provisioning client while it runs, and
                // inline it would size every door's task for it, DPS or not (9 KB a door).
                Some(p) => match Box::pin(self.provision(&p, chosen, &tls)).await {
                    None => break,
                    Some(r) => r,
                },
            };
            let opened = assigned.and_then(|()| {
                Conn::open(&self.settings, &self.host_name, self.port, &tls, chosen)
            });
            let end = match opened {
                Err(reason) => End::Lost(reason),
                Ok(conn) => {
                    let end = self.serve(conn, after_failure).await;
                    up.set(0);
                    self.outflow.connection_lost();
                    self.event_slot = None;
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
                    // Our own reconnect: says nothing about other clients.
                    self.online_since = None;
                    self.metrics
                        .token_renewals
                        .with_label_values(&[self.device()])
                        .inc();
                    info!(device = %self.settings.device_id, host = %self.host_name, "renewing SAS token");
                    after_failure = false;
                }
                End::Lost(reason) => {
                    after_failure = true;
                    self.note_short_lived(&reason);
                    let delay = self.backoff.next_delay(rand::random::<f64>());
                    self.log_down(&reason, delay);
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

    /// Learns the door's hub from the provisioning service (or its cache); `None` on
    /// shutdown. Runs offline: commands are served (queued) meanwhile.
    async fn provision(
        &mut self,
        p: &crate::dps::Provisioner,
        chosen: Chosen,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> Option<Result<(), String>> {
        let (id, key, payload) = (
            self.settings.device_id.clone(),
            self.settings.key.clone(),
            self.settings.dps_payload.clone(),
        );
        if p.cached(&id).is_none() {
            self.state.send_replace(LinkState::Registering);
        }
        let credential = match self.settings.client_cert {
            Some(_) => crate::dps::Credential::Certificate,
            None => crate::dps::Credential::Key(key.expose()),
        };
        let mut out = None;
        let done = self
            .offline_until(async {
                out = Some(
                    p.assignment(&id, credential, payload.as_ref(), chosen, Some(tls))
                        .await,
                );
            })
            .await;
        if !done {
            return None;
        }
        Some(match out? {
            Ok(a) => {
                let (name, port) = auth::split_host(&a.assigned_hub);
                self.host_name = name.to_string();
                self.port = port;
                Ok(())
            }
            Err(e) => Err(format!("DPS registration: {e}")),
        })
    }

    /// One line for the first door a failure hits, then one line an interval summing up the
    /// doors it keeps hitting (a hub refusing a thousand doors would otherwise write a
    /// thousand lines a round).
    fn log_down(&self, reason: &str, delay: Duration) {
        static GATE: std::sync::LazyLock<RepeatGate> = std::sync::LazyLock::new(RepeatGate::new);
        let retry_in = crate::human::duration(delay);
        match GATE.note(reason, &self.settings.device_id) {
            Verdict::First => {
                warn!(device = %self.settings.device_id, host = %self.host_name, %reason, %retry_in, "door link down")
            }
            Verdict::Repeat => {
                debug!(device = %self.settings.device_id, host = %self.host_name, %reason, %retry_in, "door link down")
            }
            Verdict::Summary { count, doors } => {
                warn!(host = %self.host_name, %reason, repeated = %summary_text(count, &doors), "door links down")
            }
        }
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
                cmd = self.cmds.recv(), if self.cmds_open => match cmd.map(|c| *c) {
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
        if self.backlog.len() < self.settings.hub.queue.max(1) {
            self.backlog.push_back(q);
            return;
        }
        match q {
            Queued::Patch(p) => drop(p.reply.send(Err(LinkError::Busy))),
            Queued::Telemetry { reply, .. } => drop(reply.send(Err(LinkError::Busy))),
        }
    }

    fn method_lost(&self, rid: String, reply: Reply<()>) {
        warn!(device = %self.settings.device_id, rid = %rid, "method response dropped: its connection is gone");
        self.metrics
            .link_method_responses_lost
            .with_label_values(&[self.device()])
            .inc();
        let _ = reply.send(Err(LinkError::MethodLost { rid }));
    }

    /// Runs one connection from CONNACK to its end.
    async fn serve(&mut self, mut conn: Conn, after_failure: bool) -> End {
        // The token was signed just before dialling: renewal counts from here, not from the
        // twin, so a slow setup cannot outlive the token.
        let issued = Instant::now();
        let setup_deadline = issued + self.settings.hub.connect_timeout;
        let mut renew_at = None;
        let mut drain: Option<Drain> = None;
        let mut subacks = 0;
        let mut connacked = false;
        loop {
            let online = renew_at.is_some();
            // Not while closing for a token renewal: what it sends now would go again on the
            // next connection if its PUBACK is not back before the close.
            let sending = online && drain.is_none();
            if sending {
                self.send_events(&conn.client);
            }
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
                    // Before CONNACK there is no session to close; dropping the socket is enough.
                    if connacked {
                        conn.disconnect(&self.settings.device_id, "shutdown").await;
                    }
                    self.lost(online, "shutdown".into());
                    return End::Shutdown;
                }
                () = sleep_until(setup_deadline), if !online => {
                    let why = format!("no twin within {:?} of dialling", self.settings.hub.connect_timeout);
                    if !connacked && conn.transport == Chosen::Mqtt {
                        // A blackholed 8883: the SYN goes unanswered until here.
                        self.settings.hub.transport.mqtt_unreachable(&why, &self.metrics);
                    }
                    return End::Lost(why);
                }
                () = sleep_until(drain.as_ref().map_or(renew_at.unwrap_or(setup_deadline), Drain::wake)), if online => {
                    let now = Instant::now();
                    match &mut drain {
                        // Renewal step 1: no new method requests on this connection, so
                        // none can be lost when it closes; the hub holds calls made
                        // meanwhile until the next connection subscribes (connectTimeout).
                        None => match conn.client.try_unsubscribe(topics::METHODS_FILTER) {
                            Ok(()) => {
                                // Until just before the token expires (the hub closes the
                                // connection then anyway).
                                let room = self.settings.hub.token_lifetime.saturating_sub(now - issued);
                                let guard = (room / 10).max(Duration::from_millis(100));
                                drain = Some(Drain::new(now, room.saturating_sub(guard)));
                                continue;
                            }
                            Err(e) => debug!(device = %self.settings.device_id, error = %e, "unsubscribe before renewal failed"),
                        },
                        // Step 2: once the hub confirmed and the open requests are answered
                        // (or the token is about to run out), reconnect.
                        Some(d) if !d.done(now, self.session.open_methods()) => {
                            d.recheck(now);
                            continue;
                        }
                        Some(_) => {}
                    }
                    conn.disconnect(&self.settings.device_id, "token renewal").await;
                    self.lost(online, "SAS token renewal".into());
                    return End::Renew;
                }
                () = head_changed(&mut self.stored), if sending => continue,
                () = sleep_until(self.event_slot.unwrap_or(setup_deadline)), if sending && self.event_slot.is_some() => continue,
                cmd = self.cmds.recv(), if self.cmds_open => {
                    match cmd.map(|c| *c) {
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
            let Some(event) = event else {
                return self.lost(online, "connection closed".into());
            };
            let event = match *event {
                Ok(event) => event,
                Err(e) => {
                    let why = conn::describe_proxy(&e, &self.settings, &self.host_name)
                        .unwrap_or_else(|| conn::describe(&e));
                    if !connacked && conn::identity_refused(&e) {
                        if let Some(p) = &self.settings.hub.dps {
                            p.forget(&self.settings.device_id);
                        }
                    }
                    if !connacked && conn.transport == Chosen::Mqtt && conn::unreachable(&e) {
                        self.settings
                            .hub
                            .transport
                            .mqtt_unreachable(&why, &self.metrics);
                    }
                    return self.lost(online, why);
                }
            };
            match event {
                Event::Outgoing(Outgoing::Publish(pkid)) => self.outflow.outgoing(pkid),
                Event::Incoming(Packet::PubAck(ack)) => {
                    if let (Some(seq), Some(events)) =
                        (self.outflow.puback(ack.pkid), &mut self.stored)
                    {
                        events.acked(seq);
                    }
                }
                Event::Incoming(Packet::ConnAck(_)) => {
                    connacked = true;
                    debug!(device = %self.settings.device_id, "CONNACK");
                    for filter in SUBSCRIPTIONS {
                        if let Err(e) = conn.client.try_subscribe(filter, QoS::AtLeastOnce) {
                            return End::Lost(format!("subscribe: {e}"));
                        }
                    }
                }
                Event::Incoming(Packet::UnsubAck(_)) => {
                    if let Some(d) = &mut drain {
                        d.unsubscribed(Instant::now());
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
                                // At least a second of service between renewals, whatever the setup took.
                                let renew = issued
                                    + auth::renew_after(
                                        self.settings.hub.token_lifetime,
                                        self.settings.hub.token_renew_margin,
                                        rand::random(),
                                    );
                                renew_at = Some(renew.max(Instant::now() + Duration::from_secs(1)));
                                self.connected(after_failure);
                                self.flush_backlog(&conn.client);
                            }
                            if !self.deliver(Box::new(LinkEvent::Connected { twin })).await {
                                self.session.resync = true;
                            }
                            for (version, patch) in newer {
                                self.desired(version, patch);
                            }
                        }
                        Inbound::TwinFailed(reason) => return self.lost(online, reason),
                        Inbound::Handled => {}
                        Inbound::Dropped(why) => {
                            debug!(device = %self.settings.device_id, reason = %why, "inbound publish dropped")
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
            let _ = self.events.try_send(Box::new(LinkEvent::Disconnected {
                reason: reason.clone(),
            }));
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
        self.online_since = Some(Instant::now());
        info!(device = %self.settings.device_id, host = %self.host_name, "door link up");
    }

    /// A full twin matters too much to drop on a momentarily full queue: wait up to
    /// `op_timeout` for room; `false` means the bridge is not draining (resync later).
    async fn deliver(&mut self, event: Box<LinkEvent>) -> bool {
        matches!(
            timeout(self.settings.hub.op_timeout, self.events.send(event)).await,
            Ok(Ok(()))
        )
    }

    fn desired(&mut self, version: u64, patch: serde_json::Value) {
        if let Err(e) = self
            .events
            .try_send(Box::new(LinkEvent::DesiredPatch { version, patch }))
        {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                warn!(device = %self.settings.device_id, version, "event queue full: desired patch dropped, fetching the twin again");
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
        let event = Box::new(LinkEvent::MethodRequest {
            name: name.clone(),
            rid: rid.clone(),
            payload,
            received: Instant::now(),
        });
        if self.events.try_send(event).is_ok() {
            return;
        }
        // Never silence: a request the bridge cannot take is refused now, before the hub's timeout.
        warn!(device = %self.settings.device_id, method = %name, "event queue full: answering 503");
        self.session.take_method(&rid);
        let body = json!({"message": "gateway busy, retry later"}).to_string();
        let _ = client.try_publish(
            topics::method_response(Status::SERVICE_UNAVAILABLE, &rid),
            QoS::AtMostOnce,
            false,
            body,
        );
        let label = if self.settings.methods.contains_key(&name) {
            name.as_str()
        } else {
            "unknown"
        };
        self.metrics
            .methods
            .with_label_values(&[label, &Status::SERVICE_UNAVAILABLE.to_string()])
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
                let topic = topics::telemetry(&self.settings.device_id);
                let r = client
                    .try_publish(topic, QoS::AtLeastOnce, false, body)
                    .map_err(|_| LinkError::Busy);
                if r.is_ok() {
                    self.outflow.sent_other();
                }
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
            warn!(device = %self.settings.device_id, "request channel full: reported patch waits for the next connection");
        }
    }

    fn flush_backlog(&mut self, client: &AsyncClient) {
        while let Some(q) = self.backlog.pop_front() {
            match q {
                Queued::Patch(p) if !p.reply.is_closed() => self.publish_patch(client, p),
                Queued::Telemetry { body, reply } if !reply.is_closed() => {
                    let topic = topics::telemetry(&self.settings.device_id);
                    let r = client
                        .try_publish(topic, QoS::AtLeastOnce, false, body)
                        .map_err(|_| LinkError::Busy);
                    if r.is_ok() {
                        self.outflow.sent_other();
                    }
                    let _ = reply.send(r);
                }
                _ => {}
            }
        }
    }

    /// Publishes the door's stored events while the window has room and the gateway's event
    /// pace allows; returns when it must wait (for a PUBACK, a paced slot, new events).
    fn send_events(&mut self, client: &AsyncClient) {
        let Some(events) = &mut self.stored else {
            return;
        };
        loop {
            let head = *events.head().borrow_and_update();
            let Some(from) = self.outflow.wants(head) else {
                return;
            };
            let slot = *self
                .event_slot
                .get_or_insert_with(|| self.settings.hub.event_pacer.reserve());
            if slot > Instant::now() {
                return;
            }
            let event = match events.read(from, 1) {
                Ok(mut v) => v.pop(),
                Err(e) => {
                    // Retried on the next wake-up (PUBACK, new event, any traffic).
                    warn!(device = %self.settings.device_id, error = %e, "cannot read stored events");
                    return;
                }
            };
            let Some(event) = event else {
                // Everything below the head was acknowledged or dropped meanwhile.
                self.outflow.skip_to(head);
                continue;
            };
            let topic = wire::topic(&self.settings.device_id, &event);
            // On a full request channel the event stays stored and is tried again on the
            // next wake-up.
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, event.body)
                .is_err()
            {
                return;
            }
            self.event_slot = None;
            self.outflow.sent(event.seq);
        }
    }
}

/// Resolves when the door's store has committed new events; never without a store.
async fn head_changed(events: &mut Option<DoorEvents>) {
    match events {
        Some(e) => {
            if e.head().changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
