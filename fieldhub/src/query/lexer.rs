//! Tokenizer for the query language; every token carries its character offset.

use super::QueryError;
use serde_json::{Number, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Number(Number),
    Str(String),
    /// Punctuation and operators: `( ) [ ] , . * = != <> < > <= >= -`.
    Sym(&'static str),
    Eof,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Str(s) => format!("string {}", Value::String(s.clone())),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::Eof => "end of query".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            Tok::Ident(chars[start..i].iter().collect())
        } else if c.is_ascii_digit() {
            let (n, next) = number(&chars, start)?;
            i = next;
            Tok::Number(n)
        } else if c == '\'' || c == '"' {
            let (s, next) = string(&chars, start)?;
            i = next;
            Tok::Str(s)
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("<>"),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(sym) = sym {
                i += 2;
                Tok::Sym(sym)
            } else {
                i += 1;
                Tok::Sym(match c {
                    '(' => "(",
                    ')' => ")",
                    '[' => "[",
                    ']' => "]",
                    ',' => ",",
                    '.' => ".",
                    '*' => "*",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    '-' => "-",
                    '+' => "+",
                    '/' => "/",
                    '%' => "%",
                    other => {
                        return Err(QueryError::new(
                            start,
                            format!("unexpected character '{other}'"),
                        ))
                    }
                })
            }
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len(),
    });
    Ok(out)
}

fn number(chars: &[char], start: usize) -> Result<(Number, usize), QueryError> {
    let mut i = start;
    if chars[i] == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
        i += 2;
        let digits_start = i;
        while i < chars.len() && chars[i].is_ascii_hexdigit() {
            i += 1;
        }
        let digits: String = chars[digits_start..i].iter().collect();
        let v = u64::from_str_radix(&digits, 16)
            .map_err(|_| QueryError::new(start, "invalid hexadecimal number"))?;
        return Ok((Number::from(v), end_of_number(chars, start, i)?));
    }
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    let mut is_float = false;
    if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
        is_float = true;
        i += 1;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < chars.len() && matches!(chars[i], 'e' | 'E') {
        let mut j = i + 1;
        if j < chars.len() && matches!(chars[j], '+' | '-') {
            j += 1;
        }
        if j < chars.len() && chars[j].is_ascii_digit() {
            is_float = true;
            i = j;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text: String = chars[start..i].iter().collect();
    let n = if is_float {
        text.parse::<f64>().ok().and_then(Number::from_f64)
    } else {
        text.parse::<u64>()
            .map(Number::from)
            .ok()
            .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
    };
    let n = n.ok_or_else(|| QueryError::new(start, format!("invalid number '{text}'")))?;
    Ok((n, end_of_number(chars, start, i)?))
}

/// Rejects `12abc`: a number must not run straight into an identifier.
fn end_of_number(chars: &[char], start: usize, i: usize) -> Result<usize, QueryError> {
    match chars.get(i) {
        Some(c) if c.is_ascii_alphanumeric() || *c == '_' => {
            Err(QueryError::new(start, "invalid number"))
        }
        _ => Ok(i),
    }
}

fn string(chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    let quote = chars[start];
    let mut i = start + 1;
    let mut s = String::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(QueryError::new(start, "unterminated string"));
        };
        i += 1;
        if c == quote {
            return Ok((s, i));
        }
        if c != '\\' {
            s.push(c);
            continue;
        }
        let esc_pos = i - 1;
        let Some(&e) = chars.get(i) else {
            return Err(QueryError::new(start, "unterminated string"));
        };
        i += 1;
        s.push(match e {
            '\'' => '\'',
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex: String = chars.get(i..i + 4).unwrap_or_default().iter().collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| QueryError::new(esc_pos, "invalid \\u escape"))?;
                i += 4;
                char::from_u32(code)
                    .ok_or_else(|| QueryError::new(esc_pos, "invalid \\u escape"))?
            }
            other => {
                return Err(QueryError::new(
                    esc_pos,
                    format!("invalid escape '\\{other}'"),
                ))
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_char_offsets() {
        let toks = tokenize("é = 'ü' AND x").unwrap_err();
        assert_eq!(toks.position, 0);
        let toks = tokenize("'ü' = 0x1F").unwrap();
        assert_eq!(toks[1].pos, 4);
        assert_eq!(toks[2].tok, Tok::Number(31u64.into()));
    }

    #[test]
    fn strings_and_escapes() {
        let toks = tokenize(r#"'it\'s' "a\"b\u0041\\""#).unwrap();
        assert_eq!(toks[0].tok, Tok::Str("it's".into()));
        assert_eq!(toks[1].tok, Tok::Str("a\"bA\\".into()));
        assert_eq!(tokenize("x = 'abc").unwrap_err().position, 4);
        assert_eq!(tokenize("x = 'a\\qb'").unwrap_err().position, 6);
    }

    #[test]
    fn numbers() {
        let toks = tokenize("1.5 2e3 7").unwrap();
        assert_eq!(toks[0].tok, Tok::Number(Number::from_f64(1.5).unwrap()));
        assert_eq!(toks[1].tok, Tok::Number(Number::from_f64(2000.0).unwrap()));
        assert_eq!(toks[2].tok, Tok::Number(7u64.into()));
        assert_eq!(tokenize("x = 12ab").unwrap_err().position, 4);
    }
}
