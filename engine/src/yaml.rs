//! A YAML value tree that remembers where every key and value came from.
//!
//! Parsed with `serde-saphyr` (a maintained, panic-free serde YAML implementation whose
//! `Spanned<T>` gives byte offsets; `serde_yaml` is archived and its forks expose no spans), so
//! that every diagnostic can point at the offending text.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A byte range in the experiment file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Byte offset of the first character.
    pub offset: usize,
    /// Length in bytes (0 for a point).
    pub len: usize,
}

impl Span {
    /// A span covering `offset..offset+len`.
    pub fn new(offset: usize, len: usize) -> Span {
        Span { offset, len }
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        miette::SourceSpan::new(s.offset.into(), s.len)
    }
}

/// A YAML node with its span.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it is written (for a mapping or sequence: where it starts).
    pub span: Span,
}

/// A YAML value. Mappings keep their order and their keys' spans.
#[derive(Clone, Debug)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping: (key, key span, value) in file order.
    Map(Vec<(String, Span, Node)>),
}

impl Value {
    /// A short name of the type for messages ("a string", "a mapping").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Convert to JSON (spans dropped).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(v) => {
                serde_json::Value::Array(v.iter().map(|n| n.value.to_json()).collect())
            }
            Value::Map(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, _, n)| (k.clone(), n.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// Render as compact YAML-ish text (for labels and messages).
    pub fn display(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("{f}"),
            Value::Str(s) => s.clone(),
            Value::Seq(_) | Value::Map(_) => self.to_json().to_string(),
        }
    }
}

impl Node {
    /// The mapping entry `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<(&Span, &Node)> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _, _)| k == key).map(|(_, s, n)| (s, n)),
            _ => None,
        }
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Value, E> {
        i64::try_from(u)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {u} is too large")))
    }
    fn visit_i128<E: serde::de::Error>(self, i: i128) -> Result<Value, E> {
        i64::try_from(i)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {i} is too large")))
    }
    fn visit_u128<E: serde::de::Error>(self, u: u128) -> Result<Value, E> {
        i64::try_from(u)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {u} is too large")))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(n) = a.next_element::<SpannedNode>()? {
            v.push(n.0);
        }
        Ok(Value::Seq(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(k) = a.next_key::<Spanned<KeyString>>()? {
            let val = a.next_value::<SpannedNode>()?;
            v.push((k.value.0, span_of(&k.referenced), val.0));
        }
        Ok(Value::Map(v))
    }
}

/// Mapping keys: strings, or scalars written as text (`10:` is the key "10").
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyString, D::Error> {
        match d.deserialize_any(AnyVisitor)? {
            Value::Str(s) => Ok(KeyString(s)),
            Value::Int(i) => Ok(KeyString(i.to_string())),
            Value::Float(f) => Ok(KeyString(f.to_string())),
            Value::Bool(b) => Ok(KeyString(b.to_string())),
            Value::Null => Ok(KeyString("null".into())),
            other => Err(serde::de::Error::custom(format!(
                "a mapping key must be text, not {}",
                other.type_name()
            ))),
        }
    }
}

struct PlainValue(Value);

impl<'de> Deserialize<'de> for PlainValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PlainValue, D::Error> {
        d.deserialize_any(AnyVisitor).map(PlainValue)
    }
}

struct SpannedNode(Node);

impl<'de> Deserialize<'de> for SpannedNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpannedNode, D::Error> {
        let s = Spanned::<PlainValue>::deserialize(d)?;
        Ok(SpannedNode(Node {
            span: span_of(&s.referenced),
            value: s.value.0,
        }))
    }
}

fn span_of(loc: &serde_saphyr::Location) -> Span {
    let sp = loc.span();
    match (sp.byte_offset(), sp.byte_len()) {
        (Some(o), Some(l)) => Span::new(o as usize, l as usize),
        _ => Span::default(),
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// The parser's message, without position.
    pub message: String,
    /// Where (a point).
    pub span: Span,
}

/// Byte offset of a 1-based line and (character) column.
pub fn offset_of(src: &str, line: usize, column: usize) -> usize {
    let mut off = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col_bytes: usize = l
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return off + col_bytes.min(l.len());
        }
        off += l.len();
    }
    src.len()
}

/// Parse YAML text into a spanned tree.
///
/// # Errors
/// A syntax error (or a construct we refuse: duplicate keys, unknown anchors) with its position.
pub fn parse(src: &str) -> Result<Node, SyntaxError> {
    // YAML 1.2 core booleans only: `y`, `no`, `on` stay text (a sweep variable named `y`,
    // a dataset called `no`), as users of YAML 1.2 tools expect.
    let options = serde_saphyr::options! { strict_booleans: true };
    match serde_saphyr::from_str_with_options::<SpannedNode>(src, options) {
        Ok(n) => Ok(n.0),
        Err(e) => {
            let loc = e.location();
            let span = match loc {
                Some(l) => match l.span().byte_offset() {
                    Some(o) => Span::new(o as usize, 0),
                    None => Span::new(offset_of(src, l.line() as usize, l.column() as usize), 0),
                },
                None => Span::default(),
            };
            let raw = e
                .without_snippet()
                .render_with_options(serde_saphyr::render_options! {
                    snippets: serde_saphyr::SnippetMode::Off,
                });
            if raw.contains("from_str_multiple")
                || raw.to_lowercase().contains("multiple documents")
            {
                // A second document (`---` after content): say so in the user's terms.
                let second = src
                    .match_indices("\n---")
                    .map(|(i, _)| i + 1)
                    .find(|&i| !src[..i].trim().is_empty() && !src[..i].trim().starts_with("---"))
                    .unwrap_or(span.offset);
                return Err(SyntaxError {
                    message: "an experiment file holds one YAML document; this is a second one"
                        .into(),
                    span: Span::new(second, 3),
                });
            }
            Err(SyntaxError {
                message: clean_message(&raw),
                span,
            })
        }
    }
}

fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Drop a leading "line N column M: " and trailing " at line N column M".
    let mut msg = first.to_string();
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some(idx) = rest.find(": ")
    {
        msg = rest[idx + 2..].to_string();
    }
    if let Some(idx) = msg.find(" at line ") {
        msg.truncate(idx);
    }
    msg = msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_keys_and_values() {
        let src = "name: q\nnodes:\n  a:\n    kind: data/idx\n    params: {x: 1.5e-3}\n";
        let root = parse(src).unwrap();
        let (_, nodes) = root.get("nodes").unwrap();
        let (ks, a) = nodes.get("a").unwrap();
        assert_eq!(&src[ks.offset..ks.offset + ks.len], "a");
        let (_, kind) = a.get("kind").unwrap();
        assert_eq!(
            &src[kind.span.offset..kind.span.offset + kind.span.len],
            "data/idx"
        );
        let (_, params) = a.get("params").unwrap();
        let (_, x) = params.get("x").unwrap();
        assert!(matches!(x.value, Value::Float(f) if (f - 1.5e-3).abs() < 1e-12));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let src = "a: 1\nb: [1, 2\n";
        let e = parse(src).unwrap_err();
        assert!(e.message.contains("bracket"), "{}", e.message);
        let dup = parse("a: 1\na: 2\n").unwrap_err();
        assert!(dup.message.contains("duplicate"), "{}", dup.message);
        assert_eq!(dup.span.offset, 5);
    }

    #[test]
    fn numeric_keys_become_text() {
        let root = parse("10: a\ny: yes\n").unwrap();
        assert!(root.get("10").is_some());
        let (_, y) = root.get("y").unwrap();
        assert!(matches!(&y.value, Value::Str(s) if s == "yes"));
    }
}
