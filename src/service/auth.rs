//! How a service client signs in: a service policy's connection string
//! (`HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`) checked once, and SAS
//! `Authorization` headers signed locally from the policy key for each request
//! (<https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas>).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iothub_proto::{sas, ConnectionString, ConnectionStringError};

/// Lifetime of each token. Tokens are signed per request, so this only has to outlive one
/// request, retries included; an hour matches the SDKs.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A connection string a service client cannot sign in with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Malformed(#[from] ConnectionStringError),
    /// A device's own connection string: it has no policy name, or names a device.
    #[error(
        "this is a device connection string; a service client needs a service policy's \
         (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)"
    )]
    NotAService,
    /// The key does not decode (not base64).
    #[error(transparent)]
    Key(#[from] sas::SasError),
}

/// Parses `text` (surrounding whitespace ignored) and checks that it is a *service*
/// connection string: a policy, not a device.
pub fn service_connection_string(text: &str) -> Result<ConnectionString, AuthError> {
    let conn = ConnectionString::parse(text.trim())?;
    if conn.device_id.is_some() || conn.key_name.is_none() {
        return Err(AuthError::NotAService);
    }
    // Sign once now so a key that is not base64 is reported here, not on the first request.
    sas::generate(&conn.host_name, &conn.key, conn.key_name.as_deref(), 0)?;
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
    fn only_service_policies_pass() {
        let conn = service_connection_string(&format!(" {}\n", svc("h"))).unwrap();
        assert_eq!(conn.key_name.as_deref(), Some("iothubowner"));
        let e = service_connection_string("HostName=h;SharedAccessKeyName=p").unwrap_err();
        assert_eq!(e.to_string(), "connection string lacks SharedAccessKey");
        let e = service_connection_string("HostName=h;DeviceId=d;SharedAccessKey=YQ==");
        assert!(matches!(e, Err(AuthError::NotAService)), "{e:?}");
        let e = service_connection_string(
            "HostName=h;SharedAccessKeyName=p;SharedAccessKey=!!notbase64",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not valid base64"), "{e}");
    }
}
