//! `${var}` interpolation.
//!
//! - A string that is exactly `${name}` becomes the variable's value with its type (so
//!   `clusters: ${C}` is an integer when `C` is).
//! - `${name}` inside a longer string is replaced by the value's text (scalars only).
//! - `$${` writes a literal `${`.
//! - Variables may use other variables; cycles are an error.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Problem;
use crate::spec::suggest;
use crate::yaml::{Node, Span, Value};

/// The variables of one sweep point: raw definitions, resolved lazily.
pub struct Env<'a> {
    raw: BTreeMap<&'a str, &'a Node>,
    resolved: BTreeMap<String, (Value, BTreeSet<String>)>,
    visiting: Vec<String>,
}

/// A piece of a string: literal text or a variable reference.
enum Piece<'s> {
    Text(&'s str),
    Var(&'s str),
}

fn split(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if after.starts_with("${") {
            // `$${` is an escaped `${`.
            out.push(Piece::Text(&rest[..i]));
            out.push(Piece::Text("${"));
            rest = &after[2..];
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err("`${` without a closing `}`".into());
            };
            out.push(Piece::Text(&rest[..i]));
            let name = inner[..end].trim();
            if name.is_empty() {
                return Err("empty `${}`".into());
            }
            out.push(Piece::Var(name));
            rest = &inner[end + 1..];
        } else {
            out.push(Piece::Text(&rest[..=i]));
            rest = after;
        }
    }
    out.push(Piece::Text(rest));
    out.retain(|p| !matches!(p, Piece::Text("")));
    Ok(out)
}

/// Whether a string refers to variables at all.
pub fn has_refs(s: &str) -> bool {
    s.contains("${")
}

impl<'a> Env<'a> {
    /// An environment with these raw variable definitions.
    pub fn new(raw: BTreeMap<&'a str, &'a Node>) -> Env<'a> {
        Env {
            raw,
            resolved: BTreeMap::new(),
            visiting: Vec::new(),
        }
    }

    fn lookup(&mut self, name: &str, span: Span) -> Result<(Value, BTreeSet<String>), Problem> {
        if let Some(v) = self.resolved.get(name) {
            return Ok(v.clone());
        }
        let Some(node) = self.raw.get(name).copied() else {
            let known: Vec<&str> = self.raw.keys().copied().collect();
            let mut p = Problem::new(
                "cedm::spec::undefined_var",
                format!("undefined variable `{name}`"),
                span,
                "not defined in `vars` or `sweep`",
            );
            p = match suggest(name, known.iter().copied()) {
                Some(s) => p.with_help(format!("did you mean `{s}`?")),
                None if known.is_empty() => p.with_help("define it under `vars:` or `sweep:`"),
                None => p.with_help(format!("defined variables: {}", known.join(", "))),
            };
            return Err(p);
        };
        if self.visiting.iter().any(|v| v == name) {
            let mut chain = self.visiting.clone();
            chain.push(name.to_string());
            return Err(Problem::new(
                "cedm::spec::var_cycle",
                format!(
                    "variables refer to each other in a cycle: {}",
                    chain.join(" → ")
                ),
                span,
                "part of the cycle",
            ));
        }
        self.visiting.push(name.to_string());
        let r = self.interpolate(node);
        self.visiting.pop();
        let (v, mut deps) = r.map_err(|mut ps| ps.remove(0))?;
        deps.insert(name.to_string());
        self.resolved
            .insert(name.to_string(), (v.clone(), deps.clone()));
        Ok((v, deps))
    }

    /// Interpolate every string in `node`. Returns the value and the variables it used.
    ///
    /// # Errors
    /// Every undefined variable, cycle or malformed reference.
    pub fn interpolate(&mut self, node: &Node) -> Result<(Value, BTreeSet<String>), Vec<Problem>> {
        let mut deps = BTreeSet::new();
        let mut problems = Vec::new();
        let v = self.walk(node, &mut deps, &mut problems);
        if problems.is_empty() {
            Ok((v, deps))
        } else {
            Err(problems)
        }
    }

    fn walk(
        &mut self,
        node: &Node,
        deps: &mut BTreeSet<String>,
        problems: &mut Vec<Problem>,
    ) -> Value {
        match &node.value {
            Value::Str(s) if s.contains('$') => match self.string(s, node.span, deps) {
                Ok(v) => v,
                Err(p) => {
                    problems.push(p);
                    Value::Null
                }
            },
            Value::Seq(items) => Value::Seq(
                items
                    .iter()
                    .map(|n| Node {
                        value: self.walk(n, deps, problems),
                        span: n.span,
                    })
                    .collect(),
            ),
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, ks, n)| {
                        (
                            k.clone(),
                            *ks,
                            Node {
                                value: self.walk(n, deps, problems),
                                span: n.span,
                            },
                        )
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn string(
        &mut self,
        s: &str,
        span: Span,
        deps: &mut BTreeSet<String>,
    ) -> Result<Value, Problem> {
        let pieces = split(s).map_err(|m| {
            Problem::new("cedm::spec::bad_interpolation", m, span, "here")
                .with_help("write `${name}`; `$${` for a literal `${`")
        })?;
        if let [Piece::Var(name)] = pieces.as_slice() {
            let (v, d) = self.lookup(name, span)?;
            deps.extend(d);
            return Ok(v);
        }
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(name) => {
                    let (v, d) = self.lookup(name, span)?;
                    deps.extend(d);
                    match v {
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(Problem::new(
                                "cedm::spec::bad_interpolation",
                                format!(
                                    "variable `{name}` is {} and cannot be pasted into text",
                                    v.type_name()
                                ),
                                span,
                                "used inside a string",
                            )
                            .with_help(format!("use `${{{name}}}` alone as the whole value")));
                        }
                        scalar => out.push_str(&scalar.display()),
                    }
                }
            }
        }
        Ok(Value::Str(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn env_of(root: &Node) -> BTreeMap<&str, &Node> {
        match &root.value {
            Value::Map(m) => m.iter().map(|(k, _, n)| (k.as_str(), n)).collect(),
            _ => BTreeMap::new(),
        }
    }

    #[test]
    fn whole_string_keeps_type_and_partial_pastes_text() {
        let vars = parse("C: 10\nroot: /data\nfile: ${root}/x.gz\n").unwrap();
        let mut env = Env::new(env_of(&vars));
        let p = parse("a: ${C}\nb: c${C}\nc: ${file}\nd: $${C}\ne: cost $5\n").unwrap();
        let (v, deps) = env.interpolate(&p).unwrap();
        let j = v.to_json();
        assert_eq!(j["a"], 10);
        assert_eq!(j["b"], "c10");
        assert_eq!(j["c"], "/data/x.gz");
        assert_eq!(j["d"], "${C}");
        assert_eq!(j["e"], "cost $5");
        assert_eq!(
            deps.into_iter().collect::<Vec<_>>(),
            vec!["C", "file", "root"]
        );
    }

    #[test]
    fn undefined_and_cycles_are_reported() {
        let vars = parse("a: ${b}\nb: ${a}\nC: 1\n").unwrap();
        let mut env = Env::new(env_of(&vars));
        let p = parse("x: ${c}\ny: ${a}\n").unwrap();
        let errs = env.interpolate(&p).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].message.contains("undefined variable `c`"));
        assert_eq!(errs[0].help.as_deref(), Some("did you mean `C`?"));
        assert!(errs[1].message.contains("cycle"), "{}", errs[1].message);
    }

    #[test]
    fn unterminated_reference() {
        let vars = parse("C: 1\n").unwrap();
        let mut env = Env::new(env_of(&vars));
        let errs = env.interpolate(&parse("x: ${C\n").unwrap()).unwrap_err();
        assert!(errs[0].message.contains("closing"));
    }
}
