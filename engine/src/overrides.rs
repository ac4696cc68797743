//! Command-line overrides of an experiment file, like Hydra's `key=value` and `dvc exp run -S`.
//!
//! `-S PATH=VALUE` sets one value, `-m PATH=V1,V2,…` sweeps over several. The overrides are
//! applied to the parsed YAML tree *before* the experiment is read from it, so an overridden
//! experiment is exactly the experiment whose file says so: the same keys, the same labels, the
//! same validation. Their text is appended to the experiment's source as comment lines
//! (`# -S C=80`), and every value parsed from an override carries a span into that text, so a
//! bad override value is reported like a bad value in the file, pointing at the override.
//!
//! Paths:
//! - `NAME`: a sweep variable (`-S C=80` sweeps `C` over `[80]` only; `-S C=[10,20]` or
//!   `-m C=10,20` over a list) or a `vars:` entry (`-S n=2000`; `-m n=1000,2000` turns it into a
//!   sweep variable);
//! - `NODE.params.KEY` (also `NODE.resources.KEY`, `NODE.kind`): a node's field; a param not
//!   written in the file is added (the kind's validation rejects unknown ones).
//!   `-m NODE.params.KEY=A,B` sweeps it: a new sweep variable `KEY` with those values, and the
//!   param set to `${KEY}`;
//! - a full path from the top (`vars.NAME`, `sweep.NAME`, `nodes.NODE.params.KEY`, `device`);
//!   `vars.NAME` and `sweep.NAME` may add a variable the file does not have.
//!
//! Values are YAML (`80` is an integer, `1e-3` a number, `[1, 2]` a list, `"80"` text).

use crate::diag::Problem;
use crate::spec::{suggest, valid_ident};
use crate::yaml::{self, Node, Span, Value};

/// One `-S` or `-m` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// `-m` (a list of values to sweep over) rather than `-S` (one value).
    pub multi: bool,
    /// The dotted path before `=`.
    pub path: String,
    /// The text after `=`.
    pub value: String,
}

impl Override {
    /// Parse `PATH=VALUE`.
    ///
    /// # Errors
    /// No `=`, or an empty path.
    pub fn parse(arg: &str, multi: bool) -> Result<Override, String> {
        let flag = if multi { "-m" } else { "-S" };
        let Some((path, value)) = arg.split_once('=') else {
            return Err(format!(
                "`{flag} {arg}` has no `=`: write `{flag} PATH=VALUE`, e.g. `{flag} C=80` or `{flag} temi.params.gamma=1`"
            ));
        };
        let path = path.trim();
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!(
                "`{flag} {arg}`: `{path}` is not a path; write a variable (`C`), a node field (`temi.params.gamma`) or a full path (`vars.n`)"
            ));
        }
        Ok(Override {
            multi,
            path: path.to_string(),
            value: value.to_string(),
        })
    }

    fn flag(&self) -> &'static str {
        if self.multi { "-m" } else { "-S" }
    }

    /// The override as written on the command line.
    pub fn display(&self) -> String {
        format!("{} {}={}", self.flag(), self.path, self.value)
    }
}

/// Where an override's text lies in the extended source.
struct Placed<'a> {
    ov: &'a Override,
    /// The path.
    path: Span,
    /// Offset of the value text.
    value_at: usize,
}

/// The experiment source with the overrides appended as comment lines, and where each lies.
fn extend<'a>(src: &str, overrides: &'a [Override]) -> (String, Vec<Placed<'a>>) {
    let mut out = src.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# command-line overrides:\n");
    let mut placed = Vec::with_capacity(overrides.len());
    for ov in overrides {
        // A newline inside an override would end the comment; shown as a space (the value is
        // parsed from `ov.value` itself, so only the snippet changes).
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        let head = format!("# {} ", ov.flag());
        let path_at = out.len() + head.len();
        out.push_str(&head);
        out.push_str(&clean(&ov.path));
        out.push('=');
        let value_at = out.len();
        out.push_str(&clean(&ov.value));
        out.push('\n');
        placed.push(Placed {
            ov,
            path: Span::new(path_at, ov.path.len()),
            value_at,
        });
    }
    (out, placed)
}

fn shift(node: &mut Node, by: usize) {
    node.span.offset += by;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| shift(n, by)),
        Value::Map(entries) => {
            for (_, ks, n) in entries {
                ks.offset += by;
                shift(n, by);
            }
        }
        _ => {}
    }
}

/// The value(s) of an override as spanned YAML nodes (for `-m`, a list).
fn parse_value(p: &Placed<'_>) -> Result<Node, Problem> {
    let text = p.ov.value.trim_end();
    let lead = p.ov.value.len() - p.ov.value.trim_start().len();
    let bad = |msg: String, at: usize| {
        Problem::new(
            "cedm::override::value",
            format!("`{}`: {msg}", p.ov.display()),
            Span::new(at, 0),
            "here",
        )
        .with_help("the value is YAML: `80`, `1e-3`, `text`, `\"quoted text\"`, `[1, 2]`")
    };
    if p.ov.multi && !text.trim_start().starts_with('[') {
        // `10,20,40` is read as the flow list `[10,20,40]`.
        let wrapped = format!("[{text}]");
        let mut n = yaml::parse(&wrapped).map_err(|e| {
            bad(
                format!("not a comma-separated list of values: {}", e.message),
                p.value_at + e.span.offset.saturating_sub(1),
            )
        })?;
        // The `[` is not in the source: everything sits one byte earlier (`value_at` ≥ 1, the
        // `=` precedes it).
        shift(&mut n, p.value_at - 1);
        n.span = Span::new(p.value_at, text.len());
        return Ok(n);
    }
    let mut n = if text.trim().is_empty() {
        Node {
            value: Value::Null,
            span: Span::new(0, 0),
        }
    } else {
        yaml::parse(text).map_err(|e| {
            bad(
                format!("not a YAML value: {}", e.message),
                p.value_at + e.span.offset,
            )
        })?
    };
    shift(&mut n, p.value_at);
    if matches!(n.value, Value::Null) {
        n.span = Span::new(p.value_at + lead, text.len().saturating_sub(lead));
    }
    Ok(n)
}

/// The names a mapping entry of the top level holds (`vars`, `sweep`, `nodes`).
fn names_of(top: &[(String, Span, Node)], key: &str) -> Vec<String> {
    match top
        .iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, _, n)| &n.value)
    {
        Some(Value::Map(m)) => m.iter().map(|(k, _, _)| k.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The mapping entries of `node`, turning a null into an empty mapping.
fn entries_mut(node: &mut Node) -> Option<&mut Vec<(String, Span, Node)>> {
    if matches!(node.value, Value::Null) {
        node.value = Value::Map(Vec::new());
    }
    match &mut node.value {
        Value::Map(m) => Some(m),
        _ => None,
    }
}

/// The entry `key` of a mapping, added (as null, its key spanning `span`) when missing.
fn entry_mut<'n>(map: &'n mut Vec<(String, Span, Node)>, key: &str, span: Span) -> &'n mut Node {
    let i = match map.iter().position(|(k, _, _)| k == key) {
        Some(i) => i,
        None => {
            map.push((
                key.to_string(),
                span,
                Node {
                    value: Value::Null,
                    span,
                },
            ));
            map.len() - 1
        }
    };
    &mut map[i].2
}

/// Apply the overrides to the parsed file `root` (the extended source's tree). Returns the
/// problems; the tree is changed only by the overrides that are valid.
fn apply(root: &mut Node, placed: &[Placed<'_>]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !matches!(root.value, Value::Map(_)) {
        // Reported by the parser of the experiment itself.
        return problems;
    }
    for p in placed {
        if let Err(e) = apply_one(root, p) {
            problems.push(e);
        }
    }
    problems
}

enum Target {
    Sweep(String),
    Var(String),
    Path(Vec<String>),
}

fn resolve(top: &[(String, Span, Node)], p: &Placed<'_>) -> Result<Target, Problem> {
    let path = p.ov.path.as_str();
    let sweep = names_of(top, "sweep");
    let vars = names_of(top, "vars");
    let nodes = names_of(top, "nodes");
    if sweep.iter().any(|s| s == path) {
        return Ok(Target::Sweep(path.to_string()));
    }
    if vars.iter().any(|s| s == path) {
        return Ok(Target::Var(path.to_string()));
    }
    let segs: Vec<&str> = path.split('.').collect();
    match segs.as_slice() {
        ["sweep", rest @ ..] if !rest.is_empty() => {
            return Ok(Target::Sweep(rest.join(".")));
        }
        ["vars", rest @ ..] if !rest.is_empty() => return Ok(Target::Var(rest.join("."))),
        _ => {}
    }
    if crate::spec::TOP_KEYS.contains(&segs[0]) {
        return Ok(Target::Path(segs.iter().map(|s| s.to_string()).collect()));
    }
    // A node id may itself hold dots: the longest prefix that names a node.
    for cut in (1..=segs.len()).rev() {
        let id = segs[..cut].join(".");
        if nodes.contains(&id) {
            if cut == segs.len() {
                return Err(Problem::new(
                    "cedm::override::path",
                    format!(
                        "`{}`: `{id}` is a node; name one of its fields",
                        p.ov.display()
                    ),
                    p.path,
                    "a node",
                )
                .with_help(format!(
                    "e.g. `{} {id}.params.NAME=VALUE`; `cedm kinds KIND` lists a kind's params",
                    p.ov.flag()
                )));
            }
            let mut full = vec!["nodes".to_string(), id];
            full.extend(segs[cut..].iter().map(|s| s.to_string()));
            return Ok(Target::Path(full));
        }
    }
    let names: Vec<&str> = sweep
        .iter()
        .chain(&vars)
        .chain(&nodes)
        .map(String::as_str)
        .collect();
    let first = segs[0];
    let mut e = Problem::new(
        "cedm::override::path",
        format!(
            "`{}`: `{first}` is not a sweep variable, a variable or a node of this experiment",
            p.ov.display()
        ),
        Span::new(p.path.offset, first.len()),
        "unknown name",
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let lists = format!(
        "sweep variables: {}; variables: {}; nodes: {}",
        list(&sweep),
        list(&vars),
        list(&nodes)
    );
    e = match suggest(first, names.iter().copied()) {
        Some(s) => e.with_help(format!("did you mean `{s}`? {lists}")),
        None => e.with_help(format!(
            "{lists} (a new variable is written `vars.NAME=VALUE`)"
        )),
    };
    Err(e)
}

fn apply_one(root: &mut Node, p: &Placed<'_>) -> Result<(), Problem> {
    let Value::Map(top) = &mut root.value else {
        return Ok(());
    };
    let target = resolve(top, p)?;
    let value = parse_value(p)?;
    let as_list = |v: Node| match v.value {
        Value::Seq(_) => v,
        _ => Node {
            span: v.span,
            value: Value::Seq(vec![v]),
        },
    };
    let new_sweep = |top: &mut Vec<(String, Span, Node)>, name: &str, list: Node| {
        let sweep = entry_mut(top, "sweep", p.path);
        match entries_mut(sweep) {
            Some(m) => {
                *entry_mut(m, name, p.path) = list;
                Ok(())
            }
            None => Err(Problem::new(
                "cedm::override::path",
                format!(
                    "`{}`: the experiment's `sweep` is not a mapping",
                    p.ov.display()
                ),
                p.path,
                "here",
            )),
        }
    };
    match target {
        Target::Sweep(name) => new_sweep(top, &name, as_list(value)),
        Target::Var(name) => {
            if !valid_ident(&name) {
                return Err(Problem::new(
                    "cedm::override::path",
                    format!(
                        "`{}`: `{name}` is not a valid variable name",
                        p.ov.display()
                    ),
                    p.path,
                    "use letters, digits, `_`, `-`, `.`",
                ));
            }
            if p.ov.multi {
                // A variable swept from the command line is a sweep variable, not a var.
                if let Some((_, _, vars)) = top.iter_mut().find(|(k, _, _)| k == "vars")
                    && let Value::Map(m) = &mut vars.value
                {
                    m.retain(|(k, _, _)| *k != name);
                }
                new_sweep(top, &name, value)
            } else {
                let vars = entry_mut(top, "vars", p.path);
                match entries_mut(vars) {
                    Some(m) => {
                        *entry_mut(m, &name, p.path) = value;
                        Ok(())
                    }
                    None => Err(Problem::new(
                        "cedm::override::path",
                        format!(
                            "`{}`: the experiment's `vars` is not a mapping",
                            p.ov.display()
                        ),
                        p.path,
                        "here",
                    )),
                }
            }
        }
        Target::Path(segs) => {
            let value = if p.ov.multi {
                // Sweep a field: a new sweep variable named after it, the field set to it.
                let name = segs.last().cloned().unwrap_or_default();
                let taken = names_of(top, "sweep")
                    .into_iter()
                    .chain(names_of(top, "vars"))
                    .any(|n| n == name);
                if taken || !valid_ident(&name) {
                    return Err(Problem::new(
                        "cedm::override::path",
                        format!(
                            "`{}`: cannot sweep this field through a new variable `{name}`{}",
                            p.ov.display(),
                            if taken { ", which the experiment already has" } else { "" }
                        ),
                        p.path,
                        "this field",
                    )
                    .with_help(
                        "write the field as `\"${X}\"` in the file and sweep `X`, or set it with `-S`",
                    ));
                }
                new_sweep(top, &name, value.clone())?;
                Node {
                    value: Value::Str(format!("${{{name}}}")),
                    span: value.span,
                }
            } else {
                value
            };
            set_path(top, &segs, value, p)
        }
    }
}

fn set_path(
    top: &mut Vec<(String, Span, Node)>,
    segs: &[String],
    value: Node,
    p: &Placed<'_>,
) -> Result<(), Problem> {
    let Some((first, rest)) = segs.split_first() else {
        return Ok(());
    };
    let mut cur: &mut Node = entry_mut(top, first, p.path);
    let mut walked = first.clone();
    for seg in rest {
        let here = cur.value.type_name();
        let next: Option<&mut Node> = if let Value::Seq(items) = &cur.value {
            let len = items.len();
            match seg.parse::<usize>() {
                Ok(i) if i < len => match &mut cur.value {
                    Value::Seq(items) => items.get_mut(i),
                    _ => None,
                },
                _ => {
                    return Err(Problem::new(
                        "cedm::override::path",
                        format!(
                            "`{}`: `{walked}` is a list of {len}; `{seg}` is not an index of it",
                            p.ov.display()
                        ),
                        p.path,
                        "here",
                    ));
                }
            }
        } else {
            entries_mut(cur).map(|m| entry_mut(m, seg, p.path))
        };
        match next {
            Some(n) => cur = n,
            None => {
                return Err(Problem::new(
                    "cedm::override::path",
                    format!(
                        "`{}`: `{walked}` is {here}, not a mapping with `{seg}`",
                        p.ov.display()
                    ),
                    p.path,
                    "here",
                ));
            }
        }
        walked = format!("{walked}.{seg}");
    }
    *cur = value;
    Ok(())
}

/// Parse the experiment source with the overrides applied: the extended source (the file's
/// text and the overrides as comment lines) and its tree, or the overrides' problems.
///
/// # Errors
/// The YAML's own syntax error (as the parser reports it), or every bad override.
pub(crate) fn parse_with(
    src: &str,
    overrides: &[Override],
) -> (
    String,
    Result<Node, Result<Vec<Problem>, yaml::SyntaxError>>,
) {
    if overrides.is_empty() {
        return (src.to_string(), yaml::parse(src).map_err(Err));
    }
    let (full, placed) = extend(src, overrides);
    let mut root = match yaml::parse(&full) {
        Ok(r) => r,
        Err(e) => return (full, Err(Err(e))),
    };
    let problems = apply(&mut root, &placed);
    if problems.is_empty() {
        (full, Ok(root))
    } else {
        (full, Err(Ok(problems)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(s: &str) -> Override {
        Override::parse(s, false).unwrap()
    }
    fn mv(s: &str) -> Override {
        Override::parse(s, true).unwrap()
    }

    #[test]
    fn argument_forms() {
        assert_eq!(ov("C=80").path, "C");
        assert_eq!(ov("a.b=x=y").value, "x=y");
        assert!(Override::parse("C", false).is_err());
        assert!(Override::parse("=1", false).is_err());
        assert!(Override::parse("a..b=1", true).is_err());
    }

    #[test]
    fn values_point_into_the_appended_text() {
        let src = "name: x\nvars: {n: 1}\nsweep: {C: [1, 2]}\nnodes: {a: {kind: k}}\n";
        let (full, root) = parse_with(src, &[ov("n=abc"), mv("C=3,4")]);
        let root = root.unwrap();
        let (_, vars) = root.get("vars").unwrap();
        let (_, n) = vars.get("n").unwrap();
        assert_eq!(&full[n.span.offset..n.span.offset + n.span.len], "abc");
        let (_, sweep) = root.get("sweep").unwrap();
        let (_, c) = sweep.get("C").unwrap();
        let Value::Seq(items) = &c.value else {
            panic!("{c:?}")
        };
        let texts: Vec<&str> = items
            .iter()
            .map(|i| &full[i.span.offset..i.span.offset + i.span.len])
            .collect();
        assert_eq!(texts, ["3", "4"]);
        assert!(full.starts_with(src));
    }

    #[test]
    fn unknown_names_are_problems_with_suggestions() {
        let src = "name: x\nsweep: {C: [1]}\nnodes: {temi: {kind: k}}\n";
        let (_, r) = parse_with(src, &[ov("tem.params.x=1"), ov("temi=1")]);
        let Err(Ok(problems)) = r else {
            panic!("expected problems")
        };
        assert_eq!(problems.len(), 2);
        assert!(
            problems[0].help.as_deref().unwrap().contains("`temi`"),
            "{:?}",
            problems[0]
        );
        assert!(problems[1].message.contains("is a node"));
    }
}
