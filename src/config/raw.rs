//! The config file as written: serde structs mirroring the TOML, every field that resolution
//! checks kept `Spanned` so its errors can point at it. Defaults are applied in `resolve`,
//! not here, so this stays a faithful picture of the text.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::codec::{DataType, WordOrder};

/// A duration written like `"500ms"`, `"1h 30m"`.
pub(crate) type Dur = Spanned<humantime_serde::Serde<Duration>>;

pub(crate) fn dur(d: &Dur) -> Duration {
    **d.get_ref()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHub {
    /// Optional with `[dps]`: each door learns its hub there.
    pub hostname: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub token_lifetime: Option<Dur>,
    pub token_renew_margin: Option<Dur>,
    pub connects_per_second: Option<Spanned<u32>>,
    pub keep_alive: Option<Dur>,
    pub operation_timeout: Option<Dur>,
    pub dial_timeout: Option<Dur>,
    pub reconnect_backoff_min: Option<Dur>,
    pub reconnect_backoff_max: Option<Dur>,
    pub group_key: Option<Spanned<String>>,
    pub group_key_file: Option<Spanned<String>>,
    pub transport: Option<Spanned<RawTransport>>,
    pub websocket_port: Option<Spanned<u16>>,
    pub proxy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDps {
    pub id_scope: Spanned<String>,
    pub global_endpoint: Option<Spanned<String>>,
    pub group_key_file: Option<Spanned<String>>,
    pub cache: Option<Spanned<String>>,
    pub registrations_per_second: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawTransport {
    Mqtt,
    Websocket,
    Auto,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvents {
    pub dir: Option<Spanned<String>>,
    pub max_bytes: Option<Spanned<u64>>,
    pub max_age: Option<Dur>,
    pub commit_interval: Option<Dur>,
    pub send_rate: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawParity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBus {
    pub name: Spanned<String>,
    pub tcp: Option<Spanned<String>>,
    pub serial: Option<Spanned<String>>,
    pub rtu_over_tcp: Option<Spanned<String>>,
    pub baud: Option<Spanned<u32>>,
    pub parity: Option<Spanned<RawParity>>,
    pub data_bits: Option<Spanned<u8>>,
    pub stop_bits: Option<Spanned<u8>>,
    pub timeout: Option<Dur>,
    pub retries: Option<Spanned<u32>>,
    pub inter_request_delay: Option<Dur>,
    pub queue_capacity: Option<Spanned<usize>>,
    pub dead_unit_backoff_max: Option<Dur>,
    pub reconnect_backoff_max: Option<Dur>,
    pub read_gap: Option<Spanned<u16>>,
}

/// The value-spec keys shared by every register point (`type`, `order`, `scale`, …).
/// Listed in each point struct rather than `#[serde(flatten)]`ed: flatten buffers the
/// input and loses the spans errors need.
macro_rules! value_spec_fields {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        $vis struct $name {
            $(pub $field: $ty,)*
            #[serde(rename = "type")]
            pub data_type: Option<Spanned<DataType>>,
            pub order: Option<Spanned<WordOrder>>,
            pub scale: Option<Spanned<f64>>,
            pub offset: Option<Spanned<f64>>,
            pub min: Option<Spanned<f64>>,
            pub max: Option<Spanned<f64>>,
            #[serde(rename = "enum")]
            pub enum_map: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
            pub bit: Option<Spanned<u8>>,
        }

        impl $name {
            pub(crate) fn spec(&self) -> SpecFields<'_> {
                SpecFields {
                    data_type: &self.data_type,
                    order: &self.order,
                    scale: &self.scale,
                    offset: &self.offset,
                    min: &self.min,
                    max: &self.max,
                    enum_map: &self.enum_map,
                    bit: &self.bit,
                }
            }
        }
    };
}

/// The value-spec keys of one point, borrowed.
pub(crate) struct SpecFields<'a> {
    pub data_type: &'a Option<Spanned<DataType>>,
    pub order: &'a Option<Spanned<WordOrder>>,
    pub scale: &'a Option<Spanned<f64>>,
    pub offset: &'a Option<Spanned<f64>>,
    pub min: &'a Option<Spanned<f64>>,
    pub max: &'a Option<Spanned<f64>>,
    pub enum_map: &'a Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub bit: &'a Option<Spanned<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawAction {
    WriteCoil,
    WriteRegister,
    PulseCoil,
}

value_spec_fields! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawMethod {
        action: Spanned<RawAction>,
        address: Spanned<i64>,
        value: Option<Spanned<toml::Value>>,
        from: Option<Spanned<String>>,
        seconds_from: Option<Spanned<String>>,
        default_duration: Option<Dur>,
        max_duration: Option<Dur>,
        timeout: Option<Dur>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawTarget {
    Holding,
    Coil,
}

value_spec_fields! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawDesired {
        target: Option<Spanned<RawTarget>>,
        address: Spanned<i64>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawSource {
    Coil,
    DiscreteInput,
    Holding,
    Input,
}

value_spec_fields! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawReported {
        source: Spanned<RawSource>,
        address: Spanned<i64>,
        deadband: Option<Spanned<f64>>,
        telemetry: Option<Spanned<bool>>,
    }
}

/// `[profile.NAME]` without its point tables, which are deserialized one by one so a bad
/// entry does not hide the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfileHead {
    pub poll_interval: Option<Dur>,
    pub model_id: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDoor {
    pub device_id: Spanned<String>,
    pub bus: Spanned<String>,
    pub unit: Spanned<i64>,
    pub profile: Spanned<String>,
    pub key: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub group_key: Option<Spanned<bool>>,
    /// X.509: the door's certificate (PEM, CN = device id) and its private key file.
    pub cert_file: Option<Spanned<String>>,
    pub cert_key_file: Option<Spanned<String>>,
    pub tags: Option<Spanned<toml::Table>>,
    // `overrides` is taken out before deserializing: it is merged onto the profile's tables.
}
