//! Every metric the gateway exports, in one place. Names follow Prometheus
//! conventions: `fieldgate_` prefix, base units, `_total` for counters. Labels are bounded:
//! bus, device, function, method, status, result — never payloads or keys.
//!
//! Each gateway instance owns its own [`Registry`] so tests can run several side by side.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Latency buckets from 1 ms (Modbus TCP on a LAN) to 10 s (slow RTU lines with retries).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Modbus transactions by bus, function (`read_coils`, `write_single_coil`, …) and
    /// result (`ok`, `exception`, `timeout`, `transport`).
    pub modbus_requests: IntCounterVec,
    pub modbus_request_duration: HistogramVec,
    /// Requests waiting in a bus queue.
    pub bus_queue_depth: IntGaugeVec,
    /// 1 while the bus connection (TCP socket or serial port) is open.
    pub bus_connected: IntGaugeVec,
    /// 1 while the door's MQTT link to the hub is connected.
    pub link_up: IntGaugeVec,
    /// When an X.509 door's certificate expires (Unix seconds): alert well before.
    pub door_certificate_expiry: IntGaugeVec,
    pub link_reconnects: IntCounterVec,
    /// 1 for the transport new door connections use (`mqtt` on 8883, `websocket` on 443).
    pub hub_transport: IntGaugeVec,
    /// Times `transport = "auto"` moved the gateway to 443 because 8883 was unreachable.
    pub hub_transport_fallbacks: IntCounterVec,
    /// Connections that came online and were lost again within the backoff's stable time
    /// (another client with the same device id is the usual cause when it keeps happening).
    pub link_short_lived: IntCounterVec,
    pub token_renewals: IntCounterVec,
    /// Device Provisioning Service registrations by result (`assigned`, `refused`, `failed`,
    /// `throttled`, `error`); a door that reuses its cached assignment does not register.
    pub dps_registrations: IntCounterVec,
    /// Method responses the bridge produced after the request's connection had died.
    pub link_method_responses_lost: IntCounterVec,
    /// Direct methods by name and the status the gateway answered with.
    pub methods: IntCounterVec,
    pub method_duration: HistogramVec,
    /// Desired properties by result (`applied`, `rejected`, `ignored`, `failed`).
    pub desired: IntCounterVec,
    pub poll_cycle_duration: HistogramVec,
    pub reported_patches: IntCounterVec,
    /// 1 once every bus and door link has been attempted (what `/readyz` answers 200 for).
    pub ready: IntGaugeVec,
    /// 1 while a bus or a door's link is down (the gateway serves the rest).
    pub degraded: IntGaugeVec,
    /// Door events written to the store.
    pub events_stored: IntCounter,
    /// Stored door events the hub has not acknowledged yet (the backlog).
    pub events_pending: IntGauge,
    /// Their keys and bodies (what `[events] max_bytes` bounds).
    pub events_pending_bytes: IntGauge,
    /// Age of the oldest pending event; 0 when none waits.
    pub events_oldest_age: Gauge,
    /// Events the hub acknowledged, removed from the store.
    pub events_delivered: IntCounter,
    /// Events never delivered, by reason: `full` (oldest dropped beyond `max_bytes`), `age`
    /// (older than `max_age`), `store_error` (not stored: sent live at most once, if at all).
    pub events_dropped: IntCounterVec,
    /// Store commits by durability (`durable`: fsync; `lazy`: removals only) and result.
    pub events_commits: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        Metrics {
            modbus_requests: counter(
                "fieldgate_modbus_requests_total",
                "Modbus transactions by bus, function code and result.",
                &["bus", "function", "result"],
            ),
            modbus_request_duration: histogram(
                "fieldgate_modbus_request_duration_seconds",
                "Time from sending a Modbus request to its response or failure.",
                &["bus", "function"],
            ),
            bus_queue_depth: gauge(
                "fieldgate_bus_queue_depth",
                "Requests waiting for the bus.",
                &["bus"],
            ),
            bus_connected: gauge(
                "fieldgate_bus_connected",
                "1 while the bus connection is open.",
                &["bus"],
            ),
            link_up: gauge(
                "fieldgate_link_up",
                "1 while the door's MQTT link to IoT Hub is connected.",
                &["device"],
            ),
            door_certificate_expiry: gauge(
                "fieldgate_door_certificate_expiry_timestamp_seconds",
                "When an X.509 door's certificate expires (Unix time).",
                &["device"],
            ),
            link_reconnects: counter(
                "fieldgate_link_reconnects_total",
                "MQTT reconnections of a door link after a failure.",
                &["device"],
            ),
            hub_transport: gauge(
                "fieldgate_hub_transport",
                "1 for the transport new door connections use (mqtt: 8883, websocket: 443).",
                &["transport"],
            ),
            hub_transport_fallbacks: counter(
                "fieldgate_hub_transport_fallbacks_total",
                "Times the gateway moved to MQTT over WebSockets on 443 because 8883 was unreachable.",
                &[],
            ),
            link_short_lived: counter(
                "fieldgate_link_short_lived_total",
                "Connections of a door lost soon after coming online (another client with the same device id?).",
                &["device"],
            ),
            token_renewals: counter(
                "fieldgate_token_renewals_total",
                "SAS token renewals of a door link.",
                &["device"],
            ),
            dps_registrations: counter(
                "fieldgate_dps_registrations_total",
                "Door registrations with the Device Provisioning Service, by result.",
                &["result"],
            ),
            link_method_responses_lost: counter(
                "fieldgate_link_method_responses_lost_total",
                "Method responses not sent because the request's connection had ended.",
                &["device"],
            ),
            methods: counter(
                "fieldgate_methods_total",
                "Direct methods answered, by method name and status code.",
                &["method", "status"],
            ),
            method_duration: histogram(
                "fieldgate_method_duration_seconds",
                "Time from receiving a direct method to publishing its response.",
                &["method"],
            ),
            desired: counter(
                "fieldgate_desired_properties_total",
                "Desired properties handled, by result.",
                &["result"],
            ),
            ready: gauge(
                "fieldgate_ready",
                "1 once every bus and door link has been attempted.",
                &[],
            ),
            degraded: gauge(
                "fieldgate_degraded",
                "1 while a bus or a door's link is down; the rest is served.",
                &[],
            ),
            poll_cycle_duration: histogram(
                "fieldgate_poll_cycle_duration_seconds",
                "Time to read every polled point of a door.",
                &["bus"],
            ),
            reported_patches: counter(
                "fieldgate_reported_patches_total",
                "Reported-property patches sent, by result.",
                &["result"],
            ),
            events_stored: {
                let c = IntCounter::new(
                    "fieldgate_events_stored_total",
                    "Door events written to the event store.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            events_pending: {
                let g = IntGauge::new(
                    "fieldgate_events_pending",
                    "Stored door events not yet acknowledged by the hub.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            events_pending_bytes: {
                let g = IntGauge::new(
                    "fieldgate_events_pending_bytes",
                    "Bytes of the pending door events (keys and bodies).",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            events_oldest_age: {
                let g = Gauge::new(
                    "fieldgate_events_oldest_age_seconds",
                    "Age of the oldest pending door event (0 when none waits).",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            events_delivered: {
                let c = IntCounter::new(
                    "fieldgate_events_delivered_total",
                    "Door events acknowledged by the hub and removed from the store.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            events_dropped: counter(
                "fieldgate_events_dropped_total",
                "Door events not delivered from the store, by reason (full, age, store_error).",
                &["reason"],
            ),
            events_commits: counter(
                "fieldgate_events_commits_total",
                "Event store commits by durability (durable, lazy) and result (ok, failed).",
                &["durability", "result"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let m = Metrics::new();
        m.methods.with_label_values(&["lockDoor", "200"]).inc();
        m.link_up.with_label_values(&["door-1"]).set(1);
        let text = m.render();
        assert!(text.contains("fieldgate_methods_total{method=\"lockDoor\",status=\"200\"} 1"));
        assert!(text.contains("fieldgate_link_up{device=\"door-1\"} 1"));
    }
}
