//! What a command runs with: [`Env`], what fieldctl takes from its surroundings, the colour
//! rules drawn from it, and the context every command gets (`Ctx`) with its one way of
//! printing a result (`Ctx::emit`).

use std::io::{IsTerminal as _, Write};

use serde::Serialize;

use super::error::CtlError;
use super::hub::HUB_ENV;
use super::output::{write_json, write_text, Console, Style};
use crate::service::ServiceClient;

/// What fieldctl takes from its surroundings rather than its arguments.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `IOTHUB_CONNECTION_STRING`.
    pub connection_string: Option<String>,
    /// `NO_COLOR` is set (to anything but the empty string).
    pub no_color: bool,
    pub stdout_is_terminal: bool,
    pub stderr_is_terminal: bool,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            connection_string: std::env::var(HUB_ENV).ok(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
        }
    }
}

/// What a command runs with: the client, where to print, and how.
pub(crate) struct Ctx<'a> {
    pub(crate) client: ServiceClient,
    pub(crate) out: &'a mut dyn Write,
    pub(crate) console: Console,
    pub(crate) json: bool,
    pub(crate) style_out: Style,
    pub(crate) style_err: Style,
    /// Draw an indicatif bar (stderr is a terminal) instead of plain progress lines.
    pub(crate) live_progress: bool,
}

impl Ctx<'_> {
    /// Prints a command's result on stdout: `json` as one document under `--json`, else the
    /// text `text` renders for people (in stdout's colours). Every command prints through
    /// here, so the choice is made in one place.
    pub(crate) fn emit<T: Serialize + ?Sized>(
        &mut self,
        json: &T,
        text: impl FnOnce(Style) -> String,
    ) -> Result<(), CtlError> {
        if self.json {
            write_json(self.out, &json)
        } else {
            write_text(self.out, &text(self.style_out))
        }
    }
}

/// Colour for (stdout, stderr): never with `--no-color` or `NO_COLOR`, never into a pipe or
/// file, and never in JSON on stdout.
pub fn styles(no_color_flag: bool, json: bool, env: &Env) -> (Style, Style) {
    let allowed = !no_color_flag && !env.no_color;
    (
        Style {
            color: allowed && env.stdout_is_terminal && !json,
        },
        Style {
            color: allowed && env.stderr_is_terminal,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            connection_string: None,
            no_color: false,
            stdout_is_terminal: true,
            stderr_is_terminal: true,
        }
    }

    #[test]
    fn colour_rules() {
        let (o, e) = styles(false, false, &env());
        assert!(o.color && e.color);
        let no_color_env = Env {
            no_color: true,
            ..env()
        };
        assert_eq!(
            styles(false, false, &no_color_env),
            (Style { color: false }, Style { color: false })
        );
        assert_eq!(
            styles(true, false, &env()),
            (Style { color: false }, Style { color: false })
        );
        let (o, e) = styles(false, true, &env());
        assert!(!o.color && e.color, "JSON is never coloured");
        let piped = Env {
            stdout_is_terminal: false,
            stderr_is_terminal: false,
            ..env()
        };
        assert_eq!(
            styles(false, false, &piped),
            (Style { color: false }, Style { color: false })
        );
    }
}
