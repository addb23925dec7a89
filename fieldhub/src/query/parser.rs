//! Recursive-descent parser: query text → [`Query`] / [`Condition`], errors with positions.

use super::ast::{CompareOp, Condition, Expr, Path, PathRoot, Projection, Query, Source};
use super::lexer::{tokenize, Tok, Token};
use super::QueryError;
use serde_json::{Number, Value};

/// Parses `SELECT [TOP n] * | fields | COUNT() [AS n] FROM devices | devices.jobs [WHERE cond]`.
pub fn parse_query(text: &str) -> Result<Query, QueryError> {
    let mut p = Parser::new(text)?;
    p.keyword("SELECT")?;
    let top = if p.eat_keyword("TOP") {
        let pos = p.pos();
        match p.next().tok {
            Tok::Number(n) => Some(
                n.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| QueryError::new(pos, "TOP needs a non-negative integer"))?,
            ),
            other => {
                return Err(QueryError::new(
                    pos,
                    format!("expected a number after TOP, found {}", other.describe()),
                ))
            }
        }
    } else {
        None
    };
    let projection = p.projection()?;
    p.keyword("FROM")?;
    let source = p.source()?;
    let condition = if p.eat_keyword("WHERE") {
        Condition::Expr(p.or()?)
    } else {
        Condition::All
    };
    if p.peek_keyword("GROUP") {
        return Err(QueryError::new(p.pos(), "GROUP BY is not supported"));
    }
    p.expect_eof()?;
    Ok(Query {
        top,
        projection,
        source,
        condition,
    })
}

/// Parses a bare condition (a jobs `queryCondition`, the text after WHERE); `*` alone means all.
pub fn parse_condition(text: &str) -> Result<Condition, QueryError> {
    let mut p = Parser::new(text)?;
    if p.peek().tok == Tok::Sym("*") && p.toks[p.at + 1].tok == Tok::Eof {
        return Ok(Condition::All);
    }
    if p.peek().tok == Tok::Eof {
        return Err(QueryError::new(0, "empty condition"));
    }
    let expr = p.or()?;
    p.expect_eof()?;
    Ok(Condition::Expr(expr))
}

/// Deepest nesting of parentheses, `NOT` and array constants, and most `AND`/`OR` in one
/// condition (each one deepens the left-leaning tree). Parsing, evaluation and dropping
/// recurse once per level, and a REST body can hold megabytes of `((((`: without a bound the
/// stack overflows and takes the whole hub down.
pub const MAX_NESTING: usize = 64;
pub const MAX_CONNECTIVES: usize = 1000;

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "NIN", "TOP", "AS", "GROUP", "BY",
];

struct Parser {
    toks: Vec<Token>,
    at: usize,
    nesting: usize,
    connectives: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Self, QueryError> {
        Ok(Self {
            toks: tokenize(text)?,
            at: 0,
            nesting: 0,
            connectives: 0,
        })
    }

    /// Parses one nested level with `f`, refusing to go deeper than [`MAX_NESTING`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        if self.nesting >= MAX_NESTING {
            return Err(QueryError::new(
                self.pos(),
                format!("nested deeper than {MAX_NESTING} levels"),
            ));
        }
        self.nesting += 1;
        let r = f(self);
        self.nesting -= 1;
        r
    }

    /// Counts one `AND`/`OR`, refusing more than [`MAX_CONNECTIVES`].
    fn connective(&mut self) -> Result<(), QueryError> {
        self.connectives += 1;
        if self.connectives > MAX_CONNECTIVES {
            return Err(QueryError::new(
                self.pos(),
                format!("more than {MAX_CONNECTIVES} AND/OR in one condition"),
            ));
        }
        Ok(())
    }

    fn peek(&self) -> &Token {
        &self.toks[self.at]
    }

    fn pos(&self) -> usize {
        self.peek().pos
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.at].clone();
        if t.tok != Tok::Eof {
            self.at += 1;
        }
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let hit = self.peek_keyword(kw);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn keyword(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{kw}'")))
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        let hit = self.peek().tok == Tok::Sym(sym_static(sym));
        if hit {
            self.at += 1;
        }
        hit
    }

    fn sym(&mut self, sym: &str) -> Result<(), QueryError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{sym}'")))
        }
    }

    fn unexpected(&self, expected: &str) -> QueryError {
        QueryError::new(
            self.pos(),
            format!("expected {expected}, found {}", self.peek().tok.describe()),
        )
    }

    fn expect_eof(&self) -> Result<(), QueryError> {
        if self.peek().tok == Tok::Eof {
            Ok(())
        } else {
            Err(self.unexpected("end of query"))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, QueryError> {
        match &self.peek().tok {
            Tok::Ident(s) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn projection(&mut self) -> Result<Projection, QueryError> {
        if self.eat_sym("*") {
            return Ok(Projection::All);
        }
        if self.peek_keyword("COUNT") && self.toks[self.at + 1].tok == Tok::Sym("(") {
            self.at += 1;
            self.sym("(")?;
            self.sym(")")?;
            let alias = if self.eat_keyword("AS") {
                self.ident("an alias")?
            } else {
                "$1".to_owned()
            };
            return Ok(Projection::Count { alias });
        }
        let mut fields = Vec::new();
        loop {
            let path = self.path()?;
            let alias = if self.eat_keyword("AS") {
                self.ident("an alias")?
            } else {
                path.default_alias()
            };
            fields.push((path, alias));
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(Projection::Fields(fields))
    }

    fn source(&mut self) -> Result<Source, QueryError> {
        let pos = self.pos();
        let name = self.ident("'devices'")?;
        if !name.eq_ignore_ascii_case("devices") {
            return Err(QueryError::new(
                pos,
                format!("unknown collection '{name}'; expected devices or devices.jobs"),
            ));
        }
        if !self.eat_sym(".") {
            return Ok(Source::Devices);
        }
        let pos = self.pos();
        let sub = self.ident("'jobs'")?;
        if sub.eq_ignore_ascii_case("jobs") {
            Ok(Source::DeviceJobs)
        } else {
            Err(QueryError::new(
                pos,
                format!("unsupported collection 'devices.{sub}'"),
            ))
        }
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let pos = self.pos();
        let first = self.ident("an attribute path")?;
        if RESERVED.iter().any(|k| first.eq_ignore_ascii_case(k)) {
            return Err(QueryError::new(
                pos,
                format!("unexpected keyword '{first}'"),
            ));
        }
        let mut segments = vec![first];
        while self.eat_sym(".") {
            segments.push(self.ident("a property name")?);
        }
        let is_job = segments.len() >= 3
            && segments[0].eq_ignore_ascii_case("devices")
            && segments[1].eq_ignore_ascii_case("jobs");
        if is_job {
            let mut rest = segments.split_off(2);
            // The docs filter on createdTimeUtc while records carry createdDateTimeUtc.
            if rest[0].eq_ignore_ascii_case("createdTimeUtc") {
                rest[0] = "createdDateTimeUtc".to_owned();
            }
            return Ok(Path {
                root: PathRoot::DeviceJob,
                segments: rest,
            });
        }
        Ok(Path {
            root: PathRoot::Document,
            segments,
        })
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            self.connective()?;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        while self.eat_keyword("AND") {
            self.connective()?;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.eat_keyword("NOT") {
            return self.nested(|p| Ok(Expr::Not(Box::new(p.unary()?))));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.operand()?;
        let op = match &self.peek().tok {
            Tok::Sym("=") => Some(CompareOp::Eq),
            Tok::Sym("!=" | "<>") => Some(CompareOp::Ne),
            Tok::Sym("<") => Some(CompareOp::Lt),
            Tok::Sym("<=") => Some(CompareOp::Le),
            Tok::Sym(">") => Some(CompareOp::Gt),
            Tok::Sym(">=") => Some(CompareOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.at += 1;
            let right = self.operand()?;
            return Ok(Expr::Compare(op, Box::new(left), Box::new(right)));
        }
        let negated = if self.peek_keyword("NOT")
            && matches!(&self.toks[self.at + 1].tok, Tok::Ident(s) if s.eq_ignore_ascii_case("IN"))
        {
            self.at += 2;
            true
        } else if self.eat_keyword("NIN") {
            true
        } else if self.eat_keyword("IN") {
            false
        } else {
            return Ok(left);
        };
        let list = self.list()?;
        Ok(Expr::In {
            expr: Box::new(left),
            list,
            negated,
        })
    }

    /// `[a, b]` or `(a, b)` of constants.
    fn list(&mut self) -> Result<Vec<Expr>, QueryError> {
        let close = if self.eat_sym("[") {
            "]"
        } else if self.eat_sym("(") {
            ")"
        } else {
            return Err(self.unexpected("'[' after IN"));
        };
        let mut items = Vec::new();
        if self.eat_sym(close) {
            return Ok(items);
        }
        loop {
            items.push(Expr::Literal(Some(self.constant()?)));
            if self.eat_sym(close) {
                return Ok(items);
            }
            if !self.eat_sym(",") {
                return Err(self.unexpected(&format!("',' or '{close}'")));
            }
        }
    }

    /// A JSON constant: number, string, bool, null or array of constants.
    fn constant(&mut self) -> Result<Value, QueryError> {
        let pos = self.pos();
        match self.next().tok {
            Tok::Number(n) => Ok(Value::Number(n)),
            Tok::Sym("-") => match self.next().tok {
                Tok::Number(n) => Ok(Value::Number(negate(&n))),
                _ => Err(QueryError::new(pos + 1, "expected a number after '-'")),
            },
            Tok::Str(s) => Ok(Value::String(s)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Ok(Value::Null),
            Tok::Sym("[") => self.nested(|p| {
                let mut items = Vec::new();
                if p.eat_sym("]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(p.constant()?);
                    if p.eat_sym("]") {
                        return Ok(Value::Array(items));
                    }
                    p.sym(",")?;
                }
            }),
            other => Err(QueryError::new(
                pos,
                format!("expected a constant, found {}", other.describe()),
            )),
        }
    }

    fn operand(&mut self) -> Result<Expr, QueryError> {
        let tok = self.peek().tok.clone();
        match tok {
            Tok::Sym("(") => {
                self.at += 1;
                self.nested(|p| {
                    let e = p.or()?;
                    p.sym(")")?;
                    Ok(e)
                })
            }
            Tok::Number(_) | Tok::Str(_) | Tok::Sym("-" | "[") => {
                Ok(Expr::Literal(Some(self.constant()?)))
            }
            Tok::Ident(s) => {
                let lower = s.to_ascii_lowercase();
                match lower.as_str() {
                    "true" | "false" | "null" => Ok(Expr::Literal(Some(self.constant()?))),
                    "undefined" => {
                        self.at += 1;
                        Ok(Expr::Literal(None))
                    }
                    "is_defined" if self.toks[self.at + 1].tok == Tok::Sym("(") => {
                        self.at += 2;
                        let path = self.path()?;
                        self.sym(")")?;
                        Ok(Expr::IsDefined(path))
                    }
                    _ => Ok(Expr::Path(self.path()?)),
                }
            }
            _ => Err(self.unexpected("an attribute, constant or '('")),
        }
    }
}

fn negate(n: &Number) -> Number {
    if let Some(i) = n.as_u64().and_then(|u| i64::try_from(u).ok()) {
        Number::from(-i)
    } else {
        Number::from_f64(-n.as_f64().unwrap_or(0.0)).unwrap_or_else(|| Number::from(0))
    }
}

fn sym_static(s: &str) -> &'static str {
    match s {
        "(" => "(",
        ")" => ")",
        "[" => "[",
        "]" => "]",
        "," => ",",
        "." => ".",
        "*" => "*",
        _ => "=",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_select_forms() {
        let q = parse_query("select TOP 5 * from Devices where tags.building = '43'").unwrap();
        assert_eq!(q.top, Some(5));
        assert_eq!(q.source, Source::Devices);
        assert_eq!(q.projection, Projection::All);
        let q = parse_query("SELECT COUNT() AS n FROM devices").unwrap();
        assert_eq!(q.projection, Projection::Count { alias: "n".into() });
        assert_eq!(q.condition, Condition::All);
        let q = parse_query("SELECT deviceId, tags.floor AS f FROM devices").unwrap();
        let Projection::Fields(f) = q.projection else {
            panic!()
        };
        assert_eq!(f[0].1, "deviceId");
        assert_eq!(f[1].1, "f");
        let q =
            parse_query("SELECT * FROM devices.jobs WHERE devices.jobs.createdTimeUtc > '2020'")
                .unwrap();
        assert_eq!(q.source, Source::DeviceJobs);
        let Condition::Expr(Expr::Compare(_, left, _)) = q.condition else {
            panic!()
        };
        assert_eq!(
            *left,
            Expr::Path(Path {
                root: PathRoot::DeviceJob,
                segments: vec!["createdDateTimeUtc".into()]
            })
        );
    }

    #[test]
    fn parses_conditions() {
        assert_eq!(parse_condition(" * ").unwrap(), Condition::All);
        assert!(parse_condition("deviceId IN ['a','b']").is_ok());
        assert!(parse_condition("DeviceId in ('a', \"b\")").is_ok());
        assert!(
            parse_condition("NOT (x NIN [1, -2, 0x10]) AND IS_DEFINED(tags.a) OR y <> null")
                .is_ok()
        );
        assert!(parse_condition("x NOT IN [[1,2], true]").is_ok());
    }

    #[test]
    fn errors_have_positions() {
        let e = parse_query("SELECT * FROM devices WHERE").unwrap_err();
        assert_eq!(e.position, 27);
        let e = parse_query("SELECT * FROM devices WHERE a = = 1").unwrap_err();
        assert_eq!(e.position, 32);
        let e = parse_query("SELECT * FORM devices").unwrap_err();
        assert_eq!(e.position, 9);
        let e = parse_query("SELECT * FROM devices.modules").unwrap_err();
        assert_eq!(e.position, 22);
        let e = parse_condition("deviceId IN ['a' 'b']").unwrap_err();
        assert_eq!(e.position, 17);
        let e = parse_condition("(a = 1").unwrap_err();
        assert_eq!(e.position, 6);
        let e = parse_condition("a = 1 b").unwrap_err();
        assert_eq!(e.position, 6);
        assert_eq!(parse_condition("").unwrap_err().position, 0);
        assert_eq!(parse_condition("AND = 1").unwrap_err().position, 0);
    }

    /// Crashed the `hub_query` fuzz target (stack overflow): deep nesting overflowed the stack
    /// of the REST handler's thread, aborting the hub. Runs on a test thread's small stack.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let n = 200_000;
        for text in [
            format!("{}true{}", "(".repeat(n), ")".repeat(n)),
            format!("{}true", "NOT ".repeat(n)),
            format!("a IN [{}{}]", "[".repeat(n), "]".repeat(n)),
            format!("a = 1{}", " AND b = 2".repeat(n)),
        ] {
            let e = parse_condition(&text).unwrap_err();
            assert!(e.message.contains("nested deeper") || e.message.contains("AND/OR"));
        }
        let ok = format!("{}true{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse_condition(&ok).is_ok());
        assert!(parse_condition(&format!("a = 1{}", " OR a = 2".repeat(MAX_CONNECTIVES))).is_ok());
    }
}
