//! A door's X.509 credentials (`cert_file`, `cert_key_file`): both files readable, the
//! certificate's common name equal to the device id (what IoT Hub requires of CA-signed
//! devices, and a cheap guard against swapped files), not expired, and a warning when it
//! expires within [`EXPIRY_WARNING`]. The key file gets the same mode check as key files.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::checks::{check_key_file_mode, path_in};
use super::error::Errors;
use super::model::KeySource;
use super::raw::RawDoor;

/// A certificate ending sooner than this is logged at every start.
pub(crate) const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

pub(crate) fn certificate(
    raw: &RawDoor,
    cert_file: &Spanned<String>,
    base: &Path,
    errs: &mut Errors<'_>,
) -> Option<KeySource> {
    let id = raw.device_id.get_ref();
    let Some(key_file) = &raw.cert_key_file else {
        errs.at_spanned(
            cert_file,
            format!("cert_file needs cert_key_file (the private key of {id}'s certificate)"),
        );
        return None;
    };
    let cert = path_in(base, cert_file.get_ref());
    let key = path_in(base, key_file.get_ref());
    if let Err(e) = check_key_file_mode("certificate key file", &key) {
        errs.at_spanned(key_file, e);
        return None;
    }
    let loaded = match crate::link::tls::ClientCert::load(&cert, &key) {
        Ok(c) => c,
        Err(e) => {
            let at = if e.contains(&key.display().to_string()) {
                key_file
            } else {
                cert_file
            };
            errs.at_spanned(at, e);
            return None;
        }
    };
    let leaf = &loaded.chain[0];
    match iothub_proto::x509::subject_cn(leaf) {
        Some(cn) if cn == *id => {}
        Some(cn) => {
            errs.at_spanned(
                cert_file,
                format!("the certificate in {} is for `{cn}` (its CN), not `{id}`: IoT Hub accepts a device's certificate only when its CN is the device id", cert.display()),
            );
            return None;
        }
        None => {
            errs.at_spanned(
                cert_file,
                format!("the certificate in {} has no common name (CN); it must be the device id `{id}`", cert.display()),
            );
            return None;
        }
    }
    let now = chrono::Utc::now().timestamp();
    match iothub_proto::x509::not_after(leaf) {
        Some(end) if end <= now => {
            errs.at_spanned(
                cert_file,
                format!(
                    "the certificate in {} expired at {}",
                    cert.display(),
                    chrono::DateTime::from_timestamp(end, 0).unwrap_or_default()
                ),
            );
            return None;
        }
        Some(end) if end - now < EXPIRY_WARNING.as_secs() as i64 => {
            tracing::warn!(device = %id, file = %cert.display(), expires = %chrono::DateTime::from_timestamp(end, 0).unwrap_or_default(), "door certificate expires soon: renew it before the hub refuses the door");
        }
        _ => {}
    }
    Some(KeySource::Certificate { cert, key })
}
