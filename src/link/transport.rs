//! How the door links reach the hub: MQTT over TLS on 8883, or MQTT over WebSockets over TLS
//! on 443 (`wss://{hub}/$iothub/websocket`, subprotocol `mqtt`: same CONNECT, same topics —
//! <https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub#using-the-mqtt-protocol-directly-as-a-device>),
//! optionally through an HTTP proxy (`CONNECT`), for buildings that let nothing out but 443.
//!
//! With `transport = "auto"` the choice is made **per gateway**: every door starts on 8883;
//! the first door that cannot reach it (connection refused, unreachable, timed out — not a
//! TLS or authentication failure, which 443 would not fix) moves every door to 443 for
//! [`RETRY_MQTT_AFTER`], after which the next connection tries 8883 again. One door's probe
//! stands for all: they share the network path, and a thousand doors each timing out on 8883
//! would only delay the site.
//!
//! The WebSocket and proxy code is rumqttc's own (`websocket` and `proxy` features). What it
//! does not do is done here: rumqttc reads no proxy environment variables (this module reads
//! `HTTPS_PROXY`/`https_proxy`/`ALL_PROXY` and `NO_PROXY`), and it supports only HTTP proxies
//! with basic credentials. And it opens the WebSocket with tungstenite's default
//! `WebSocketConfig`, which allocates a 128 KiB read buffer per connection up front, with no
//! way to pass another: a door on 443 cost ~130 KB more than on 8883. The workspace patches
//! rumqttc for that one thing (vendor/README.md) until rumqttc takes a `WebSocketConfig`.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{HubTransport, Secret};
use crate::metrics::Metrics;

/// How long a gateway that fell back to 443 stays there before trying 8883 again.
pub const RETRY_MQTT_AFTER: Duration = Duration::from_secs(30 * 60);

/// An HTTP proxy for the WebSocket transport.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub host: String,
    pub port: u16,
    /// Basic credentials: never logged.
    pub user: Option<(String, Secret)>,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ProxyConfig {
    /// `http://user:***@proxy:3128`: the password never.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some((u, _)) => write!(f, "http://{u}:***@{}:{}", self.host, self.port),
            None => write!(f, "http://{}:{}", self.host, self.port),
        }
    }
}

impl ProxyConfig {
    /// `http://[user:password@]host[:port]` (port 80 by default; `https://` proxies are not
    /// supported by rumqttc with our TLS setup and are refused).
    pub fn parse(url: &str) -> Result<ProxyConfig, String> {
        let url = url.trim();
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.contains("://") {
            return Err(format!(
                "proxy must be an http:// URL (HTTP CONNECT), got {}",
                redact(url)
            ));
        } else {
            url
        };
        let rest = rest.trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred.split_once(':').unwrap_or((cred, ""));
                (Some((decode(u), Secret::new(decode(p)))), hp)
            }
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("proxy {} has no host", redact(url)));
        }
        Ok(ProxyConfig { host, port, user })
    }

    /// The proxy from the environment for `hub_host`, as curl reads it: `HTTPS_PROXY` (or
    /// `https_proxy`, then `ALL_PROXY`), unless `NO_PROXY` names the host (`*`, the name, or
    /// a `.suffix`/`suffix` of it).
    pub fn from_env(hub_host: &str) -> Option<Result<ProxyConfig, String>> {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        let url = var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])?;
        let no_proxy = var(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
        if bypassed(&no_proxy, hub_host) {
            return None;
        }
        Some(ProxyConfig::parse(&url))
    }
}

/// Whether `NO_PROXY` (comma-separated) exempts `host`.
pub fn bypassed(no_proxy: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|e| {
            if e == "*" {
                return true;
            }
            let e = e.split(':').next().unwrap_or(&e).to_string();
            let suffix = e.trim_start_matches('.');
            host == suffix || host.ends_with(&format!(".{suffix}"))
        })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; port 80 when absent.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("proxy port '{p}' is not a port number"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("proxy host '{s}' lacks its ']'"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), port(p)?)),
            None => Ok((h.to_string(), 80)),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), port(p)?)),
        None => Ok((s.to_string(), 80)),
    }
}

fn decode(s: &str) -> String {
    // Percent-encoded credentials (an `@` or `:` in a password).
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A proxy URL for messages: the password replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        (None, Some(at)) => match url[..at].split_once(':') {
            Some((u, _)) => format!("{u}:***{}", &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// The transport one connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    Mqtt,
    WebSocket,
}

impl Chosen {
    pub fn label(self) -> &'static str {
        match self {
            Chosen::Mqtt => "mqtt",
            Chosen::WebSocket => "websocket",
        }
    }
}

/// The gateway-wide transport choice, shared by every door link.
#[derive(Debug)]
pub struct TransportSelector {
    mode: HubTransport,
    /// With `auto`: on 443 until then.
    websocket_until: Mutex<Option<Instant>>,
}

impl TransportSelector {
    pub fn new(mode: HubTransport) -> Self {
        TransportSelector {
            mode,
            websocket_until: Mutex::new(None),
        }
    }

    pub fn mode(&self) -> HubTransport {
        self.mode
    }

    /// The transport for the next connection.
    pub fn choose(&self, metrics: &Metrics) -> Chosen {
        let chosen = match self.mode {
            HubTransport::Mqtt => Chosen::Mqtt,
            HubTransport::WebSocket => Chosen::WebSocket,
            HubTransport::Auto => {
                let mut until = self
                    .websocket_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match *until {
                    Some(t) if Instant::now() < t => Chosen::WebSocket,
                    Some(_) => {
                        *until = None;
                        tracing::info!(
                            "trying MQTT on 8883 again after {} on 443",
                            crate::human::duration(RETRY_MQTT_AFTER)
                        );
                        Chosen::Mqtt
                    }
                    None => Chosen::Mqtt,
                }
            }
        };
        for c in [Chosen::Mqtt, Chosen::WebSocket] {
            metrics
                .hub_transport
                .with_label_values(&[c.label()])
                .set(i64::from(c == chosen));
        }
        chosen
    }

    /// A connection on 8883 could not reach the hub (`why`): with `auto`, every door moves
    /// to 443 for a while.
    pub fn mqtt_unreachable(&self, why: &str, metrics: &Metrics) {
        if self.mode != HubTransport::Auto {
            return;
        }
        let mut until = self
            .websocket_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        *until = Some(Instant::now() + RETRY_MQTT_AFTER);
        metrics
            .hub_transport_fallbacks
            .with_label_values(&[] as &[&str])
            .inc();
        tracing::warn!(error = %why, retry_8883_in = %crate::human::duration(RETRY_MQTT_AFTER), "the hub cannot be reached on 8883: every door connects with MQTT over WebSockets on 443");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_print_the_password() {
        let p = ProxyConfig::parse("http://ops:s3cr%40t@proxy.site.example:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.site.example", 3128));
        let (u, pw) = p.user.clone().unwrap();
        assert_eq!((u.as_str(), pw.expose()), ("ops", "s3cr@t"));
        assert_eq!(p.to_string(), "http://ops:***@proxy.site.example:3128");
        assert!(!format!("{p:?}").contains("s3cr"));
        assert_eq!(
            ProxyConfig::parse("10.0.0.1:8080").unwrap(),
            ProxyConfig {
                host: "10.0.0.1".into(),
                port: 8080,
                user: None
            }
        );
        assert_eq!(ProxyConfig::parse("http://proxy").unwrap().port, 80);
        assert_eq!(ProxyConfig::parse("http://[::1]:3128").unwrap().host, "::1");
        let e = ProxyConfig::parse("socks5://u:pw@p:1080").unwrap_err();
        assert!(e.contains("http://") && !e.contains("pw@"), "{e}");
        assert_eq!(redact("http://u:pw@h:1"), "http://u:***@h:1");
    }

    #[test]
    fn no_proxy_matches_names_and_suffixes() {
        assert!(bypassed(
            "localhost,.azure-devices.net",
            "hub1.azure-devices.net"
        ));
        assert!(bypassed("azure-devices.net", "hub1.azure-devices.net"));
        assert!(bypassed("*", "anything"));
        assert!(bypassed("hub1.example:8883", "hub1.example"));
        assert!(!bypassed("example.net", "hub1.azure-devices.net"));
        assert!(!bypassed("", "hub"));
    }

    #[test]
    fn auto_moves_every_door_to_443_until_it_is_time_to_try_8883_again() {
        let m = Metrics::new();
        let s = TransportSelector::new(HubTransport::Auto);
        assert_eq!(s.choose(&m), Chosen::Mqtt);
        s.mqtt_unreachable("connection refused", &m);
        assert_eq!(s.choose(&m), Chosen::WebSocket);
        assert_eq!(
            m.hub_transport_fallbacks
                .with_label_values(&[] as &[&str])
                .get(),
            1
        );
        *s.websocket_until.lock().unwrap() = Some(Instant::now());
        assert_eq!(s.choose(&m), Chosen::Mqtt, "8883 is tried again");
        let fixed = TransportSelector::new(HubTransport::Mqtt);
        fixed.mqtt_unreachable("refused", &m);
        assert_eq!(fixed.choose(&m), Chosen::Mqtt, "only auto falls back");
    }
}
