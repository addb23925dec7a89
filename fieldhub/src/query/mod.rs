//! The IoT Hub query language (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language): parser and evaluator over twins and device-job
//! records, plus result paging.
//!
//! Parsing is hand-written (lexer + recursive descent) rather than built on `sqlparser`: the
//! dialect needs `IN [..]`/`NIN [..]`, case-insensitive system properties and exact character
//! positions in syntax errors, which a preprocessed general SQL grammar cannot give.
//! Evaluation follows the documented semantics: a condition matches only when it evaluates to
//! boolean `true`; comparisons between values of different kinds, or involving objects/arrays,
//! are *undefined*, and undefined propagates through `AND`/`OR`/`NOT` three-valued logic;
//! arithmetic (`+ - * / %`) takes numbers and is otherwise undefined. Projections are keyed by
//! the documents' own property names; aggregates (`COUNT`, `AVG`, `SUM`, `MIN`, `MAX`) and
//! `GROUP BY` follow the query language guide
//! (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language>).

mod ast;
mod eval;
mod exec;
mod lexer;
mod parser;

pub use ast::{
    Aggregate, ArithOp, CompareOp, Condition, Expr, Item, Path, PathRoot, Projection, Query,
    Selected, Source,
};
pub use exec::{page, ItemType, QueryResult, DEFAULT_PAGE_SIZE};
pub use parser::{parse_condition, parse_query};

/// A query that could not be parsed or executed; `position` is a character offset into the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at position {position}: {message}")]
pub struct QueryError {
    /// Character (not byte) offset of the offending token.
    pub position: usize,
    pub message: String,
}

impl QueryError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}
