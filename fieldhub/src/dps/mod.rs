//! A Device Provisioning Service beside the hub: enrollment groups (symmetric key) and
//! individual enrollments, device registration over MQTT, registration states, and
//! allocation to this hub (Microsoft Learn, "Provision devices using MQTT" and "Symmetric key
//! attestation").
//!
//! Addressing: the service shares the hub's device listener and host name. A connection whose
//! CONNECT username is `{idScope}/registrations/{registrationId}/api-version=…` is a
//! registration client and is served by [`mqtt`]; any other is a device. The official
//! provisioning SDKs dial their global endpoint on 8883 (or 443 for WebSockets) and verify it
//! against the certificate they are given, so routing by username lets them reach fieldhub
//! on the one port and certificate they can already use, over MQTT and WebSockets alike,
//! with no second address or listener to set up.
//!
//! State lives in the hub database (tables `dps_*`) and in memory behind its own mutex;
//! allocation goes through the hub's registry and twin operations, like a service client.

mod model;
pub(crate) mod mqtt;
pub(crate) mod rest;

pub use model::{
    Attestation, EnrollmentGroup, IndividualEnrollment, ProvisioningStatus, RegistrationState,
    RegistrationStatus, SymmetricKey, X509Attestation, X509Certificate, X509Certificates,
};

use std::collections::{BTreeMap, HashMap};

use iothub_proto::sas::derive_device_key;
use iothub_proto::SasToken;
use redb::TableDefinition;
use serde_json::{json, Value};

use crate::error::HubError;
use crate::hub::{now_iso, unix_now, DeviceUpdate, Hub};
use crate::store::Store;

const GROUPS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("dps_groups");
const ENROLLMENTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("dps_enrollments");
const REGISTRATIONS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("dps_registrations");
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("dps_meta");

/// Seconds a device is told to wait before polling an operation (`retry-after`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// The DPS part of the hub state.
#[derive(Debug, Default)]
pub(crate) struct DpsState {
    pub id_scope: String,
    groups: BTreeMap<String, EnrollmentGroup>,
    enrollments: BTreeMap<String, IndividualEnrollment>,
    registrations: BTreeMap<String, RegistrationState>,
    /// Registration id → its latest operation id, for status polls (the outcome is decided
    /// at once). One entry per registration id, so it stays as small as the registrations.
    operations: HashMap<String, String>,
    /// Register requests served since start (tests count re-registrations with it).
    register_calls: u64,
    /// At most one registration per this interval; others are answered 429 with
    /// `retry-after` (DPS enforces per-unit registration quotas the same way).
    throttle: Option<std::time::Duration>,
    last_register: Option<std::time::Instant>,
    throttled_calls: u64,
}

/// Loads the DPS tables, choosing an ID scope (`0ne` and 8 hex digits, the form Azure uses)
/// on first start.
pub(crate) fn load(store: &Store) -> Result<DpsState, HubError> {
    let id_scope = match store
        .load::<String>(META)?
        .into_iter()
        .find(|(k, _)| k == "idScope")
    {
        Some((_, s)) => s,
        None => {
            let s = format!("0ne{:08X}", rand::random::<u32>());
            store.put(META, "idScope", Some(&s), true)?;
            s
        }
    };
    let st = DpsState {
        id_scope,
        groups: store.load(GROUPS)?.into_iter().collect(),
        enrollments: store.load(ENROLLMENTS)?.into_iter().collect(),
        registrations: store.load(REGISTRATIONS)?.into_iter().collect(),
        ..DpsState::default()
    };
    Ok(st)
}

/// A registration client's CONNECT username: `{idScope}/registrations/{registrationId}/…`.
pub fn parse_username(username: &str) -> Option<(&str, &str)> {
    let mut parts = username.splitn(4, '/');
    let scope = parts.next()?;
    (parts.next()? == "registrations").then_some(())?;
    let reg = parts.next()?;
    let rest = parts.next()?;
    (!scope.is_empty() && !reg.is_empty() && rest.starts_with("api-version="))
        .then_some((scope, reg))
}

/// Registration ids: lowercase alphanumerics and `-`, up to 128 characters (Microsoft Learn,
/// "DPS terminology", registration ID).
pub fn valid_registration_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b':')
        })
}

/// Which enrollment a registration client proved it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Enrollment {
    Individual(String),
    Group(String),
}

/// Why a registration client was turned away at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DpsRefusal {
    #[error("unknown ID scope '{0}'")]
    UnknownScope(String),
    #[error("malformed registration token: {0}")]
    Malformed(String),
    #[error("registration token expired")]
    Expired,
    #[error("token does not name registration '{0}'")]
    WrongResource(String),
    #[error("no enrollment accepts registration '{0}' (wrong key, or not enrolled)")]
    NoEnrollment(String),
}

fn keys_sign(t: &SasToken, keys: &SymmetricKey, derive_for: Option<&str>) -> bool {
    [&keys.primary_key, &keys.secondary_key]
        .into_iter()
        .filter(|k| !k.is_empty())
        .any(|k| match derive_for {
            Some(reg) => derive_device_key(k, reg).is_ok_and(|dk| t.signed_with(&dk)),
            None => t.signed_with(k),
        })
}

impl DpsState {
    /// Checks a registration client's SAS token (`sr={idScope}/registrations/{id}`), signed
    /// with its individual enrollment's key or a key derived from a group's.
    pub(crate) fn authenticate(
        &self,
        scope: &str,
        registration_id: &str,
        password: &str,
        now: u64,
    ) -> Result<Enrollment, DpsRefusal> {
        if !scope.eq_ignore_ascii_case(&self.id_scope) {
            return Err(DpsRefusal::UnknownScope(scope.to_string()));
        }
        let t = SasToken::parse(password).map_err(|e| DpsRefusal::Malformed(e.to_string()))?;
        if t.expiry <= now {
            return Err(DpsRefusal::Expired);
        }
        let want = format!("{}/registrations/{registration_id}", self.id_scope);
        if !t.resource.eq_ignore_ascii_case(&want) {
            return Err(DpsRefusal::WrongResource(registration_id.to_string()));
        }
        // An individual enrollment takes precedence over any group (as DPS does).
        if let Some(e) = self.enrollments.get(registration_id) {
            return match &e.attestation.symmetric_key {
                Some(k) if keys_sign(&t, k, None) => {
                    Ok(Enrollment::Individual(registration_id.to_string()))
                }
                _ => Err(DpsRefusal::NoEnrollment(registration_id.to_string())),
            };
        }
        self.groups
            .values()
            .find(|g| {
                g.attestation
                    .symmetric_key
                    .as_ref()
                    .is_some_and(|k| keys_sign(&t, k, Some(registration_id)))
            })
            .map(|g| Enrollment::Group(g.enrollment_group_id.clone()))
            .ok_or_else(|| DpsRefusal::NoEnrollment(registration_id.to_string()))
    }
}

impl DpsState {
    /// The signing certificates of every X.509 enrollment group (trusted by the hub for the
    /// devices they provisioned).
    pub(crate) fn group_cas(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.groups
            .values()
            .flat_map(|g| g.attestation.signing_certificates())
            .collect()
    }

    /// Checks a registration client's certificate chain (leaf first): its CN must be the
    /// registration id, and the chain must end at an `x509` enrollment group's signing
    /// certificate.
    pub(crate) fn authenticate_x509(
        &self,
        scope: &str,
        registration_id: &str,
        chain: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Enrollment, DpsRefusal> {
        if !scope.eq_ignore_ascii_case(&self.id_scope) {
            return Err(DpsRefusal::UnknownScope(scope.to_string()));
        }
        let leaf = chain
            .first()
            .ok_or_else(|| DpsRefusal::Malformed("no client certificate".into()))?;
        if crate::x509::subject_cn(leaf).as_deref() != Some(registration_id) {
            return Err(DpsRefusal::WrongResource(registration_id.to_string()));
        }
        self.groups
            .values()
            .find(|g| {
                let cas = g.attestation.signing_certificates();
                !cas.is_empty() && crate::x509::chains_to(chain, &cas)
            })
            .map(|g| Enrollment::Group(g.enrollment_group_id.clone()))
            .ok_or_else(|| DpsRefusal::NoEnrollment(registration_id.to_string()))
    }
}

fn bad(m: impl Into<String>) -> HubError {
    HubError::ArgumentInvalid(m.into())
}

/// Fills generated keys and checks an attestation on its way in. `x509` is accepted for
/// enrollment groups (a signing certificate), not for individual enrollments.
fn prepare_attestation(a: &mut Attestation, group: bool) -> Result<(), HubError> {
    if group && a.kind.eq_ignore_ascii_case("x509") {
        if a.signing_certificates().is_empty() {
            return Err(bad(
                "an x509 enrollment group needs x509.signingCertificates.primary.certificate (PEM or base64 DER)",
            ));
        }
        a.symmetric_key = None;
        return Ok(());
    }
    if !a.kind.eq_ignore_ascii_case("symmetricKey") {
        return Err(bad(format!(
            "attestation type '{}' is not supported by fieldhub's DPS here (symmetricKey; x509 for enrollment groups)",
            a.kind
        )));
    }
    a.x509 = None;
    let k = a.symmetric_key.get_or_insert_with(SymmetricKey::default);
    for key in [&mut k.primary_key, &mut k.secondary_key] {
        if key.trim().is_empty() {
            *key = crate::auth::generate_key();
        }
        crate::registry::validate_key(key)?;
    }
    Ok(())
}

fn check_initial_twin(t: &Option<Value>) -> Result<(), HubError> {
    match t {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(bad("initialTwin must be an object")),
    }
}

/// The `If-Match` rule of the service API: none or `*` always matches.
fn etag_ok(if_match: Option<&str>, current: &str) -> bool {
    crate::hub::if_match_ok(if_match, current)
}

impl Hub {
    fn dps(&self) -> std::sync::MutexGuard<'_, DpsState> {
        self.inner.dps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ID scope devices register under.
    pub fn dps_id_scope(&self) -> String {
        self.dps().id_scope.clone()
    }

    /// Register requests served since the hub started.
    pub fn dps_register_calls(&self) -> u64 {
        self.dps().register_calls
    }

    /// Register requests answered 429 since the hub started.
    pub fn dps_throttled_calls(&self) -> u64 {
        self.dps().throttled_calls
    }

    /// Limits registrations to one per `interval` (`None`: unlimited, the default), to
    /// exercise clients' handling of DPS quotas.
    pub fn set_dps_throttle(&self, interval: Option<std::time::Duration>) {
        self.dps().throttle = interval;
    }

    /// Whether a register request must wait: how long, rounded up to whole seconds.
    pub(crate) fn dps_throttled(&self) -> Option<u64> {
        let mut st = self.dps();
        let interval = st.throttle?;
        let now = std::time::Instant::now();
        match st.last_register {
            Some(last) if now < last + interval => {
                st.throttled_calls += 1;
                let wait = (last + interval) - now;
                Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            _ => {
                st.last_register = Some(now);
                None
            }
        }
    }

    /// The host name devices are assigned to: `host:port` when the device listener is not
    /// on 8883, so tests on ephemeral ports get an address they can dial.
    fn assigned_hub(&self) -> String {
        match self.inner.mqtt_addr.port() {
            8883 | 0 => self.inner.hostname.clone(),
            p => format!("{}:{p}", self.inner.hostname),
        }
    }

    /// Creates or replaces an enrollment group (keys generated when empty).
    pub fn dps_put_group(
        &self,
        id: &str,
        mut g: EnrollmentGroup,
        if_match: Option<&str>,
    ) -> Result<EnrollmentGroup, HubError> {
        if g.enrollment_group_id != id {
            return Err(bad("enrollmentGroupId in the body differs from the URL"));
        }
        prepare_attestation(&mut g.attestation, true)?;
        check_initial_twin(&g.initial_twin)?;
        let mut st = self.dps();
        let now = now_iso();
        match st.groups.get(id) {
            Some(old) => {
                if !etag_ok(if_match, &old.etag) {
                    return Err(HubError::PreconditionFailed(format!(
                        "etag of enrollment group '{id}' does not match"
                    )));
                }
                g.created_date_time_utc = old.created_date_time_utc.clone();
            }
            None => g.created_date_time_utc = now.clone(),
        }
        g.last_updated_date_time_utc = now;
        g.etag = format!("\"{}\"", uuid::Uuid::new_v4().simple());
        self.inner.store.put(GROUPS, id, Some(&g), true)?;
        st.groups.insert(id.to_string(), g.clone());
        Ok(g)
    }

    pub fn dps_group(&self, id: &str) -> Result<EnrollmentGroup, HubError> {
        self.dps()
            .groups
            .get(id)
            .cloned()
            .ok_or_else(|| HubError::NotFound(format!("enrollment group '{id}'")))
    }

    pub fn dps_groups(&self) -> Vec<EnrollmentGroup> {
        self.dps().groups.values().cloned().collect()
    }

    pub fn dps_delete_group(&self, id: &str, if_match: Option<&str>) -> Result<(), HubError> {
        let mut st = self.dps();
        let g = st
            .groups
            .get(id)
            .ok_or_else(|| HubError::NotFound(format!("enrollment group '{id}'")))?;
        if !etag_ok(if_match, &g.etag) {
            return Err(HubError::PreconditionFailed(format!(
                "etag of enrollment group '{id}' does not match"
            )));
        }
        self.inner.store.put::<()>(GROUPS, id, None, true)?;
        st.groups.remove(id);
        Ok(())
    }

    pub fn dps_put_enrollment(
        &self,
        id: &str,
        mut e: IndividualEnrollment,
        if_match: Option<&str>,
    ) -> Result<IndividualEnrollment, HubError> {
        if e.registration_id != id {
            return Err(bad("registrationId in the body differs from the URL"));
        }
        if !valid_registration_id(id) {
            return Err(bad(format!("'{id}' is not a valid registration id (lowercase letters, digits and '-', up to 128)")));
        }
        if let Some(d) = &e.device_id {
            crate::registry::validate_device_id(d)?;
        }
        prepare_attestation(&mut e.attestation, false)?;
        check_initial_twin(&e.initial_twin)?;
        let mut st = self.dps();
        let now = now_iso();
        match st.enrollments.get(id) {
            Some(old) => {
                if !etag_ok(if_match, &old.etag) {
                    return Err(HubError::PreconditionFailed(format!(
                        "etag of enrollment '{id}' does not match"
                    )));
                }
                e.created_date_time_utc = old.created_date_time_utc.clone();
            }
            None => e.created_date_time_utc = now.clone(),
        }
        e.last_updated_date_time_utc = now;
        e.etag = format!("\"{}\"", uuid::Uuid::new_v4().simple());
        self.inner.store.put(ENROLLMENTS, id, Some(&e), true)?;
        st.enrollments.insert(id.to_string(), e.clone());
        Ok(e)
    }

    pub fn dps_enrollment(&self, id: &str) -> Result<IndividualEnrollment, HubError> {
        self.dps()
            .enrollments
            .get(id)
            .cloned()
            .ok_or_else(|| HubError::NotFound(format!("enrollment '{id}'")))
    }

    pub fn dps_enrollments(&self) -> Vec<IndividualEnrollment> {
        self.dps().enrollments.values().cloned().collect()
    }

    /// Deletes an individual enrollment; `If-Match` as for groups (Microsoft Learn,
    /// "Individual Enrollment - Delete").
    pub fn dps_delete_enrollment(&self, id: &str, if_match: Option<&str>) -> Result<(), HubError> {
        let mut st = self.dps();
        let e = st
            .enrollments
            .get(id)
            .ok_or_else(|| HubError::NotFound(format!("enrollment '{id}'")))?;
        if !etag_ok(if_match, &e.etag) {
            return Err(HubError::PreconditionFailed(format!(
                "etag of enrollment '{id}' does not match"
            )));
        }
        self.inner.store.put::<()>(ENROLLMENTS, id, None, true)?;
        st.enrollments.remove(id);
        Ok(())
    }

    pub fn dps_registration(&self, id: &str) -> Result<RegistrationState, HubError> {
        self.dps()
            .registrations
            .get(id)
            .cloned()
            .ok_or_else(|| HubError::NotFound(format!("registration '{id}'")))
    }

    /// Registration states, of one enrollment group or (`None`) of all.
    pub fn dps_registrations(&self, group: Option<&str>) -> Vec<RegistrationState> {
        self.dps()
            .registrations
            .values()
            .filter(|r| group.is_none() || r.enrollment_group_id.as_deref() == group)
            .cloned()
            .collect()
    }

    pub fn dps_delete_registration(&self, id: &str) -> Result<(), HubError> {
        let mut st = self.dps();
        if st.registrations.remove(id).is_none() {
            return Err(HubError::NotFound(format!("registration '{id}'")));
        }
        self.inner.store.put::<()>(REGISTRATIONS, id, None, true)?;
        Ok(())
    }

    /// Checks a registration client's CONNECT made with a certificate.
    pub(crate) fn dps_authenticate_x509(
        &self,
        scope: &str,
        registration_id: &str,
        chain: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Enrollment, DpsRefusal> {
        self.dps().authenticate_x509(scope, registration_id, chain)
    }

    /// Checks a registration client's CONNECT.
    pub(crate) fn dps_authenticate(
        &self,
        scope: &str,
        registration_id: &str,
        password: &str,
    ) -> Result<Enrollment, DpsRefusal> {
        self.dps()
            .authenticate(scope, registration_id, password, unix_now())
    }

    /// Runs a registration to its end (allocation is immediate here) and returns the
    /// operation id under which the device polls for the outcome.
    pub(crate) fn dps_register(
        &self,
        who: &Enrollment,
        registration_id: &str,
        payload: Option<Value>,
    ) -> (String, RegistrationState) {
        let state = self.allocate(who, registration_id, payload);
        let op = uuid::Uuid::new_v4().to_string();
        let mut st = self.dps();
        st.register_calls += 1;
        st.operations
            .insert(registration_id.to_string(), op.clone());
        if let Err(e) = self
            .inner
            .store
            .put(REGISTRATIONS, registration_id, Some(&state), true)
        {
            tracing::warn!(registration = %registration_id, error = %e, "registration state not stored");
        }
        st.registrations
            .insert(registration_id.to_string(), state.clone());
        (op, state)
    }

    /// The outcome of an operation, if it is this registration's.
    pub(crate) fn dps_operation(
        &self,
        operation_id: &str,
        registration_id: &str,
    ) -> Option<RegistrationState> {
        let st = self.dps();
        (st.operations.get(registration_id).map(String::as_str) == Some(operation_id))
            .then(|| st.registrations.get(registration_id).cloned())
            .flatten()
    }

    /// Creates (or re-keys) the device in this hub and applies the enrollment's initial twin
    /// to a new device.
    fn allocate(
        &self,
        who: &Enrollment,
        registration_id: &str,
        payload: Option<Value>,
    ) -> RegistrationState {
        let now = now_iso();
        let (keys, derive, device_id, status, initial_twin, group, cas) = {
            let st = self.dps();
            let cas = match who {
                Enrollment::Group(gid) => st
                    .groups
                    .get(gid)
                    .map(|g| g.attestation.signing_certificates())
                    .unwrap_or_default(),
                Enrollment::Individual(_) => Vec::new(),
            };
            match who {
                Enrollment::Individual(id) => match st.enrollments.get(id) {
                    Some(e) => (
                        e.attestation.symmetric_key.clone(),
                        false,
                        e.device_id.clone().unwrap_or_else(|| id.clone()),
                        e.provisioning_status,
                        e.initial_twin.clone(),
                        None,
                        cas.clone(),
                    ),
                    None => (
                        None,
                        false,
                        id.clone(),
                        ProvisioningStatus::Disabled,
                        None,
                        None,
                        cas.clone(),
                    ),
                },
                Enrollment::Group(gid) => match st.groups.get(gid) {
                    Some(g) => (
                        g.attestation.symmetric_key.clone(),
                        true,
                        registration_id.to_string(),
                        g.provisioning_status,
                        g.initial_twin.clone(),
                        Some(gid.clone()),
                        cas.clone(),
                    ),
                    None => (
                        None,
                        true,
                        registration_id.to_string(),
                        ProvisioningStatus::Disabled,
                        None,
                        Some(gid.clone()),
                        cas.clone(),
                    ),
                },
            }
        };
        let previous = self.dps().registrations.get(registration_id).cloned();
        let mut state = RegistrationState {
            registration_id: registration_id.to_string(),
            created_date_time_utc: previous
                .as_ref()
                .map_or_else(|| now.clone(), |p| p.created_date_time_utc.clone()),
            assigned_hub: None,
            device_id: None,
            status: RegistrationStatus::Assigned,
            substatus: None,
            error_code: None,
            error_message: None,
            last_updated_date_time_utc: now,
            etag: format!("\"{}\"", uuid::Uuid::new_v4().simple()),
            payload,
            enrollment_group_id: group,
        };
        if status != ProvisioningStatus::Enabled || (keys.is_none() && cas.is_empty()) {
            state.status = RegistrationStatus::Disabled;
            state.error_code = Some(401_002);
            state.error_message = Some("the enrollment is disabled".into());
            return state;
        }
        let upd = match keys {
            Some(keys) => {
                let key = |k: &str| {
                    if derive {
                        derive_device_key(k, registration_id).unwrap_or_default()
                    } else {
                        k.to_string()
                    }
                };
                DeviceUpdate {
                    primary_key: Some(key(&keys.primary_key)),
                    secondary_key: Some(key(&keys.secondary_key)),
                    ..DeviceUpdate::default()
                }
            }
            // An X.509 group's device authenticates at the hub by the same CA (CN = id).
            None => {
                for ca in &cas {
                    self.trust_ca(ca);
                }
                DeviceUpdate {
                    auth: Some(crate::x509::AuthType::CertificateAuthority),
                    ..DeviceUpdate::default()
                }
            }
        };
        let existed = self.get_device(&device_id).is_ok();
        let result = self
            .upsert_device(&device_id, upd, existed.then_some("*"))
            .and_then(|_| match initial_twin.filter(|t| t.is_object() && !existed) {
                Some(t) => {
                    let patch = json!({
                        "tags": t.get("tags").cloned().unwrap_or(Value::Null),
                        "properties": {"desired": t.pointer("/properties/desired").cloned().unwrap_or(Value::Null)},
                    });
                    self.update_twin(&device_id, strip_nulls(patch), None).map(|_| ())
                }
                None => Ok(()),
            });
        match result {
            Ok(()) => {
                state.assigned_hub = Some(self.assigned_hub());
                state.device_id = Some(device_id);
                state.substatus = Some(
                    if existed && previous.is_some() {
                        "reprovisionedToInitialAssignment"
                    } else {
                        "initialAssignment"
                    }
                    .into(),
                );
            }
            Err(e) => {
                tracing::warn!(registration = %registration_id, error = %e, "allocation failed");
                state.status = RegistrationStatus::Failed;
                state.error_code = Some(500_000);
                state.error_message = Some(format!("allocation to the hub failed: {e}"));
            }
        }
        state
    }
}

/// Drops null members so an initial twin without tags or desired writes nothing there.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .filter(|(_, v)| !matches!(v, Value::Object(o) if o.is_empty()))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::sas;

    const GROUP_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn state() -> DpsState {
        let mut st = DpsState {
            id_scope: "0ne0000ABCD".into(),
            ..DpsState::default()
        };
        st.groups.insert(
            "site".into(),
            EnrollmentGroup {
                enrollment_group_id: "site".into(),
                attestation: Attestation {
                    kind: "symmetricKey".into(),
                    symmetric_key: Some(SymmetricKey {
                        primary_key: GROUP_KEY.into(),
                        secondary_key: String::new(),
                    }),
                    x509: None,
                },
                provisioning_status: ProvisioningStatus::Enabled,
                initial_twin: None,
                etag: String::new(),
                created_date_time_utc: String::new(),
                last_updated_date_time_utc: String::new(),
            },
        );
        st
    }

    fn token(scope: &str, reg: &str, key: &str, exp: u64) -> String {
        sas::generate(
            &format!("{scope}/registrations/{reg}"),
            key,
            Some("registration"),
            exp,
        )
        .unwrap()
    }

    #[test]
    fn usernames() {
        assert_eq!(
            parse_username("0ne00/registrations/door-1/api-version=2019-03-31&ClientVersion=x"),
            Some(("0ne00", "door-1"))
        );
        assert_eq!(parse_username("hub/door-1/?api-version=2021-04-12"), None);
        assert_eq!(parse_username("0ne00/registrations/door-1"), None);
    }

    #[test]
    fn group_derived_key_authenticates_and_others_do_not() {
        let st = state();
        let dk = sas::derive_device_key(GROUP_KEY, "door-1").unwrap();
        let ok = token("0ne0000ABCD", "door-1", &dk, 2000);
        assert_eq!(
            st.authenticate("0ne0000ABCD", "door-1", &ok, 1000),
            Ok(Enrollment::Group("site".into()))
        );
        // A key derived for another registration id, the group key itself, a wrong scope,
        // an expired token.
        let other = sas::derive_device_key(GROUP_KEY, "door-2").unwrap();
        for (scope, pw) in [
            ("0ne0000ABCD", token("0ne0000ABCD", "door-1", &other, 2000)),
            (
                "0ne0000ABCD",
                token("0ne0000ABCD", "door-1", GROUP_KEY, 2000),
            ),
            ("0ne0000ABCD", token("0ne0000ABCD", "door-1", &dk, 999)),
            ("0ne9999", ok.clone()),
        ] {
            assert!(st.authenticate(scope, "door-1", &pw, 1000).is_err());
        }
        assert!(matches!(
            st.authenticate("0ne9999", "door-1", &ok, 1000),
            Err(DpsRefusal::UnknownScope(_))
        ));
    }

    #[test]
    fn initial_twin_nulls_are_dropped() {
        assert_eq!(
            strip_nulls(json!({"tags": {"building": "43"}, "properties": {"desired": null}})),
            json!({"tags": {"building": "43"}})
        );
    }
}
