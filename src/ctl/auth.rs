//! Which hub fieldctl talks to and how it signs in: the service connection string from
//! `--hub`, `--hub-file` or `IOTHUB_CONNECTION_STRING` (in that order of precedence), and
//! SAS `Authorization` headers signed locally from the policy key (https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iothub_proto::{sas, ConnectionString};

use super::error::CtlError;

/// Name of the environment variable holding the service connection string.
pub const HUB_ENV: &str = "IOTHUB_CONNECTION_STRING";

/// Lifetime of each token. Tokens are signed per request, so this only has to outlive one
/// request, retries included; an hour matches the SDKs.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Where the connection string came from (named in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubSource {
    Flag,
    File,
    Env,
}

impl HubSource {
    pub fn describe(self) -> &'static str {
        match self {
            HubSource::Flag => "from --hub",
            HubSource::File => "from --hub-file",
            HubSource::Env => "from IOTHUB_CONNECTION_STRING",
        }
    }
}

/// Picks the connection string: an explicit flag beats the environment. `--hub` and
/// `--hub-file` together are refused by the argument parser.
pub fn resolve_hub(
    flag: Option<&str>,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<(ConnectionString, HubSource), CtlError> {
    let (text, source) = if let Some(s) = flag {
        (s.to_string(), HubSource::Flag)
    } else if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| CtlError::File {
            what: "hub file",
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        (text, HubSource::File)
    } else if let Some(s) = env.filter(|s| !s.trim().is_empty()) {
        (s.to_string(), HubSource::Env)
    } else {
        return Err(CtlError::usage(
            "no hub given: pass --hub CONNSTR or --hub-file PATH, or set IOTHUB_CONNECTION_STRING",
        ));
    };
    let conn = parse_service(&text, source)?;
    Ok((conn, source))
}

/// Parses and checks that this is a *service* connection string (a policy, not a device).
pub fn parse_service(text: &str, source: HubSource) -> Result<ConnectionString, CtlError> {
    let bad = |detail: String| CtlError::ConnectionString {
        source_name: source.describe(),
        detail,
    };
    let conn = ConnectionString::parse(text.trim()).map_err(|e| bad(e.to_string()))?;
    if conn.device_id.is_some() || conn.key_name.is_none() {
        return Err(bad(
            "this is a device connection string; fieldctl needs a service policy's \
             (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)"
                .into(),
        ));
    }
    // Sign once now so a key that is not base64 is reported here, not on the first request.
    sas::generate(&conn.host_name, &conn.key, conn.key_name.as_deref(), 0)
        .map_err(|e| bad(e.to_string()))?;
    Ok(conn)
}

/// The `Authorization` header value for a request at `now`: a service token whose `sr` is the
/// HostName exactly as written (port included), signed with the policy key.
pub fn sas_header(conn: &ConnectionString, now: SystemTime) -> Result<String, sas::SasError> {
    let expiry = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(TOKEN_TTL)
        .as_secs();
    sas::generate(&conn.host_name, &conn.key, conn.key_name.as_deref(), expiry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::SasToken;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn svc(host: &str) -> String {
        format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}")
    }

    #[test]
    fn sas_header_signs_host_as_written() {
        let conn = ConnectionString::parse(&svc("localhost:8443")).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 3600);
        let h = sas_header(&conn, now).unwrap();
        let tok = SasToken::parse(&h).unwrap();
        assert_eq!(tok.sr_raw, "localhost%3A8443");
        assert_eq!(tok.resource, "localhost:8443");
        assert_eq!(tok.expiry, 1_700_000_000);
        assert_eq!(tok.policy.as_deref(), Some("iothubowner"));
        assert!(tok.signed_with(KEY));
        // Matches the reference vector for a plain host name.
        let conn = ConnectionString::parse(&svc("myhub.azure-devices.net")).unwrap();
        assert_eq!(
            sas_header(&conn, now).unwrap(),
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&se=1700000000&skn=iothubowner"
        );
    }

    #[test]
    fn sources_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub");
        std::fs::write(&file, format!("{}\n", svc("file-host"))).unwrap();
        let flag = svc("flag-host");
        let env = svc("env-host");

        let (c, s) = resolve_hub(Some(&flag), Some(&file), Some(&env)).unwrap();
        assert_eq!((c.host_name.as_str(), s), ("flag-host", HubSource::Flag));
        let (c, s) = resolve_hub(None, Some(&file), Some(&env)).unwrap();
        assert_eq!((c.host_name.as_str(), s), ("file-host", HubSource::File));
        let (c, s) = resolve_hub(None, None, Some(&env)).unwrap();
        assert_eq!((c.host_name.as_str(), s), ("env-host", HubSource::Env));
        let e = resolve_hub(None, None, Some("  ")).unwrap_err();
        assert!(e.to_string().contains("no hub given"), "{e}");
        let e = resolve_hub(None, Some(&dir.path().join("missing")), None).unwrap_err();
        assert!(e.to_string().starts_with("cannot read hub file"), "{e}");
    }

    #[test]
    fn malformed_connection_strings_are_named() {
        let e = resolve_hub(Some("HostName=h;SharedAccessKeyName=p"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed connection string (from --hub): connection string lacks SharedAccessKey"
        );
        let e = resolve_hub(None, None, Some("garbage")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed connection string (from IOTHUB_CONNECTION_STRING): connection string part 'garbage' is not Key=Value"
        );
        let e = resolve_hub(
            Some("HostName=h;DeviceId=d;SharedAccessKey=YQ=="),
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("device connection string"), "{e}");
        let e = resolve_hub(
            Some("HostName=h;SharedAccessKeyName=p;SharedAccessKey=!!notbase64"),
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not valid base64"), "{e}");
    }
}
