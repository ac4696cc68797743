//! Successive halving over a swept variable (`search:`): every candidate is computed at the
//! first budget, scored, and only the best fraction goes on to the next budget — where a
//! trajectory kind (a training) resumes from its snapshot instead of starting over.
//!
//! ```yaml
//! sweep:
//!   C: [50, 100, 200, 400]
//!   L: [100000, 200000]          # budgets, in rung order (e.g. duration_kimg: "${L}")
//! search:
//!   over: C                      # the candidates
//!   budget: L                    # rung r computes the survivors at L[r]
//!   metric: fid_temi             # a node depending on both; its metrics.json is read
//!   field: fid                   # the number in metrics.json (default: `mean`, else the
//!                                # metric kind's last name part: `fid` for metrics/fid)
//!   keep: 0.5                    # fraction promoted to the next rung (at least one)
//!   minimize: true               # lower is better (default)
//! ```
//!
//! Each rung is the experiment with `over` restricted to its candidates and `budget` to its
//! value: a plain plan, keyed as always, so a later full grid reuses every rung. Promotion
//! depends only on cached metric values (deterministic outputs), ranked by score and then by the
//! candidates' order in the sweep; a candidate without a score ranks last. Same YAML, same cache ⇒
//! same choices.

use cedm_cache::{Cache, HitCheck};

use crate::diag::{Problem, SpecError};
use crate::node::Registry;
use crate::plan::{Plan, expand};
use crate::spec::Experiment;
use crate::yaml::{Node, Span, Value};

/// A parsed `search:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    /// The sweep variable whose values compete.
    pub over: String,
    /// The sweep variable whose values are the rungs' budgets, in order.
    pub budget: String,
    /// The node whose result scores a candidate at a budget.
    pub metric: String,
    /// The number read from the metric's `metrics.json` (empty: `mean`, else the metric kind's
    /// last name part, e.g. `fid` for `metrics/fid`).
    pub field: String,
    /// Fraction of a rung's candidates promoted to the next.
    pub keep: f64,
    /// Lower is better.
    pub minimize: bool,
}

/// One rung of a search.
pub struct Rung {
    /// Position (0 first).
    pub index: usize,
    /// The budget value.
    pub budget: serde_json::Value,
    /// The candidates computed at this rung, in sweep order.
    pub candidates: Vec<serde_json::Value>,
    /// The experiment restricted to this rung.
    pub plan: Plan,
    /// Each candidate's score, where its metric is cached (sweep order).
    pub scores: Vec<(serde_json::Value, Option<f64>)>,
    /// The candidates promoted to the next rung, once every candidate is scored (None: not yet
    /// decided; empty for the last rung).
    pub promoted: Option<Vec<serde_json::Value>>,
}

fn problem(msg: String, span: Span, label: &str) -> Problem {
    Problem::new("cedm::spec::search", msg, span, label)
}

/// Parse and check the experiment's `search:` section (None when it has none).
///
/// # Errors
/// Every problem, with its YAML span.
pub fn parse(exp: &Experiment) -> Result<Option<Search>, Vec<Problem>> {
    let Some(node) = &exp.search else {
        return Ok(None);
    };
    let mut problems = Vec::new();
    let Value::Map(m) = &node.value else {
        return Err(vec![
            problem(
                format!("`search` must be a mapping, not {}", node.value.type_name()),
                node.span,
                "expected a mapping",
            )
            .with_help("write `search: {over: C, budget: L, metric: fid, keep: 0.5}`"),
        ]);
    };
    const KEYS: &[&str] = &["over", "budget", "metric", "field", "keep", "minimize"];
    let mut s = Search {
        over: String::new(),
        budget: String::new(),
        metric: String::new(),
        field: String::new(),
        keep: 0.5,
        minimize: true,
    };
    let text = |n: &Node, what: &str, problems: &mut Vec<Problem>| -> String {
        match &n.value {
            Value::Str(v) => v.clone(),
            other => {
                problems.push(problem(
                    format!("`search.{what}` must be a name, not {}", other.type_name()),
                    n.span,
                    "expected a name",
                ));
                String::new()
            }
        }
    };
    for (k, ks, v) in m {
        match k.as_str() {
            "over" => s.over = text(v, "over", &mut problems),
            "budget" => s.budget = text(v, "budget", &mut problems),
            "metric" => s.metric = text(v, "metric", &mut problems),
            "field" => s.field = text(v, "field", &mut problems),
            "keep" => match v.value {
                Value::Float(f) if f > 0.0 && f <= 1.0 => s.keep = f,
                Value::Int(1) => s.keep = 1.0,
                _ => problems.push(problem(
                    format!(
                        "`search.keep` must be a fraction in (0, 1], not {}",
                        v.value.display()
                    ),
                    v.span,
                    "expected a fraction",
                )),
            },
            "minimize" => match v.value {
                Value::Bool(b) => s.minimize = b,
                _ => problems.push(problem(
                    "`search.minimize` must be true or false".into(),
                    v.span,
                    "expected a boolean",
                )),
            },
            other => problems.push(
                problem(
                    format!("unknown key `{other}` in `search`"),
                    *ks,
                    "unknown key",
                )
                .with_help(format!("`search` takes {}", KEYS.join(", "))),
            ),
        }
    }
    let sweep_names: Vec<&str> = exp.sweep.iter().map(|v| v.name.as_str()).collect();
    for (what, name) in [("over", &s.over), ("budget", &s.budget)] {
        if name.is_empty() {
            if !problems
                .iter()
                .any(|p| p.message.contains(&format!("search.{what}")))
            {
                problems.push(problem(
                    format!("`search` needs `{what}`: a sweep variable"),
                    node.span,
                    "incomplete search",
                ));
            }
        } else if !sweep_names.contains(&name.as_str()) {
            problems.push(
                problem(
                    format!("`search.{what}`: `{name}` is not a sweep variable"),
                    node.get(what).map_or(node.span, |(_, n)| n.span),
                    "not in `sweep`",
                )
                .with_help(format!("sweep variables: {}", sweep_names.join(", "))),
            );
        }
    }
    if !s.over.is_empty() && s.over == s.budget {
        problems.push(problem(
            "`search.over` and `search.budget` must be different variables".into(),
            node.span,
            "the same variable twice",
        ));
    }
    if s.metric.is_empty() {
        problems.push(problem(
            "`search` needs `metric`: the node that scores a candidate".into(),
            node.span,
            "incomplete search",
        ));
    } else if exp.node(&s.metric).is_none() {
        problems.push(problem(
            format!(
                "`search.metric`: `{}` is not a node of this experiment",
                s.metric
            ),
            node.get("metric").map_or(node.span, |(_, n)| n.span),
            "no such node",
        ));
    }
    if problems.is_empty() {
        Ok(Some(s))
    } else {
        Err(problems)
    }
}

/// The experiment with `over` restricted to `candidates` and `budget` to its value at `rung`.
fn restricted(
    exp: &Experiment,
    s: &Search,
    rung: usize,
    candidates: &[serde_json::Value],
) -> Experiment {
    let mut e = exp.clone();
    for v in &mut e.sweep {
        if v.name == s.over {
            v.values.retain(|n| candidates.contains(&n.value.to_json()));
        } else if v.name == s.budget {
            v.values = vec![v.values[rung].clone()];
        }
    }
    e
}

/// The score of each candidate of a rung's plan, where its metric is cached.
fn scores(
    plan: &Plan,
    cache: &Cache,
    s: &Search,
    candidates: &[serde_json::Value],
) -> Vec<(serde_json::Value, Option<f64>)> {
    let statuses = crate::run::status(plan, cache, &[]);
    candidates
        .iter()
        .map(|c| {
            let score = plan
                .instances
                .iter()
                .find(|i| i.node == s.metric && i.vars.get(&s.over) == Some(c))
                .and_then(|i| {
                    let field = field_of(s, i.kind.kind());
                    match &statuses[i.index] {
                        crate::event::Status::Cached { key } => match cache.check(key) {
                            Ok(HitCheck::Hit(r)) => r
                                .outputs
                                .get("metrics.json")
                                .and_then(|o| cache.read_object(&o.digest).ok())
                                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                                .and_then(|v| {
                                    v.get(&field).and_then(serde_json::Value::as_f64).or_else(
                                        || {
                                            if s.field.is_empty() {
                                                v.get(kind_field(i.kind.kind()))
                                                    .and_then(serde_json::Value::as_f64)
                                            } else {
                                                None
                                            }
                                        },
                                    )
                                }),
                            _ => None,
                        },
                        _ => None,
                    }
                })
                .filter(|v| v.is_finite());
            (c.clone(), score)
        })
        .collect()
}

/// The field a search reads first: the one it names, else `mean`.
fn field_of(s: &Search, _kind: &str) -> String {
    if s.field.is_empty() {
        "mean".into()
    } else {
        s.field.clone()
    }
}

/// The fallback field of a metric kind: the last part of its name (`metrics/fid` → `fid`).
pub fn kind_field(kind: &str) -> &str {
    kind.rsplit('/').next().unwrap_or(kind)
}

/// The candidates a rung promotes: the best `keep` fraction (at least one) by score, ties and
/// missing scores in sweep order after the scored ones.
pub fn promote(s: &Search, scored: &[(serde_json::Value, Option<f64>)]) -> Vec<serde_json::Value> {
    let n = ((scored.len() as f64 * s.keep).ceil() as usize).clamp(1, scored.len().max(1));
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| scored[i].1.map(|v| if s.minimize { v } else { -v });
        match (key(a), key(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y).then(a.cmp(&b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(&b),
        }
    });
    let mut keep: Vec<usize> = order.into_iter().take(n).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| scored[i].0.clone()).collect()
}

/// The rungs as far as the cache decides them: rung 0 always; rung r+1 once every candidate of
/// rung r is scored. `run_rung` is called on each rung's plan before it is scored (running it,
/// or not: `cedm status` passes a no-op); it returns false to stop (a failure, an interrupt).
///
/// # Errors
/// A bad `search:` section or a rung that does not expand.
pub fn rungs(
    exp: &Experiment,
    registry: &Registry,
    cache: &Cache,
    mut run_rung: impl FnMut(&Rung) -> bool,
) -> Result<Vec<Rung>, SpecError> {
    let spec_err = |p: Vec<Problem>| SpecError::new(&exp.shown, &exp.src, p);
    let s = parse(exp).map_err(spec_err)?.ok_or_else(|| {
        spec_err(vec![problem(
            "the experiment has no `search`".into(),
            Span::new(0, 0),
            "no search",
        )])
    })?;
    let budgets = exp
        .sweep
        .iter()
        .find(|v| v.name == s.budget)
        .map_or(0, |v| v.values.len());
    let mut candidates: Vec<serde_json::Value> = exp
        .sweep
        .iter()
        .find(|v| v.name == s.over)
        .map(|v| v.values.iter().map(|n| n.value.to_json()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for r in 0..budgets {
        let plan = expand(restricted(exp, &s, r, &candidates), registry)?;
        let budget = exp
            .sweep
            .iter()
            .find(|v| v.name == s.budget)
            .map(|v| v.values[r].value.to_json())
            .unwrap_or_default();
        if !plan.instances.iter().any(|i| {
            i.node == s.metric && i.vars.contains_key(&s.over) && i.vars.contains_key(&s.budget)
        }) {
            return Err(spec_err(vec![problem(
                format!(
                    "`search.metric`: node `{}` does not depend on both `{}` and `{}`",
                    s.metric, s.over, s.budget
                ),
                exp.search.as_ref().map_or(Span::new(0, 0), |n| n.span),
                "cannot score candidates",
            )]));
        }
        let mut rung = Rung {
            index: r,
            budget,
            candidates: candidates.clone(),
            plan,
            scores: Vec::new(),
            promoted: None,
        };
        let go_on = run_rung(&rung);
        rung.scores = scores(&rung.plan, cache, &s, &candidates);
        let decided = rung.scores.iter().all(|(_, v)| v.is_some());
        if r + 1 == budgets {
            rung.promoted = decided.then(Vec::new);
            out.push(rung);
            break;
        }
        if decided {
            let p = promote(&s, &rung.scores);
            candidates = p.clone();
            rung.promoted = Some(p);
        }
        let stop = !go_on || rung.promoted.is_none();
        out.push(rung);
        if stop {
            break;
        }
    }
    Ok(out)
}

/// The parsed search of an experiment, for callers that only need to know it has one.
pub fn of(exp: &Experiment) -> Option<Search> {
    parse(exp).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(keep: f64, minimize: bool) -> Search {
        Search {
            over: "C".into(),
            budget: "L".into(),
            metric: "m".into(),
            field: String::new(),
            keep,
            minimize,
        }
    }

    #[test]
    fn promotion_keeps_the_best_fraction_in_sweep_order_with_ties_by_order() {
        let j = |v: i64| serde_json::json!(v);
        let sc = vec![
            (j(10), Some(3.0)),
            (j(20), Some(1.0)),
            (j(30), None),
            (j(40), Some(1.0)),
        ];
        assert_eq!(promote(&s(0.5, true), &sc), vec![j(20), j(40)]);
        assert_eq!(promote(&s(0.25, true), &sc), vec![j(20)]);
        assert_eq!(promote(&s(0.25, false), &sc), vec![j(10)]);
        assert_eq!(promote(&s(0.01, true), &sc), vec![j(20)], "at least one");
        assert_eq!(promote(&s(1.0, true), &sc).len(), 4);
    }
}
