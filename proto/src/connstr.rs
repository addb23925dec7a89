//! Connection strings (`HostName=…;DeviceId=…;SharedAccessKey=…` or
//! `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`), https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionStringError {
    #[error("connection string part '{0}' is not Key=Value")]
    NotKeyValue(String),
    #[error("connection string has unknown key '{0}'")]
    UnknownKey(String),
    #[error("connection string lacks {0}")]
    Missing(&'static str),
    #[error("connection string repeats key '{0}'")]
    Repeated(String),
}

/// A parsed connection string. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// As written, possibly with `:port` (fieldhub on a high port).
    pub host_name: String,
    pub device_id: Option<String>,
    pub module_id: Option<String>,
    pub key_name: Option<String>,
    pub key: String,
    pub gateway_host_name: Option<String>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let mut host = None;
        let mut device = None;
        let mut module = None;
        let mut key_name = None;
        let mut key = None;
        let mut gateway = None;
        for part in s.trim().split(';').filter(|p| !p.trim().is_empty()) {
            // Values may contain '=' (base64 padding): split on the first only.
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ConnectionStringError::NotKeyValue(part.to_string()))?;
            let slot = match k.trim() {
                "HostName" => &mut host,
                "DeviceId" => &mut device,
                "ModuleId" => &mut module,
                "SharedAccessKeyName" => &mut key_name,
                "SharedAccessKey" => &mut key,
                "GatewayHostName" => &mut gateway,
                other => return Err(ConnectionStringError::UnknownKey(other.to_string())),
            };
            if slot.replace(v.trim().to_string()).is_some() {
                return Err(ConnectionStringError::Repeated(k.trim().to_string()));
            }
        }
        let host_name = host
            .filter(|h| !h.is_empty())
            .ok_or(ConnectionStringError::Missing("HostName"))?;
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or(ConnectionStringError::Missing("SharedAccessKey"))?;
        if device.is_none() && key_name.is_none() {
            return Err(ConnectionStringError::Missing(
                "DeviceId (device) or SharedAccessKeyName (service)",
            ));
        }
        Ok(ConnectionString {
            host_name,
            device_id: device,
            module_id: module,
            key_name,
            key,
            gateway_host_name: gateway,
        })
    }

    /// Host name without a port: what SAS `sr` and MQTT usernames use when the port is default.
    pub fn host_only(&self) -> &str {
        self.host_name
            .rsplit_once(':')
            .map_or(self.host_name.as_str(), |(h, _)| h)
    }
}

impl fmt::Display for ConnectionString {
    /// Writes the connection string back, key included (for files the operator asked for).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={}", self.host_name)?;
        if let Some(d) = &self.device_id {
            write!(f, ";DeviceId={d}")?;
        }
        if let Some(m) = &self.module_id {
            write!(f, ";ModuleId={m}")?;
        }
        if let Some(n) = &self.key_name {
            write!(f, ";SharedAccessKeyName={n}")?;
        }
        write!(f, ";SharedAccessKey={}", self.key)?;
        if let Some(g) = &self.gateway_host_name {
            write!(f, ";GatewayHostName={g}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_and_device() {
        let s = ConnectionString::parse(
            "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=YWJj==",
        )
        .unwrap();
        assert_eq!(s.host_name, "localhost:8443");
        assert_eq!(s.host_only(), "localhost");
        assert_eq!(s.key, "YWJj==");
        assert_eq!(ConnectionString::parse(&s.to_string()).unwrap(), s);
        let d = ConnectionString::parse("HostName=h;DeviceId=door-1;SharedAccessKey=a=").unwrap();
        assert_eq!(d.device_id.as_deref(), Some("door-1"));
        assert!(!format!("{d:?}").contains("a="));
    }

    #[test]
    fn errors() {
        use ConnectionStringError::*;
        assert_eq!(
            ConnectionString::parse("garbage").unwrap_err(),
            NotKeyValue("garbage".into())
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;Port=1").unwrap_err(),
            UnknownKey("Port".into())
        );
        assert_eq!(
            ConnectionString::parse("DeviceId=d;SharedAccessKey=k").unwrap_err(),
            Missing("HostName")
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;DeviceId=d").unwrap_err(),
            Missing("SharedAccessKey")
        );
        assert!(matches!(
            ConnectionString::parse("HostName=h;SharedAccessKey=k").unwrap_err(),
            Missing(_)
        ));
    }
}
