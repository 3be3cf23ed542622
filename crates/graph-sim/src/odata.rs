//! OData query options as Graph reads them: `$select`, `$filter` (the forms writeback
//! uses), `$top`, `$count`, paging tokens, and the `Prefer` request header.

use crate::error::{GraphError, GraphResult};
use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// The parsed query string of one Graph request.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub select: Option<Vec<String>>,
    pub filter: Option<Filter>,
    pub filter_text: Option<String>,
    pub top: Option<usize>,
    pub count: bool,
    pub skiptoken: Option<String>,
    pub deltatoken: Option<String>,
    pub expand: Option<String>,
    pub orderby: Option<String>,
    /// Every parameter as received, for rebuilding `@odata.nextLink`.
    pub raw: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> GraphResult<Query> {
        let mut q = Query::default();
        let Some(raw) = raw else {
            return Ok(q);
        };
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            match k.to_ascii_lowercase().trim_start_matches('$') {
                "select" => {
                    q.select = Some(
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    )
                }
                "filter" => {
                    q.filter = Some(Filter::parse(&v)?);
                    q.filter_text = Some(v.clone());
                }
                "top" => {
                    let top = v.parse::<usize>().ok().filter(|n| (1..=999).contains(n));
                    let Some(top) = top else {
                        return Err(GraphError::bad_request(format!(
                            "Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."
                        )));
                    };
                    q.top = Some(top);
                }
                "count" => q.count = v.eq_ignore_ascii_case("true"),
                "skiptoken" => q.skiptoken = Some(v.clone()),
                "deltatoken" => q.deltatoken = Some(v.clone()),
                "expand" => q.expand = Some(v.clone()),
                "orderby" => q.orderby = Some(v.clone()),
                _ => {}
            }
            q.raw.push((k, v));
        }
        Ok(q)
    }

    /// The query string with `$skiptoken` replaced, for a `@odata.nextLink`.
    pub fn with_skiptoken(&self, token: &str) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.raw {
            if !k.eq_ignore_ascii_case("$skiptoken") {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("$skiptoken", token);
        ser.finish()
    }
}

/// The `Prefer` request header: `return=minimal` and `odata.maxpagesize=N`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Prefer {
    pub minimal: bool,
    pub max_page_size: Option<usize>,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Prefer {
        let mut p = Prefer::default();
        for value in headers.get_all("prefer") {
            let Ok(value) = value.to_str() else { continue };
            for part in value.split(',') {
                let part = part.trim();
                if part.eq_ignore_ascii_case("return=minimal") {
                    p.minimal = true;
                } else if let Some(n) = part.strip_prefix("odata.maxpagesize=") {
                    p.max_page_size = n.trim().parse().ok().filter(|n| *n > 0);
                }
            }
        }
        p
    }
}

/// Whether the request says `ConsistencyLevel: eventual` (needed for `$count`).
pub fn eventual(headers: &HeaderMap) -> bool {
    headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
}

/// A literal in a filter clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
    Number(f64),
}

/// One comparison in a `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    Eq(String, Literal),
    Ne(String, Literal),
    StartsWith(String, String),
    AnyEq(String, Literal),
    In(String, Vec<Literal>),
}

/// A `$filter`: clauses in disjunctive normal form (`a and b or c`; no parentheses).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub any_of: Vec<Vec<Clause>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> GraphResult<Vec<Token>> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1
            }
            ')' => {
                out.push(Token::Close);
                i += 1
            }
            ',' => {
                out.push(Token::Comma);
                i += 1
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(invalid_filter(text)),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1
                        }
                    }
                }
                out.push(Token::Str(s));
            }
            _ => {
                let start = i;
                while i < chars.len() && !matches!(chars[i], ' ' | '\t' | '(' | ')' | ',' | '\'') {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

fn invalid_filter(text: &str) -> GraphError {
    GraphError::bad_request(format!("Invalid filter clause: syntax error in '{text}'."))
}

fn unsupported_filter(text: &str) -> GraphError {
    GraphError::unsupported_query(format!(
        "Unsupported or invalid query filter clause specified: '{text}'."
    ))
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Token) -> GraphResult<()> {
        if self.next() == Some(want) {
            Ok(())
        } else {
            Err(invalid_filter(self.text))
        }
    }

    fn literal(&mut self) -> GraphResult<Literal> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Literal::Str(s)),
            Some(Token::Word(w)) => match w.as_str() {
                "true" => Ok(Literal::Bool(true)),
                "false" => Ok(Literal::Bool(false)),
                "null" => Ok(Literal::Null),
                n => n
                    .parse()
                    .map(Literal::Number)
                    .map_err(|_| invalid_filter(self.text)),
            },
            _ => Err(invalid_filter(self.text)),
        }
    }

    fn clause(&mut self) -> GraphResult<Clause> {
        let Some(Token::Word(word)) = self.next() else {
            return Err(invalid_filter(self.text));
        };
        if word.eq_ignore_ascii_case("startswith") {
            self.expect(Token::Open)?;
            let Some(Token::Word(prop)) = self.next() else {
                return Err(invalid_filter(self.text));
            };
            self.expect(Token::Comma)?;
            let Literal::Str(prefix) = self.literal()? else {
                return Err(invalid_filter(self.text));
            };
            self.expect(Token::Close)?;
            return Ok(Clause::StartsWith(prop, prefix));
        }
        if let Some(prop) = word.strip_suffix("/any") {
            self.expect(Token::Open)?;
            let Some(Token::Word(var)) = self.next() else {
                return Err(invalid_filter(self.text));
            };
            let Some((name, body)) = var.split_once(':') else {
                return Err(invalid_filter(self.text));
            };
            if name != body {
                return Err(unsupported_filter(self.text));
            }
            self.expect(Token::Word("eq".into()))?;
            let lit = self.literal()?;
            self.expect(Token::Close)?;
            return Ok(Clause::AnyEq(prop.to_string(), lit));
        }
        match self.next() {
            Some(Token::Word(op)) if op == "eq" => Ok(Clause::Eq(word, self.literal()?)),
            Some(Token::Word(op)) if op == "ne" => Ok(Clause::Ne(word, self.literal()?)),
            Some(Token::Word(op)) if op == "in" => {
                self.expect(Token::Open)?;
                let mut items = vec![self.literal()?];
                loop {
                    match self.next() {
                        Some(Token::Comma) => items.push(self.literal()?),
                        Some(Token::Close) => break,
                        _ => return Err(invalid_filter(self.text)),
                    }
                }
                Ok(Clause::In(word, items))
            }
            _ => Err(unsupported_filter(self.text)),
        }
    }
}

impl Filter {
    pub fn parse(text: &str) -> GraphResult<Filter> {
        let mut p = Parser {
            tokens: tokenize(text)?,
            pos: 0,
            text,
        };
        let mut any_of = vec![vec![p.clause()?]];
        while let Some(tok) = p.next() {
            match tok {
                Token::Word(w) if w == "and" => {
                    let c = p.clause()?;
                    if let Some(last) = any_of.last_mut() {
                        last.push(c);
                    }
                }
                Token::Word(w) if w == "or" => any_of.push(vec![p.clause()?]),
                _ => return Err(unsupported_filter(text)),
            }
        }
        Ok(Filter { any_of })
    }

    /// The ids of a filter made only of `id eq '...'` clauses joined by `or` (delta's form).
    pub fn only_ids(&self) -> Option<Vec<String>> {
        self.any_of
            .iter()
            .map(|all| match all.as_slice() {
                [Clause::Eq(p, Literal::Str(id))] if p == "id" => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn properties(&self) -> Vec<&str> {
        self.any_of
            .iter()
            .flatten()
            .map(|c| match c {
                Clause::Eq(p, _)
                | Clause::Ne(p, _)
                | Clause::StartsWith(p, _)
                | Clause::AnyEq(p, _)
                | Clause::In(p, _) => p.as_str(),
            })
            .collect()
    }

    pub fn matches(&self, props: &Map<String, Value>) -> bool {
        self.any_of
            .iter()
            .any(|all| all.iter().all(|c| clause_matches(c, props)))
    }
}

fn literal_matches(value: Option<&Value>, lit: &Literal) -> bool {
    match (value, lit) {
        (None | Some(Value::Null), Literal::Null) => true,
        (Some(Value::String(s)), Literal::Str(l)) => s.eq_ignore_ascii_case(l),
        (Some(Value::Bool(b)), Literal::Bool(l)) => b == l,
        (Some(Value::Number(n)), Literal::Number(l)) => n.as_f64() == Some(*l),
        _ => false,
    }
}

fn clause_matches(clause: &Clause, props: &Map<String, Value>) -> bool {
    match clause {
        Clause::Eq(p, lit) => literal_matches(props.get(p), lit),
        Clause::Ne(p, lit) => !literal_matches(props.get(p), lit),
        Clause::StartsWith(p, prefix) => props
            .get(p)
            .and_then(Value::as_str)
            .is_some_and(|s| s.to_lowercase().starts_with(&prefix.to_lowercase())),
        Clause::AnyEq(p, lit) => props
            .get(p)
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|v| literal_matches(Some(v), lit))),
        Clause::In(p, lits) => lits.iter().any(|l| literal_matches(props.get(p), l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn unified_filter_selects_only_microsoft_365_groups() {
        let f = Filter::parse("groupTypes/any(c:c eq 'Unified')").unwrap();
        assert!(f.matches(&props(json!({"groupTypes": ["Unified"]}))));
        assert!(!f.matches(&props(json!({"groupTypes": []}))));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let f =
            Filter::parse("securityEnabled eq true and mailEnabled eq false or displayName eq 'x'")
                .unwrap();
        assert!(f.matches(&props(
            json!({"securityEnabled": true, "mailEnabled": false})
        )));
        assert!(f.matches(&props(json!({"displayName": "X"}))));
        assert!(!f.matches(&props(
            json!({"securityEnabled": true, "mailEnabled": true})
        )));
    }

    #[test]
    fn id_list_filter_is_recognised_for_delta() {
        let f = Filter::parse("id eq 'a' or id eq 'b'").unwrap();
        assert_eq!(f.only_ids(), Some(vec!["a".to_string(), "b".to_string()]));
        let f = Filter::parse("startswith(displayName,'SG-')").unwrap();
        assert_eq!(f.only_ids(), None);
    }

    #[test]
    fn quoted_apostrophes_are_unescaped() {
        let f = Filter::parse("displayName eq 'O''Brien'").unwrap();
        assert!(f.matches(&props(json!({"displayName": "O'Brien"}))));
    }

    #[test]
    fn garbage_filter_is_a_bad_request() {
        assert!(Filter::parse("displayName eq").is_err());
        assert!(Filter::parse("displayName gt 'a'").is_err());
    }
}
