//! Which hub fieldctl talks to: the service connection string from `--hub`, `--hub-file` or
//! `IOTHUB_CONNECTION_STRING` (in that order of precedence), checked by
//! [`crate::service::auth`] and any fault named with where the string came from.

use std::path::Path;

use iothub_proto::ConnectionString;

use super::error::CtlError;
use crate::service::auth::{service_connection_string, AuthError};

/// Name of the environment variable holding the service connection string.
pub const HUB_ENV: &str = "IOTHUB_CONNECTION_STRING";

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
    service_connection_string(text).map_err(|e| CtlError::ConnectionString {
        source_name: source.describe(),
        detail: match e {
            AuthError::NotAService => "this is a device connection string; fieldctl needs a \
                 service policy's (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)"
                .into(),
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn svc(host: &str) -> String {
        format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}")
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
