//! Config errors with their place in the file, collected so that one run reports them all.
//!
//! Every error is recorded as a byte span of the source plus a message; the file name, line,
//! column and dotted key (`door[2].unit`) are derived from the span, so resolution code only
//! has to keep the `Spanned` values the parser gave it.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem has no place in the file (e.g. it cannot be read).
    pub line: usize,
    pub column: usize,
    /// Dotted path of the key, e.g. `door[2].unit` or `profile.door.methods.lockDoor.address`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (_, true) => write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            ),
            _ => write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.key, self.message
            ),
        }
    }
}

/// Every problem found in a config file, in file order; `Display` gives one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// A single error without a place (unreadable file and the like).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                file: file.to_string(),
                line: 0,
                column: 0,
                key: String::new(),
                message: message.into(),
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The span recorded for problems without a place; sorts after everything else.
const WHOLE_FILE: Range<usize> = usize::MAX..usize::MAX;

/// Collects span-addressed errors while the config is resolved.
pub(crate) struct Errors<'a> {
    origin: &'a str,
    text: &'a str,
    doc: &'a DeTable<'a>,
    found: Vec<(Range<usize>, String)>,
}

impl<'a> Errors<'a> {
    pub(crate) fn new(origin: &'a str, text: &'a str, doc: &'a DeTable<'a>) -> Self {
        Errors {
            origin,
            text,
            doc,
            found: Vec::new(),
        }
    }

    /// Records a problem at `span`. The same problem at the same place is kept once (a
    /// profile error would otherwise repeat for every door that merges overrides onto it).
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let message = message.into();
        if !self.found.iter().any(|(s, m)| *s == span && *m == message) {
            self.found.push((span, message));
        }
    }

    /// Records a problem of the file as a whole (a missing section).
    pub(crate) fn whole(&mut self, message: impl Into<String>) {
        self.at(WHOLE_FILE, message)
    }

    pub(crate) fn at_spanned<T>(&mut self, v: &Spanned<T>, message: impl Into<String>) {
        self.at(v.span(), message)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(crate) fn finish(self) -> ConfigErrors {
        let mut found = self.found;
        found.sort_by_key(|(s, _)| s.start);
        let errors = found
            .into_iter()
            .map(|(span, message)| {
                if span == WHOLE_FILE {
                    return ConfigError {
                        file: self.origin.to_string(),
                        line: 0,
                        column: 0,
                        key: String::new(),
                        message,
                    };
                }
                let (line, column) = line_col(self.text, span.start);
                ConfigError {
                    file: self.origin.to_string(),
                    line,
                    column,
                    key: key_path(self.doc, span.start),
                    message,
                }
            })
            .collect();
        ConfigErrors { errors }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The dotted key whose key or value contains `offset`, deepest first.
pub(crate) fn key_path(doc: &DeTable<'_>, offset: usize) -> String {
    let mut path = String::new();
    walk_table(doc, offset, &mut path);
    path
}

pub(crate) fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn walk_table(t: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (k, v) in t.iter() {
        if contains(&k.span(), offset) || contains(&v.span(), offset) || inside(v, offset) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k.get_ref());
            walk_value(v, offset, path);
            return true;
        }
    }
    false
}

fn walk_value(v: &Spanned<DeValue<'_>>, offset: usize, path: &mut String) {
    match v.get_ref() {
        DeValue::Table(t) => {
            walk_table(t, offset, path);
        }
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                if contains(&item.span(), offset) || inside(item, offset) {
                    path.push_str(&format!("[{i}]"));
                    walk_value(item, offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// Whether any key or value below `v` contains `offset`: tables written with `[header]`
/// syntax have spans that do not cover their body, so look inside.
pub(crate) fn inside(v: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => t.iter().any(|(k, v)| {
            contains(&k.span(), offset) || contains(&v.span(), offset) || inside(v, offset)
        }),
        DeValue::Array(a) => a
            .iter()
            .any(|i| contains(&i.span(), offset) || inside(i, offset)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 11), (2, 6));
    }

    #[test]
    fn key_path_finds_nested_and_array_keys() {
        let t = "[hub]\nhostname = \"h\"\n[[door]]\nunit = 1\n[[door]]\nunit = 2\n[profile.p.methods.m]\naddress = 3\n";
        let (doc, errs) = DeTable::parse_recoverable(t);
        assert!(errs.is_empty());
        let doc = doc.into_inner();
        assert_eq!(key_path(&doc, t.find("\"h\"").unwrap()), "hub.hostname");
        assert_eq!(key_path(&doc, t.rfind("unit").unwrap()), "door[1].unit");
        assert_eq!(
            key_path(&doc, t.find("3").unwrap()),
            "profile.p.methods.m.address"
        );
    }

    #[test]
    fn display_is_file_line_col_key_message() {
        let e = ConfigError {
            file: "site.toml".into(),
            line: 3,
            column: 8,
            key: "door[0].unit".into(),
            message: "unit 0 is not a valid Modbus unit id (1 to 247)".into(),
        };
        assert_eq!(
            e.to_string(),
            "site.toml:3:8: door[0].unit: unit 0 is not a valid Modbus unit id (1 to 247)"
        );
    }
}
