//! The parsed form of queries and conditions.

use serde_json::Value;

/// `SELECT … FROM … [WHERE …] [GROUP BY …]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub top: Option<usize>,
    pub projection: Projection,
    pub source: Source,
    pub condition: Condition,
    /// `GROUP BY a.b`: one result row per distinct value (twin queries only).
    pub group_by: Option<Path>,
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `*`: whole documents.
    All,
    /// `a.b [AS x], COUNT() [AS n], …`: raw objects. Without aggregates, one per matching
    /// document; with aggregates (or `GROUP BY`), one per group (the whole result being one
    /// group without `GROUP BY`).
    Items(Vec<Item>),
}

/// One projected value and the key it gets in the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub selected: Selected,
    /// `AS alias`. Without one, a field is keyed by its property name as the document spells
    /// it and an aggregate by `$1`, `$2`, … in order.
    pub alias: Option<String>,
}

/// A projected attribute or aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Selected {
    Field(Path),
    /// `COUNT()` (no argument) or `AVG|SUM|MIN|MAX(path)`.
    Aggregate(Aggregate, Option<Path>),
}

/// The aggregate functions of the query language's SELECT clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Avg,
    Sum,
    Min,
    Max,
}

impl Projection {
    /// Whether the projection aggregates (so the result is grouped).
    pub fn aggregates(&self) -> bool {
        match self {
            Projection::All => false,
            Projection::Items(items) => items
                .iter()
                .any(|i| matches!(i.selected, Selected::Aggregate(..))),
        }
    }
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

/// Arithmetic operators: numbers in, a number out; anything else is undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
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
    Arith(ArithOp, Box<Expr>, Box<Expr>),
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
    /// The key a projection of this path gets when the document lacks it (its last segment
    /// as written); see [`Path::resolve_entry`] for the usual case.
    pub fn default_alias(&self) -> String {
        self.segments.last().cloned().unwrap_or_default()
    }

    /// Whether segment `i` matches keys case-insensitively: the first one (a system
    /// property, `tags` or `properties`) and the `desired`/`reported` level; keys below are
    /// exact.
    pub(crate) fn is_loose(&self, i: usize) -> bool {
        i == 0
            || (i == 1
                && (self.segments[0].eq_ignore_ascii_case("properties")
                    || self.segments[0].eq_ignore_ascii_case("capabilities")))
    }

    /// The same path, with the case-insensitive segments compared so.
    pub fn same_as(&self, other: &Path) -> bool {
        self.root == other.root
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .enumerate()
                .all(|(i, (a, b))| {
                    if self.is_loose(i) {
                        a.eq_ignore_ascii_case(b)
                    } else {
                        a == b
                    }
                })
    }
}
