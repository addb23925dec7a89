//! Shared access signature tokens: signing (device and service tokens) and parsing/verifying
//! them as the hub does (https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

/// Everything but `A-Z a-z 0-9 - _ . ~` is encoded, as the SDKs do for `sr` and `sig`.
pub const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a string the way the SDKs encode `sr`, `sig` and URL path segments.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, STRICT).to_string()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SasError {
    #[error("shared access key is not valid base64")]
    BadKey,
    #[error("token does not start with 'SharedAccessSignature '")]
    BadPrefix,
    #[error("token lacks the '{0}' field")]
    MissingField(&'static str),
    #[error("token field '{0}' is malformed")]
    BadField(&'static str),
}

/// Resource URI of a device, as used in `sr` (not yet encoded).
pub fn device_resource(host: &str, device_id: &str) -> String {
    format!("{host}/devices/{device_id}")
}

/// HMAC-SHA256 over `encoded_sr + "\n" + expiry`, base64-encoded.
pub fn signature(key_b64: &str, encoded_sr: &str, expiry: &str) -> Result<String, SasError> {
    let key = B64.decode(key_b64.trim()).map_err(|_| SasError::BadKey)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::BadKey)?;
    mac.update(encoded_sr.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// A device key derived from a symmetric-key enrollment group's key, as the Device
/// Provisioning Service does: `base64(HMAC-SHA256(base64decode(group key), registration id))`
/// (Microsoft Learn, "Symmetric key attestation", group enrollments).
pub fn derive_device_key(group_key_b64: &str, registration_id: &str) -> Result<String, SasError> {
    let key = B64
        .decode(group_key_b64.trim())
        .map_err(|_| SasError::BadKey)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::BadKey)?;
    mac.update(registration_id.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// Builds a token for `resource` (unencoded, e.g. `host/devices/door-1` or `host`) valid until
/// `expiry` (Unix seconds). `policy` is the shared access policy name, `None` for device keys.
pub fn generate(
    resource: &str,
    key_b64: &str,
    policy: Option<&str>,
    expiry: u64,
) -> Result<String, SasError> {
    let sr = encode(resource);
    let se = expiry.to_string();
    let sig = signature(key_b64, &sr, &se)?;
    let mut token = format!("SharedAccessSignature sr={sr}&sig={}&se={se}", encode(&sig));
    if let Some(p) = policy {
        token.push_str("&skn=");
        token.push_str(&encode(p));
    }
    Ok(token)
}

/// A parsed token. `sr_raw` and `se_raw` are kept exactly as received, because the signature
/// covers them in that form (https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas).
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    pub sr_raw: String,
    /// `sr` percent-decoded, e.g. `myhub.azure-devices.net/devices/door-01`.
    pub resource: String,
    /// `sig` percent-decoded (base64 text).
    pub sig: String,
    pub se_raw: String,
    pub expiry: u64,
    pub policy: Option<String>,
}

impl std::fmt::Debug for SasToken {
    // The signature is a bearer credential until `se`: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("expiry", &self.expiry)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn decode(s: &str) -> String {
    // Python's service SDK uses quote_plus, so '+' may stand for a space in `sr`.
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl SasToken {
    /// Parses `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]` in any field order.
    pub fn parse(token: &str) -> Result<Self, SasError> {
        let body = token
            .trim()
            .strip_prefix("SharedAccessSignature ")
            .ok_or(SasError::BadPrefix)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for part in body.split('&') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "sr" => sr = Some(v),
                "sig" => sig = Some(v),
                "se" => se = Some(v),
                "skn" => skn = Some(v),
                _ => {}
            }
        }
        let sr_raw = sr.ok_or(SasError::MissingField("sr"))?;
        let sig = sig.ok_or(SasError::MissingField("sig"))?;
        let se_raw = se.ok_or(SasError::MissingField("se"))?;
        let expiry = se_raw.parse().map_err(|_| SasError::BadField("se"))?;
        Ok(SasToken {
            sr_raw: sr_raw.to_string(),
            resource: decode(sr_raw),
            sig: decode(sig),
            se_raw: se_raw.to_string(),
            expiry,
            policy: skn.map(decode).filter(|s| !s.is_empty()),
        })
    }

    /// True when the signature was made with `key_b64` (constant-time comparison of the
    /// decoded MAC bytes).
    pub fn signed_with(&self, key_b64: &str) -> bool {
        let Ok(expected) = signature(key_b64, &self.sr_raw, &self.se_raw) else {
            return false;
        };
        let (Ok(a), Ok(b)) = (B64.decode(expected), B64.decode(self.sig.trim())) else {
            return false;
        };
        a.len() == b.len() && a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// True when the token's resource covers `target` (`host/devices/id` or `host`): host
    /// compared case-insensitively, path matched by whole segments (`/a/b` covers `/a/b/c`,
    /// not `/a/bc`).
    pub fn covers(&self, target: &str) -> bool {
        let (th, tp) = split_host(&self.resource);
        let (gh, gp) = split_host(target);
        if !th.eq_ignore_ascii_case(gh) {
            return false;
        }
        let tseg: Vec<&str> = tp.split('/').filter(|s| !s.is_empty()).collect();
        let gseg: Vec<&str> = gp.split('/').filter(|s| !s.is_empty()).collect();
        tseg.len() <= gseg.len() && tseg.iter().zip(&gseg).all(|(a, b)| a == b)
    }
}

fn split_host(resource: &str) -> (&str, &str) {
    let r = resource
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    match r.find('/') {
        Some(i) => (&r[..i], &r[i..]),
        None => (r, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn device_token_matches_reference_vector() {
        let t = generate(
            "myhub.azure-devices.net/devices/door-01",
            KEY,
            None,
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(
            t,
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdoor-01&sig=9mES8TjF7ey%2B9gin44Zx%2B80r%2Bf8GCVR%2FaTMpxJPebb0%3D&se=1700000000"
        );
    }

    #[test]
    fn service_token_matches_reference_vector() {
        let t = generate(
            "myhub.azure-devices.net",
            KEY,
            Some("iothubowner"),
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(
            t,
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&se=1700000000&skn=iothubowner"
        );
    }

    #[test]
    fn parse_any_order_and_verify() {
        // Node order: sr, sig, skn, se; Python leaves '/' unescaped in sig.
        let t = "SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&skn=iothubowner&se=1700000000";
        let p = SasToken::parse(t).unwrap();
        assert_eq!(p.policy.as_deref(), Some("iothubowner"));
        assert_eq!(p.expiry, 1_700_000_000);
        assert!(p.signed_with(KEY));
        assert!(!p.signed_with("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(p.covers("myhub.azure-devices.net/devices/door-01"));
        assert!(p.covers("MYHUB.azure-devices.net"));
    }

    #[test]
    fn segment_prefix_matching() {
        let t = generate("h/devices/door-1", KEY, None, 1).unwrap();
        let p = SasToken::parse(&t).unwrap();
        assert!(p.covers("h/devices/door-1"));
        assert!(p.covers("h/devices/door-1/modules/m"));
        assert!(!p.covers("h/devices/door-10"));
        assert!(!p.covers("h/devices/door-2"));
        assert!(!p.covers("other/devices/door-1"));
    }

    #[test]
    fn malformed_tokens() {
        assert_eq!(
            SasToken::parse("Bearer x").unwrap_err(),
            SasError::BadPrefix
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&sig=b").unwrap_err(),
            SasError::MissingField("se")
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&sig=b&se=x").unwrap_err(),
            SasError::BadField("se")
        );
        assert_eq!(generate("h", "!!", None, 1).unwrap_err(), SasError::BadKey);
    }

    #[test]
    fn debug_hides_signature() {
        let t = generate("h/devices/d", KEY, None, 5).unwrap();
        let p = SasToken::parse(&t).unwrap();
        assert!(!format!("{p:?}").contains(&p.sig));
    }
}
