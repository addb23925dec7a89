//! Errors of fieldctl and what they mean for the exit code: [`CtlError`] for everything a
//! command can fail with, each rendered as one line naming the problem, and the mappers that
//! read a [`ClientError`] in the light of what the command asked for (a 404 on a job path is
//! an unknown job, a 400 on a query is the operator's syntax error, …).

use crate::service::{ClientError, ServiceError};

/// Exit status: everything went as asked.
pub const EXIT_OK: i32 = 0;
/// Exit status: the job failed, a device failed, or `--wait` timed out.
pub const EXIT_FAILED: i32 = 1;
/// Exit status: bad usage, bad input, or the hub could not be reached or refused the request.
pub const EXIT_USAGE: i32 = 2;

/// Everything a fieldctl command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad arguments or input found before talking to the hub.
    #[error("{0}")]
    Usage(String),
    #[error("malformed connection string ({source_name}): {detail}")]
    ConnectionString {
        source_name: &'static str,
        detail: String,
    },
    #[error("cannot read {what} {path}: {detail}")]
    File {
        what: &'static str,
        path: String,
        detail: String,
    },
    /// The hub could not be reached (DNS, TCP, TLS, timeout).
    #[error("cannot reach the hub at {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("job '{0}' not found on the hub")]
    JobNotFound(String),
    #[error("device '{0}' not found on the hub")]
    DeviceNotFound(String),
    #[error("invalid query `{query}`: {message}")]
    InvalidQuery { query: String, message: String },
    /// A single-device operation reached the hub but the device did not do it (offline,
    /// no answer in time, error status). Exit status 1, like a failed device in a job.
    #[error("device '{device}': {detail}")]
    DeviceFailed { device: String, detail: String },
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
}

impl CtlError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::DeviceFailed { .. } => EXIT_FAILED,
            _ => EXIT_USAGE,
        }
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        CtlError::Usage(msg.into())
    }
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Service(s) => CtlError::Service(s),
            ClientError::Transport { url, detail } => CtlError::Transport { url, detail },
            other => CtlError::Usage(other.to_string()),
        }
    }
}

/// Unknown device: usage error (exit 2). Device offline or silent: the device failed (exit 1).
pub(crate) fn method_err(device: &str, e: ClientError) -> CtlError {
    match e {
        ClientError::Service(s)
            if s.status == 404 && s.code.as_deref() != Some("DeviceNotOnline") =>
        {
            CtlError::DeviceNotFound(device.to_string())
        }
        ClientError::Service(s) if s.status == 404 || s.status == 504 => CtlError::DeviceFailed {
            device: device.to_string(),
            detail: s.to_string(),
        },
        other => other.into(),
    }
}

pub(crate) fn device_err(device: &str) -> impl Fn(ClientError) -> CtlError + '_ {
    move |e| match e {
        ClientError::Service(s) if s.status == 404 => CtlError::DeviceNotFound(device.to_string()),
        other => other.into(),
    }
}

/// A 400 on the probe of a job's condition, with the position moved into the user's own
/// text (the hub counts from the `SELECT … WHERE` fieldctl put in front) and marked there.
pub(crate) fn condition_err(
    condition: &str,
    prefix: usize,
) -> impl Fn(ClientError) -> CtlError + '_ {
    move |e| match e {
        ClientError::Service(s) if s.status == 400 => {
            let message = s.to_string();
            let (message, caret) = match shift_position(&message, prefix) {
                Some((m, pos)) => (m, Some(pos)),
                None => (message, None),
            };
            let mut message = message;
            // Errors are one line: the place is marked inside the condition itself.
            if let Some(pos) = caret {
                let (before, after): (String, String) = {
                    let cut = pos.min(condition.chars().count());
                    (
                        condition.chars().take(cut).collect(),
                        condition.chars().skip(cut).collect(),
                    )
                };
                message.push_str(&format!(" (here: {before}^{after})"));
            }
            CtlError::InvalidQuery {
                query: condition.to_string(),
                message,
            }
        }
        other => other.into(),
    }
}

/// `…position N…` with N reduced by `prefix`, and the new N; `None` when the message has no
/// position inside the condition.
fn shift_position(message: &str, prefix: usize) -> Option<(String, usize)> {
    let at = message.find("position ")? + "position ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: usize = digits.parse().ok()?;
    let pos = n.checked_sub(prefix)?;
    let shifted = format!("{}{}{}", &message[..at], pos, &message[at + digits.len()..]);
    Some((shifted, pos))
}

/// 404 on a job path means the job id is unknown.
pub(crate) fn job_err(id: &str) -> impl Fn(ClientError) -> CtlError + '_ {
    move |e| match e {
        ClientError::Service(s) if s.status == 404 => CtlError::JobNotFound(id.to_string()),
        other => other.into(),
    }
}

/// 400 on creating a job: the hub refused the request as written.
pub(crate) fn job_create_err(id: &str) -> impl Fn(ClientError) -> CtlError + '_ {
    move |e| match e {
        ClientError::Service(s) if s.status == 400 => {
            CtlError::usage(format!("the hub refused job '{id}': {s}"))
        }
        other => other.into(),
    }
}

/// 400 on a query means the hub could not parse it; its message says where.
pub(crate) fn query_err(query: String) -> impl Fn(ClientError) -> CtlError {
    move |e| match e {
        ClientError::Service(s) if s.status == 400 => CtlError::InvalidQuery {
            query: query.clone(),
            message: s.to_string(),
        },
        other => other.into(),
    }
}

/// What a command that ran to its end concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The job failed or was cancelled, a device failed, or waiting timed out.
    Failed,
}

/// Maps a command's result to the process exit status (documented in `fieldctl --help`).
pub fn exit_code(result: &Result<Outcome, CtlError>) -> i32 {
    match result {
        Ok(Outcome::Success) => EXIT_OK,
        Ok(Outcome::Failed) => EXIT_FAILED,
        Err(e) => e.exit_code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&Ok(Outcome::Success)), 0);
        assert_eq!(exit_code(&Ok(Outcome::Failed)), 1);
        assert_eq!(exit_code(&Err(CtlError::usage("bad"))), 2);
        assert_eq!(exit_code(&Err(CtlError::JobNotFound("j".into()))), 2);
        assert_eq!(
            exit_code(&Err(CtlError::Transport {
                url: "https://h".into(),
                detail: "refused".into()
            })),
            2
        );
        assert_eq!(
            exit_code(&Err(CtlError::Service(ServiceError {
                status: 401,
                code: None,
                message: String::new()
            }))),
            2
        );
        assert_eq!(
            exit_code(&Err(CtlError::DeviceFailed {
                device: "d".into(),
                detail: "offline".into()
            })),
            1
        );
    }

    #[test]
    fn method_errors_map_to_exit_codes() {
        let svc = |status, code: &str| {
            ClientError::Service(ServiceError {
                status,
                code: Some(code.into()),
                message: "m".into(),
            })
        };
        let e = method_err("d", svc(404, "DeviceNotFound"));
        assert_eq!(
            (e.to_string().as_str(), e.exit_code()),
            ("device 'd' not found on the hub", 2)
        );
        let e = method_err("d", svc(404, "DeviceNotOnline"));
        assert_eq!(
            (e.to_string().as_str(), e.exit_code()),
            ("device 'd': hub answered 404 DeviceNotOnline: m", 1)
        );
        assert_eq!(method_err("d", svc(504, "GatewayTimeout")).exit_code(), 1);
        assert_eq!(
            method_err("d", svc(401, "IotHubUnauthorizedAccess")).exit_code(),
            2
        );
    }
}
