//! The parsed form of queries and conditions.

use serde_json::Value;

/// `SELECT … FROM … [WHERE …]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub top: Option<usize>,
    pub projection: Projection,
    pub source: Source,
    pub condition: Condition,
}

/// What a query returns per matching document.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `*`: whole documents.
    All,
    /// `a.b [AS x], c`: raw objects keyed by alias or last path segment.
    Fields(Vec<(Path, String)>),
    /// `COUNT() [AS n]`: one raw object `{n: count}`.
    Count { alias: String },
}

/// The collection a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `FROM devices`: twins.
    Devices,
    /// `FROM devices.jobs`: per-device job records.
    DeviceJobs,
}

/// A WHERE clause (or a jobs `queryCondition`).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No WHERE clause, or a bare `*` queryCondition: every document matches.
    All,
    Expr(Expr),
}

/// Comparison operators; `<>` parses as [`CompareOp::Ne`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// An expression; evaluating it yields a JSON value or *undefined*.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant; `None` is the `undefined` literal.
    Literal(Option<Value>),
    Path(Path),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `x IN [..]` (`negated` for `NIN` / `NOT IN`).
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    IsDefined(Path),
}

/// Where a path starts: twins name top-level properties, `devices.jobs.x` names a job-record field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRoot {
    Document,
    DeviceJob,
}

/// An attribute path such as `tags.building` or `devices.jobs.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub root: PathRoot,
    pub segments: Vec<String>,
}

impl Path {
    /// The key a projection of this path gets by default (its last segment).
    pub fn default_alias(&self) -> String {
        self.segments.last().cloned().unwrap_or_default()
    }
}
