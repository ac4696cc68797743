//! The experiment file: YAML → a typed, spanned description (no interpolation yet).

use std::path::{Path, PathBuf};

use crate::diag::{Problem, SpecError};
use crate::yaml::{Node, Span, Value};

/// A node as written in the `nodes:` mapping.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The node id (its key in `nodes:`).
    pub id: String,
    /// Span of the id.
    pub id_span: Span,
    /// The kind, e.g. `cluster/temi`.
    pub kind: String,
    /// Span of the kind value.
    pub kind_span: Span,
    /// Inputs: (slot, slot span, upstream node id, id span), in file order.
    pub inputs: Vec<(String, Span, String, Span)>,
    /// The params mapping, if any.
    pub params: Option<Node>,
    /// Span to blame for a missing param: the `params:` key, else the node id.
    pub params_anchor: Span,
    /// Resource overrides (`resources:` mapping, used by executors).
    pub resources: Option<Node>,
}

/// A sweep variable and its values.
#[derive(Clone, Debug)]
pub struct SweepVar {
    /// Variable name.
    pub name: String,
    /// Span of the name.
    pub span: Span,
    /// Values, in order.
    pub values: Vec<Node>,
}

/// A parsed experiment file.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The file (absolute).
    pub path: PathBuf,
    /// The file as the user named it (shown in diagnostics).
    pub shown: PathBuf,
    /// Folder that relative paths in params are resolved against.
    pub dir: PathBuf,
    /// The file's text.
    pub src: String,
    /// `name:`: names the experiment in the cache and in reports.
    pub name: String,
    /// `description:`.
    pub description: Option<String>,
    /// `vars:` defaults: (name, name span, value).
    pub vars: Vec<(String, Span, Node)>,
    /// `sweep:` variables.
    pub sweep: Vec<SweepVar>,
    /// `nodes:` in file order.
    pub nodes: Vec<NodeSpec>,
    /// `device:` default device for nodes that use one (`cpu`, `wgpu:0`, `cuda:0`).
    pub device: Option<(String, Span)>,
    /// `slurm:` executor settings, kept raw for the executor to read.
    pub slurm: Option<Node>,
    /// `search:` successive halving over a sweep variable, kept raw ([`crate::search`]).
    pub search: Option<Node>,
}

pub(crate) const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "vars",
    "sweep",
    "nodes",
    "device",
    "slurm",
    "search",
];
const NODE_KEYS: &[&str] = &["kind", "inputs", "params", "resources", "description"];

/// Whether a name is usable as a node id or variable: letters, digits, `_`, `-`, `.`.
pub fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The closest candidate by edit distance, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if d <= 2.max(word.len() / 3) && best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    best.map(|(c, _)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key(what: &str, key: &str, span: Span, allowed: &[&str]) -> Problem {
    let mut p = Problem::new(
        "cedm::spec::unknown_field",
        format!("unknown field `{key}` in {what}"),
        span,
        "not a field here",
    );
    p = match suggest(key, allowed.iter().copied()) {
        Some(s) => p.with_help(format!(
            "did you mean `{s}`? {what} accepts: {}",
            allowed.join(", ")
        )),
        None => p.with_help(format!("{what} accepts: {}", allowed.join(", "))),
    };
    p
}

fn expect_str(n: &Node, what: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        other => {
            problems.push(Problem::new(
                "cedm::spec::wrong_type",
                format!("{what} must be a string, not {}", other.type_name()),
                n.span,
                "expected a string",
            ));
            None
        }
    }
}

impl Experiment {
    /// Read and parse an experiment file.
    ///
    /// # Errors
    /// Every structural problem, with spans; an unreadable file is reported as an I/O error.
    pub fn load(path: &Path) -> Result<Experiment, crate::EngineError> {
        Experiment::load_with(path, &[])
    }

    /// Read and parse an experiment file with command-line overrides applied
    /// ([`crate::overrides`]).
    ///
    /// # Errors
    /// Every structural problem (the overrides' included), with spans; an unreadable file is
    /// reported as an I/O error.
    pub fn load_with(
        path: &Path,
        overrides: &[crate::overrides::Override],
    ) -> Result<Experiment, crate::EngineError> {
        let read_err = |source| crate::EngineError::Read {
            path: path.to_path_buf(),
            source,
        };
        // Regular files only: a FIFO or a device given as the experiment would block the read.
        let m = std::fs::metadata(path).map_err(read_err)?;
        if !m.is_file() {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        if m.len() > 16 << 20 {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "larger than 16 MiB; an experiment file is YAML text",
            )));
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        let src = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                // Point at the first invalid byte, in the text as far as it is valid.
                let at = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(e.as_bytes()).to_string();
                let lossy_at = String::from_utf8_lossy(&e.as_bytes()[..at]).len();
                return Err(crate::EngineError::Spec(SpecError::new(
                    path,
                    &text,
                    vec![
                        Problem::new(
                            "cedm::spec::not_utf8",
                            "the file is not UTF-8 text",
                            crate::yaml::Span::new(lossy_at, 1),
                            "invalid byte here",
                        )
                        .with_help("save the experiment file as UTF-8"),
                    ],
                )));
            }
        };
        Experiment::parse_with(path, &src, overrides).map_err(crate::EngineError::Spec)
    }

    /// Parse experiment text; `path` names the file in diagnostics and anchors relative paths.
    ///
    /// # Errors
    /// Every structural problem found, with spans.
    pub fn parse(path: &Path, src: &str) -> Result<Experiment, SpecError> {
        Experiment::parse_with(path, src, &[])
    }

    /// Parse experiment text with command-line overrides applied: the experiment is the one
    /// whose file says what the overrides say; its `src` holds the file's text followed by the
    /// overrides as comment lines, which their values' spans point into.
    ///
    /// # Errors
    /// Every structural problem found (the overrides' included), with spans.
    pub fn parse_with(
        path: &Path,
        src: &str,
        overrides: &[crate::overrides::Override],
    ) -> Result<Experiment, SpecError> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf())
        };
        let dir = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let (full, parsed) = crate::overrides::parse_with(src, overrides);
        let src = full.as_str();
        let fail = |problems| SpecError::new(path, src, problems);
        let root = match parsed {
            Ok(r) => r,
            Err(Ok(problems)) => return Err(fail(problems)),
            Err(Err(e)) => {
                return Err(fail(vec![Problem::new(
                    "cedm::spec::yaml",
                    format!("invalid YAML: {}", e.message),
                    e.span,
                    "here",
                )]));
            }
        };
        let mut problems = Vec::new();
        let Value::Map(top) = &root.value else {
            return Err(fail(vec![Problem::new(
                "cedm::spec::wrong_type",
                format!(
                    "an experiment must be a mapping with `name` and `nodes`, not {}",
                    root.value.type_name()
                ),
                root.span,
                "expected a mapping",
            )]));
        };
        let mut exp = Experiment {
            path: abs,
            shown: path.to_path_buf(),
            dir,
            src: src.to_string(),
            name: String::new(),
            description: None,
            vars: Vec::new(),
            sweep: Vec::new(),
            nodes: Vec::new(),
            device: None,
            slurm: None,
            search: None,
        };
        let mut have_name = false;
        let mut have_nodes = false;
        for (key, kspan, val) in top {
            match key.as_str() {
                "name" => {
                    have_name = true;
                    if let Some(s) = expect_str(val, "`name`", &mut problems) {
                        if valid_ident(&s) {
                            exp.name = s;
                        } else {
                            problems.push(Problem::new(
                                "cedm::spec::bad_name",
                                format!("experiment name `{s}` is not a valid name"),
                                val.span,
                                "use letters, digits, `_`, `-`, `.`",
                            ));
                        }
                    }
                }
                "description" => exp.description = expect_str(val, "`description`", &mut problems),
                "device" => {
                    if let Some(s) = expect_str(val, "`device`", &mut problems) {
                        exp.device = Some((s, val.span));
                    }
                }
                "slurm" => exp.slurm = Some(val.clone()),
                "search" => exp.search = Some(val.clone()),
                "vars" => match &val.value {
                    Value::Map(m) => {
                        for (k, ks, v) in m {
                            if !valid_ident(k) {
                                problems.push(Problem::new(
                                    "cedm::spec::bad_name",
                                    format!("variable name `{k}` is not valid"),
                                    *ks,
                                    "use letters, digits, `_`, `-`, `.`",
                                ));
                            }
                            exp.vars.push((k.clone(), *ks, v.clone()));
                        }
                    }
                    Value::Null => {}
                    other => problems.push(Problem::new(
                        "cedm::spec::wrong_type",
                        format!(
                            "`vars` must be a mapping of variable → value, not {}",
                            other.type_name()
                        ),
                        val.span,
                        "expected a mapping",
                    )),
                },
                "sweep" => {
                    match &val.value {
                        Value::Map(m) => {
                            for (k, ks, v) in m {
                                match &v.value {
                                Value::Seq(items) if !items.is_empty() => {
                                    for (i, a) in items.iter().enumerate() {
                                        if items[..i].iter().any(|b| b.value.to_json() == a.value.to_json()) {
                                            problems.push(Problem::new(
                                                "cedm::spec::sweep_duplicate",
                                                format!("sweep variable `{k}` lists `{}` twice", a.value.display()),
                                                a.span,
                                                "duplicate value",
                                            ));
                                        }
                                    }
                                    exp.sweep.push(SweepVar {
                                        name: k.clone(),
                                        span: *ks,
                                        values: items.clone(),
                                    });
                                }
                                Value::Seq(_) => problems.push(Problem::new(
                                    "cedm::spec::sweep_empty",
                                    format!("sweep variable `{k}` has no values"),
                                    *ks,
                                    "empty list",
                                ).with_help("give at least one value, e.g. `C: [10, 20]`")),
                                other => problems.push(Problem::new(
                                    "cedm::spec::wrong_type",
                                    format!("sweep variable `{k}` must be a list of values, not {}", other.type_name()),
                                    v.span,
                                    "expected a list",
                                ).with_help(format!("write `{k}: [a, b, c]`"))),
                            }
                            }
                        }
                        Value::Null => {}
                        other => problems.push(Problem::new(
                            "cedm::spec::wrong_type",
                            format!(
                                "`sweep` must be a mapping of variable → list, not {}",
                                other.type_name()
                            ),
                            val.span,
                            "expected a mapping",
                        )),
                    }
                }
                "nodes" => {
                    have_nodes = true;
                    match &val.value {
                        Value::Map(m) if !m.is_empty() => {
                            for (id, ispan, body) in m {
                                if let Some(n) = parse_node(id, *ispan, body, &mut problems) {
                                    exp.nodes.push(n);
                                }
                            }
                        }
                        Value::Map(_) | Value::Null => problems.push(Problem::new(
                            "cedm::spec::no_nodes",
                            "`nodes` is empty",
                            *kspan,
                            "no nodes",
                        )),
                        other => problems.push(Problem::new(
                            "cedm::spec::wrong_type",
                            format!(
                                "`nodes` must be a mapping of node id → node, not {}",
                                other.type_name()
                            ),
                            val.span,
                            "expected a mapping",
                        )),
                    }
                }
                _ => problems.push(unknown_key("an experiment", key, *kspan, TOP_KEYS)),
            }
        }
        // A misspelt `name:`/`nodes:` is already reported with a suggestion; do not also
        // report it as missing.
        let suggested = |want: &str| {
            top.iter().any(|(k, _, _)| {
                !TOP_KEYS.contains(&k.as_str())
                    && suggest(k, TOP_KEYS.iter().copied()) == Some(want)
            })
        };
        if !have_name && !suggested("name") {
            problems.push(Problem::new(
                "cedm::spec::missing_field",
                "the experiment has no `name`",
                Span::new(0, 0),
                "add `name: …` at the top",
            ));
        }
        if !have_nodes && !suggested("nodes") {
            problems.push(Problem::new(
                "cedm::spec::missing_field",
                "the experiment has no `nodes`",
                Span::new(0, 0),
                "add a `nodes:` mapping",
            ));
        }
        if problems.is_empty() {
            Ok(exp)
        } else {
            Err(fail(problems))
        }
    }

    /// The node spec with this id.
    pub fn node(&self, id: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

fn parse_node(id: &str, ispan: Span, body: &Node, problems: &mut Vec<Problem>) -> Option<NodeSpec> {
    if !valid_ident(id) {
        problems.push(Problem::new(
            "cedm::spec::bad_name",
            format!("node id `{id}` is not valid"),
            ispan,
            "use letters, digits, `_`, `-`, `.`; start with a letter",
        ));
    }
    let Value::Map(fields) = &body.value else {
        problems.push(Problem::new(
            "cedm::spec::wrong_type",
            format!(
                "node `{id}` must be a mapping with a `kind`, not {}",
                body.value.type_name()
            ),
            ispan,
            "expected `kind:`, `inputs:`, `params:`",
        ));
        return None;
    };
    let mut spec = NodeSpec {
        id: id.to_string(),
        id_span: ispan,
        kind: String::new(),
        kind_span: ispan,
        inputs: Vec::new(),
        params: None,
        params_anchor: ispan,
        resources: None,
    };
    let mut have_kind = false;
    for (k, ks, v) in fields {
        match k.as_str() {
            "kind" => {
                have_kind = true;
                if let Some(s) = expect_str(v, &format!("the kind of node `{id}`"), problems) {
                    spec.kind = s;
                    spec.kind_span = v.span;
                }
            }
            "inputs" => match &v.value {
                Value::Map(m) => {
                    for (slot, ss, target) in m {
                        match &target.value {
                            Value::Str(t) => {
                                spec.inputs
                                    .push((slot.clone(), *ss, t.clone(), target.span))
                            }
                            other => problems.push(Problem::new(
                                "cedm::spec::wrong_type",
                                format!(
                                    "input `{slot}` of node `{id}` must name a node, not {}",
                                    other.type_name()
                                ),
                                target.span,
                                "expected a node id",
                            )),
                        }
                    }
                }
                Value::Null => {}
                other => problems.push(
                    Problem::new(
                        "cedm::spec::wrong_type",
                        format!(
                            "`inputs` of node `{id}` must map slot → node id, not {}",
                            other.type_name()
                        ),
                        v.span,
                        "expected a mapping",
                    )
                    .with_help("write e.g. `inputs: {features: feats, knn: knn}`"),
                ),
            },
            "params" => {
                spec.params_anchor = *ks;
                match &v.value {
                    Value::Map(_) => spec.params = Some(v.clone()),
                    Value::Null => {}
                    other => problems.push(Problem::new(
                        "cedm::spec::wrong_type",
                        format!(
                            "`params` of node `{id}` must be a mapping, not {}",
                            other.type_name()
                        ),
                        v.span,
                        "expected a mapping",
                    )),
                }
            }
            "resources" => spec.resources = Some(v.clone()),
            "description" => {}
            _ => problems.push(unknown_key(&format!("node `{id}`"), k, *ks, NODE_KEYS)),
        }
    }
    if !have_kind {
        problems.push(
            Problem::new(
                "cedm::spec::missing_field",
                format!("node `{id}` has no `kind`"),
                ispan,
                "this node",
            )
            .with_help("add e.g. `kind: data/idx`; `cedm kinds` lists them"),
        );
        return None;
    }
    Some(spec)
}
