//! What a door presents to the hub at CONNECT (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub) and when it must present it
//! again: hub address splitting, the MQTT username, the SAS password and the renewal instant.
//!
//! Pure: the clock is passed in, nothing here touches a socket.

use std::time::Duration;

use iothub_proto::sas;

/// The API version the gateway speaks (the one the Node device SDK uses).
pub const API_VERSION: &str = "2021-04-12";
/// IoT Hub's MQTT-over-TLS port when the host name carries none.
pub const DEFAULT_PORT: u16 = 8883;

/// Splits `host[:port]` into the name used for SAS `sr`, username and TLS verification, and the
/// port dialled. Only a trailing all-digit suffix counts as a port.
pub fn split_host(host: &str) -> (&str, u16) {
    if let Some((name, port)) = host.rsplit_once(':') {
        if !name.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(p) = port.parse() {
                return (name, p);
            }
        }
    }
    (host, DEFAULT_PORT)
}

/// `{host}/{deviceId}/?api-version=…&DeviceClientType=fieldgate%2F<version>`; `host` without port.
pub fn username(host_name: &str, device_id: &str) -> String {
    let client_type = sas::encode(&format!("fieldgate/{}", env!("CARGO_PKG_VERSION")));
    format!("{host_name}/{device_id}/?api-version={API_VERSION}&DeviceClientType={client_type}")
}

/// A device SAS token for `device_id`, valid until `now_unix + lifetime` (seconds, rounded up
/// so a sub-second lifetime still yields a token that is valid now).
pub fn password(
    host_name: &str,
    device_id: &str,
    key_b64: &str,
    now_unix: u64,
    lifetime: Duration,
) -> Result<String, sas::SasError> {
    let secs = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    sas::generate(
        &sas::device_resource(host_name, device_id),
        key_b64,
        None,
        now_unix + secs.max(1),
    )
}

/// How long after connecting with a fresh token the link starts renewing it: `margin` before
/// it expires, so a slow reconnect still happens before the hub severs the link, and up to
/// half a margin earlier by `spread` (0 to 1, drawn per renewal). A margin of zero or not
/// shorter than the lifetime means the default, 80 % of the lifetime.
///
/// The spread is there because doors that connected together would otherwise renew together,
/// every lifetime: a storm of a thousand reconnects against the hub (each door unable to take
/// a method for the length of its reconnect) at the same minute of every hour. It does not
/// change the RSS growth reconnects cause (docs/BENCHMARKS.md, "What is left").
pub fn renew_after(lifetime: Duration, margin: Duration, spread: f64) -> Duration {
    let at = if margin.is_zero() || margin >= lifetime {
        lifetime.mul_f64(0.8)
    } else {
        lifetime - margin
    };
    let margin = lifetime - at;
    at.saturating_sub(margin.mul_f64(spread.clamp(0.0, 1.0) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::SasToken;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn splits_port_off_host() {
        assert_eq!(split_host("hub.example:18883"), ("hub.example", 18883));
        assert_eq!(split_host("hub.example"), ("hub.example", 8883));
        assert_eq!(split_host("localhost:x1"), ("localhost:x1", 8883));
        assert_eq!(split_host("hub:99999"), ("hub:99999", 8883));
    }

    #[test]
    fn username_follows_sdk_shape() {
        let u = username("myhub.azure-devices.net", "door-01");
        let prefix =
            "myhub.azure-devices.net/door-01/?api-version=2021-04-12&DeviceClientType=fieldgate%2F";
        assert!(u.starts_with(prefix), "{u}");
        assert!(u.ends_with(env!("CARGO_PKG_VERSION")), "{u}");
    }

    #[test]
    fn password_is_device_token_signed_with_key() {
        let p = password(
            "myhub.azure-devices.net",
            "door-01",
            KEY,
            1_699_996_400,
            Duration::from_secs(3600),
        )
        .unwrap();
        // A fixed vector: same inputs, same token, so a change to the signing shows here.
        assert_eq!(
            p,
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdoor-01&sig=9mES8TjF7ey%2B9gin44Zx%2B80r%2Bf8GCVR%2FaTMpxJPebb0%3D&se=1700000000"
        );
        let t = SasToken::parse(&p).unwrap();
        assert!(t.signed_with(KEY));
        assert!(t.covers("myhub.azure-devices.net/devices/door-01"));
    }

    #[test]
    fn password_rejects_bad_key() {
        assert!(password("h", "d", "not base64!", 0, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn renews_margin_before_expiry_or_at_eighty_percent() {
        assert_eq!(
            renew_after(Duration::from_secs(3600), Duration::ZERO, 0.0),
            Duration::from_secs(2880)
        );
        assert_eq!(
            renew_after(Duration::from_millis(2500), Duration::from_secs(9), 0.0),
            Duration::from_millis(2000)
        );
        assert_eq!(
            renew_after(Duration::from_secs(3600), Duration::from_secs(300), 0.0),
            Duration::from_secs(3300)
        );
    }

    #[test]
    fn spread_renews_up_to_half_a_margin_earlier_never_later() {
        let (life, margin) = (Duration::from_secs(3600), Duration::from_secs(300));
        assert_eq!(renew_after(life, margin, 1.0), Duration::from_secs(3150));
        assert_eq!(renew_after(life, margin, 0.5), Duration::from_secs(3225));
        // Out-of-range draws are clamped.
        assert_eq!(renew_after(life, margin, 7.0), Duration::from_secs(3150));
        assert_eq!(renew_after(life, margin, -1.0), Duration::from_secs(3300));
        // Default margin (20 %): between 70 % and 80 % of the lifetime.
        assert_eq!(
            renew_after(life, Duration::ZERO, 1.0),
            Duration::from_secs(2520)
        );
    }
}
