//! Expansion: sweep points × nodes → node instances, validated, as a DAG.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::device::DeviceSpec;
use crate::diag::{Problem, SpecError};
use crate::interp::Env;
use crate::key::canonical_json;
use crate::node::{FileParam, Node, ParamError, ParamErrorKind, PathSeg, Registry};
pub use crate::resources::ResourceSpec;
use crate::resources::Resources;
use crate::spec::{Experiment, NodeSpec, suggest};
use crate::yaml::{self, Span, Value};

/// One node at one (or several identical) sweep points.
#[derive(Clone)]
pub struct Instance {
    /// Index in [`Plan::instances`].
    pub index: usize,
    /// Node id from the YAML.
    pub node: String,
    /// Label: the node id plus the swept variables it depends on, e.g. `temi[C=10]`.
    pub label: String,
    /// The kind.
    pub kind: &'static dyn Node,
    /// Canonical params as the node will see them (file params as absolute paths).
    pub params: serde_json::Value,
    /// Canonical params that enter the key (file params removed: their content enters instead).
    pub key_params: serde_json::Value,
    /// External files.
    pub files: Vec<FileParam>,
    /// Where each file param is written (for "file not found" diagnostics).
    pub file_spans: BTreeMap<String, Span>,
    /// What the kind needs.
    pub resources: Resources,
    /// YAML overrides for executors.
    pub resource_spec: ResourceSpec,
    /// Upstream instances by slot.
    pub inputs: BTreeMap<String, usize>,
    /// Swept variables this instance depends on, with their values.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The node id's span.
    pub span: Span,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("label", &self.label)
            .field("kind", &self.kind.kind())
            .field("params", &self.params)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// An expanded, validated experiment.
pub struct Plan {
    /// The experiment.
    pub experiment: Experiment,
    /// Node instances in topological order (inputs before users).
    pub instances: Vec<Instance>,
    /// Instance graph; node weights are instance indices, edge weights slot names.
    pub graph: DiGraph<usize, String>,
    /// Number of sweep points.
    pub points: usize,
    /// The experiment's `device:`, parsed (None: not given).
    pub device: Option<DeviceSpec>,
}

impl Plan {
    /// Instances that consume `i` (direct children).
    pub fn children(&self, i: usize) -> Vec<usize> {
        self.graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing)
            .map(|n| self.graph[n])
            .collect()
    }

    /// Instances whose node id or label is `name`.
    pub fn find(&self, name: &str) -> Vec<usize> {
        self.instances
            .iter()
            .filter(|i| i.node == name || i.label == name)
            .map(|i| i.index)
            .collect()
    }

    /// `i` and everything upstream of it.
    pub fn ancestors(&self, roots: &[usize]) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(self.instances[i].inputs.values().copied());
            }
        }
        seen
    }

    /// `i` and everything downstream of it.
    pub fn descendants(&self, roots: &[usize]) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(self.children(i));
            }
        }
        seen
    }
}

fn sweep_points(exp: &Experiment) -> Vec<Vec<usize>> {
    let mut points: Vec<Vec<usize>> = vec![vec![]];
    for var in &exp.sweep {
        let mut next = Vec::with_capacity(points.len() * var.values.len());
        for p in &points {
            for j in 0..var.values.len() {
                let mut q = p.clone();
                q.push(j);
                next.push(q);
            }
        }
        points = next;
    }
    points
}

fn describe(spec: &NodeSpec) -> String {
    format!("node `{}` ({})", spec.id, spec.kind)
}

/// Find the YAML node at a params path. Returns the deepest node reached and whether the full
/// path resolved.
fn node_at<'a>(root: &'a yaml::Node, path: &[PathSeg]) -> (&'a yaml::Node, Option<Span>, bool) {
    let mut cur = root;
    let mut key_span = None;
    for seg in path {
        let next = match (seg, &cur.value) {
            (PathSeg::Key(k), Value::Map(m)) => m
                .iter()
                .find(|(mk, _, _)| mk == k)
                .map(|(_, ks, n)| (n, Some(*ks))),
            (PathSeg::Index(i), Value::Seq(v)) => v.get(*i).map(|n| (n, None)),
            _ => None,
        };
        match next {
            Some((n, ks)) => {
                cur = n;
                key_span = ks;
            }
            None => return (cur, key_span, false),
        }
    }
    (cur, key_span, true)
}

fn path_text(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn param_problem(
    spec: &NodeSpec,
    params: Option<&yaml::Node>,
    e: &ParamError,
    point_note: &str,
    kind: &dyn Node,
) -> Problem {
    let who = describe(spec);
    let empty = yaml::Node {
        value: Value::Map(vec![]),
        span: spec.params_anchor,
    };
    let root = params.unwrap_or(&empty);
    match &e.kind {
        ParamErrorKind::Unknown { field, expected } => {
            let mut path = e.path.clone();
            if path.last() == Some(&PathSeg::Key(field.clone())) {
                path.pop();
            }
            let (map, _, _) = node_at(root, &path);
            let span = match &map.value {
                Value::Map(m) => m
                    .iter()
                    .find(|(k, _, _)| k == field)
                    .map(|(_, ks, _)| *ks)
                    .unwrap_or(map.span),
                _ => map.span,
            };
            let at = if path.is_empty() {
                String::new()
            } else {
                format!(" in `{}`", path_text(&path))
            };
            let mut p = Problem::new(
                "cedm::spec::unknown_param",
                format!("{who} has no param `{field}`{at}"),
                span,
                format!("unknown param{point_note}"),
            );
            let help = match suggest(field, expected.iter().map(String::as_str)) {
                Some(s) => format!(
                    "did you mean `{s}`? {} takes: {}",
                    kind.kind(),
                    expected.join(", ")
                ),
                None => format!("{} takes: {}", kind.kind(), expected.join(", ")),
            };
            p = p.with_help(help);
            p
        }
        ParamErrorKind::Missing { field } => {
            let (map, key_span, _) = node_at(root, &e.path);
            let span = if e.path.is_empty() {
                spec.params_anchor
            } else {
                key_span.unwrap_or(map.span)
            };
            let at = if e.path.is_empty() {
                String::new()
            } else {
                format!(" in `{}`", path_text(&e.path))
            };
            Problem::new(
                "cedm::spec::missing_param",
                format!("{who} is missing the required param `{field}`{at}"),
                span,
                format!("`{field}` is required{point_note}"),
            )
            .with_help(format!("see `cedm kinds {}` for its params", kind.kind()))
        }
        ParamErrorKind::Invalid => {
            let (n, key_span, full) = node_at(root, &e.path);
            let span = if full && n.span.len > 0 {
                n.span
            } else if full {
                key_span.unwrap_or(n.span)
            } else {
                key_span.unwrap_or(spec.params_anchor)
            };
            let name = path_text(&e.path);
            let message = if name.is_empty() {
                format!("{who}: {}", e.message)
            } else {
                format!("{who}: param `{name}`: {}", e.message)
            };
            Problem::new(
                "cedm::spec::invalid_param",
                message,
                span,
                format!("invalid value{point_note}"),
            )
        }
    }
}

fn template_problems(exp: &Experiment, registry: &Registry) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ids: Vec<&str> = exp.nodes.iter().map(|n| n.id.as_str()).collect();
    for spec in &exp.nodes {
        let Some(kind) = registry.get(&spec.kind) else {
            let names: Vec<&str> = registry.kinds().iter().map(|k| k.kind()).collect();
            let mut p = Problem::new(
                "cedm::spec::unknown_kind",
                format!("node `{}` has unknown kind `{}`", spec.id, spec.kind),
                spec.kind_span,
                "unknown kind",
            );
            p = match suggest(&spec.kind, names.iter().copied()) {
                Some(s) => p.with_help(format!("did you mean `{s}`? (`cedm kinds` lists all)")),
                None => p.with_help(format!("known kinds: {}", names.join(", "))),
            };
            problems.push(p);
            for (_, _, target, tspan) in &spec.inputs {
                if !ids.contains(&target.as_str()) {
                    problems.push(unknown_input(spec, target, *tspan, &ids));
                }
            }
            continue;
        };
        let slots = kind.inputs();
        for (slot, sspan, target, tspan) in &spec.inputs {
            if !slots.iter().any(|s| s.name == slot) {
                let names: Vec<&str> = slots.iter().map(|s| s.name).collect();
                let mut p = Problem::new(
                    "cedm::spec::unknown_slot",
                    format!("{} has no input `{slot}`", describe(spec)),
                    *sspan,
                    "unknown input slot",
                );
                p = if names.is_empty() {
                    p.with_help(format!("{} takes no inputs", spec.kind))
                } else {
                    match suggest(slot, names.iter().copied()) {
                        Some(s) => p.with_help(format!(
                            "did you mean `{s}`? {} takes: {}",
                            spec.kind,
                            names.join(", ")
                        )),
                        None => p.with_help(format!("{} takes: {}", spec.kind, names.join(", "))),
                    }
                };
                problems.push(p);
            }
            if !ids.contains(&target.as_str()) {
                problems.push(unknown_input(spec, target, *tspan, &ids));
            } else if target == &spec.id {
                problems.push(Problem::new(
                    "cedm::spec::cycle",
                    format!("node `{}` uses its own output as input `{slot}`", spec.id),
                    *tspan,
                    "self-reference",
                ));
            }
        }
        for s in slots.iter().filter(|s| s.required) {
            if !spec.inputs.iter().any(|(slot, _, _, _)| slot == s.name) {
                problems.push(
                    Problem::new(
                        "cedm::spec::missing_input",
                        format!("{} needs input `{}` ({})", describe(spec), s.name, s.about),
                        spec.id_span,
                        format!("input `{}` is not connected", s.name),
                    )
                    .with_help(format!("add `inputs: {{{}: <node id>}}`", s.name)),
                );
            }
        }
    }
    // Cycles (longer than a self-reference).
    let mut g: DiGraph<usize, usize> = DiGraph::new();
    let idx: Vec<NodeIndex> = (0..exp.nodes.len()).map(|i| g.add_node(i)).collect();
    for (i, spec) in exp.nodes.iter().enumerate() {
        for (k, (_, _, target, _)) in spec.inputs.iter().enumerate() {
            if let Some(j) = exp.nodes.iter().position(|n| &n.id == target)
                && j != i
            {
                g.add_edge(idx[j], idx[i], k);
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&g) {
        if scc.len() < 2 {
            continue;
        }
        let members: BTreeSet<usize> = scc.iter().map(|n| g[*n]).collect();
        let first = *members.iter().next().unwrap_or(&0);
        let spec = &exp.nodes[first];
        let names: Vec<&str> = members.iter().map(|&m| exp.nodes[m].id.as_str()).collect();
        let span = spec
            .inputs
            .iter()
            .find(|(_, _, t, _)| {
                exp.nodes
                    .iter()
                    .position(|n| &n.id == t)
                    .is_some_and(|j| members.contains(&j))
            })
            .map(|(_, _, _, s)| *s)
            .unwrap_or(spec.id_span);
        problems.push(
            Problem::new(
                "cedm::spec::cycle",
                format!(
                    "the nodes {} depend on each other in a cycle",
                    names.join(", ")
                ),
                span,
                "this input closes the cycle",
            )
            .with_help("a node's inputs must come from nodes that do not depend on it"),
        );
    }
    problems
}

fn unknown_input(spec: &NodeSpec, target: &str, span: Span, ids: &[&str]) -> Problem {
    let p = Problem::new(
        "cedm::spec::unknown_input",
        format!(
            "node `{}` takes input from `{target}`, which is not a node",
            spec.id
        ),
        span,
        "no node with this id",
    );
    match suggest(target, ids.iter().copied()) {
        Some(s) => p.with_help(format!("did you mean `{s}`?")),
        None => p.with_help(format!("nodes: {}", ids.join(", "))),
    }
}

fn parse_resources(spec: &NodeSpec, problems: &mut Vec<Problem>) -> ResourceSpec {
    let Some(node) = &spec.resources else {
        return ResourceSpec::default();
    };
    let json = node.value.to_json();
    match serde_path_to_error::deserialize::<_, ResourceSpec>(json) {
        Ok(r) => {
            if let Some(m) = &r.gpu_mem
                && let Err(msg) = crate::gpu::parse_mem_mb(m)
            {
                let (n, _, _) = node_at(node, &[PathSeg::Key("gpu_mem".into())]);
                problems.push(
                    Problem::new(
                        "cedm::spec::invalid_resources",
                        format!("node `{}`: resources: gpu_mem {msg}", spec.id),
                        n.span,
                        "here",
                    )
                    .with_help("gpu_mem is a size such as 512M or 6G"),
                );
            }
            r
        }
        Err(e) => {
            let msg = e.inner().to_string();
            let path: Vec<PathSeg> = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                    _ => None,
                })
                .collect();
            let (n, ks, _) = node_at(node, &path);
            let span = if msg.starts_with("unknown field") {
                let field = msg.split('`').nth(1).unwrap_or("");
                match &node.value {
                    Value::Map(m) => m
                        .iter()
                        .find(|(k, _, _)| k == field)
                        .map(|(_, s, _)| *s)
                        .unwrap_or(node.span),
                    _ => node.span,
                }
            } else {
                ks.map(|_| n.span).unwrap_or(node.span)
            };
            problems.push(
                Problem::new(
                    "cedm::spec::invalid_resources",
                    format!("node `{}`: resources: {msg}", spec.id),
                    span,
                    "here",
                )
                .with_help(
                    "resources takes: gpus, gpu_mem, cpus, mem, time, partition, account, qos, constraint",
                ),
            );
            ResourceSpec::default()
        }
    }
}

/// Expand and validate an experiment.
///
/// # Errors
/// Every problem found: unknown kinds, inputs and slots, cycles, undefined variables, params
/// that do not fit their kind (at any sweep point), bad resources.
pub fn expand(exp: Experiment, registry: &Registry) -> Result<Plan, SpecError> {
    let mut problems = template_problems(&exp, registry);
    if let Err(p) = crate::search::parse(&exp) {
        problems.extend(p);
    }
    // The grid's size first, in checked arithmetic: a sweep of 12 variables × 10 values would
    // otherwise allocate 10¹² points before anything else is said.
    let sizes: Vec<usize> = exp.sweep.iter().map(|v| v.values.len()).collect();
    if crate::limits::product(&sizes, crate::limits::MAX_SWEEP_POINTS).is_none() {
        let shown: Vec<String> = exp
            .sweep
            .iter()
            .map(|v| format!("{} ({})", v.name, v.values.len()))
            .collect();
        let span = exp.sweep.first().map(|v| v.span).unwrap_or_default();
        problems.push(
            Problem::new(
                "cedm::spec::sweep_too_large",
                format!(
                    "the sweep expands to more than {} points: {}",
                    crate::limits::MAX_SWEEP_POINTS,
                    shown.join(" × ")
                ),
                span,
                "this sweep",
            )
            .with_help("split it into several experiment files, or sweep fewer values"),
        );
        return Err(SpecError::new(&exp.shown, &exp.src, problems));
    }
    let points = sweep_points(&exp);
    let swept: BTreeSet<&str> = exp.sweep.iter().map(|s| s.name.as_str()).collect();

    // Node order for expansion: topological on the template when it is acyclic, else file order
    // (param checks still run; instance building is skipped when the template is broken).
    let order: Vec<usize> = stable_topo_order(&exp);
    let template_ok = problems.is_empty();

    let mut seen_problems: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut push = |p: Problem, problems: &mut Vec<Problem>| {
        if seen_problems.insert((p.span.offset, p.message.clone())) {
            problems.push(p);
        }
    };

    let mut resource_specs: HashMap<usize, ResourceSpec> = HashMap::new();
    for (i, spec) in exp.nodes.iter().enumerate() {
        let r = parse_resources(spec, &mut problems);
        resource_specs.insert(i, r);
    }
    let device = match exp
        .device
        .as_ref()
        .map(|(d, span)| (d.parse::<DeviceSpec>(), span))
    {
        None => None,
        Some((Ok(d), _)) => Some(d),
        Some((Err(m), span)) => {
            problems.push(
                Problem::new("cedm::spec::bad_device", m, *span, "unknown device")
                    .with_help("use cpu, wgpu, wgpu:N, cuda or cuda:N"),
            );
            None
        }
    };

    let mut instances: Vec<Instance> = Vec::new();
    // Per node: identity → instance index.
    let mut by_identity: Vec<HashMap<String, usize>> = vec![HashMap::new(); exp.nodes.len()];
    // Per sweep point: the variables (raw definitions, resolved lazily) and the swept values.
    let mut envs: Vec<Env<'_>> = Vec::with_capacity(points.len());
    let mut point_vars: Vec<BTreeMap<&str, serde_json::Value>> = Vec::with_capacity(points.len());
    for point in &points {
        let mut raw: BTreeMap<&str, &yaml::Node> =
            exp.vars.iter().map(|(k, _, n)| (k.as_str(), n)).collect();
        for (var, &j) in exp.sweep.iter().zip(point) {
            raw.insert(var.name.as_str(), &var.values[j]);
        }
        envs.push(Env::new(raw));
        point_vars.push(
            exp.sweep
                .iter()
                .zip(point)
                .map(|(v, &j)| (v.name.as_str(), v.values[j].value.to_json()))
                .collect(),
        );
    }
    // chosen[node][point]: the instance of a node at a sweep point.
    let mut chosen: Vec<Vec<Option<usize>>> = vec![vec![None; points.len()]; exp.nodes.len()];
    // Node-major: every instance of a node exists before its consumers are built, so a gather
    // slot can collect them across sweep points.
    for &ni in &order {
        let spec = &exp.nodes[ni];
        let Some(kind) = registry.get(&spec.kind) else {
            continue;
        };
        for pi in 0..points.len() {
            let (params_yaml, deps) = match &spec.params {
                Some(p) => match envs[pi].interpolate(p) {
                    Ok((v, d)) => (
                        Some(yaml::Node {
                            value: v,
                            span: p.span,
                        }),
                        d,
                    ),
                    Err(ps) => {
                        for p in ps {
                            push(p, &mut problems);
                        }
                        continue;
                    }
                },
                None => (None, BTreeSet::new()),
            };
            let json = params_yaml
                .as_ref()
                .map(|p| p.value.to_json())
                .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
            let my_swept: BTreeSet<&str> = deps
                .iter()
                .map(String::as_str)
                .filter(|d| swept.contains(d))
                .collect();
            let note = if my_swept.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = my_swept
                    .iter()
                    .map(|v| format!("{v} = {}", point_vars[pi][v]))
                    .collect();
                format!(" (at {})", parts.join(", "))
            };
            let checked = match kind.check(&json) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors {
                        push(
                            param_problem(spec, params_yaml.as_ref(), e, &note, kind),
                            &mut problems,
                        );
                    }
                    continue;
                }
            };
            if !template_ok {
                continue;
            }
            let mut inputs = BTreeMap::new();
            let mut inherited: Vec<usize> = Vec::new();
            let mut upstream_ok = true;
            for (slot, _, target, _) in &spec.inputs {
                let Some(j) = exp.nodes.iter().position(|n| &n.id == target) else {
                    upstream_ok = false;
                    continue;
                };
                let gather = kind.inputs().iter().any(|s| s.name == slot && s.many);
                if gather {
                    // Every instance of the upstream node at the sweep points that agree with this
                    // one on the variables this node itself uses, in sweep order.
                    let mut list: Vec<usize> = Vec::new();
                    for qi in 0..points.len() {
                        if my_swept
                            .iter()
                            .all(|v| point_vars[qi][v] == point_vars[pi][v])
                        {
                            match chosen[j][qi] {
                                Some(inst) if !list.contains(&inst) => list.push(inst),
                                Some(_) => {}
                                None => upstream_ok = false,
                            }
                        }
                    }
                    for (t, inst) in list.into_iter().enumerate() {
                        inputs.insert(format!("{slot}#{t:04}"), inst);
                    }
                } else {
                    match chosen[j][pi] {
                        Some(inst) => {
                            inputs.insert(slot.clone(), inst);
                            inherited.push(inst);
                        }
                        None => upstream_ok = false,
                    }
                }
            }
            if !upstream_ok {
                continue;
            }
            let identity =
                canonical_json(&serde_json::json!({"params": checked.params, "inputs": inputs}));
            if let Some(&existing) = by_identity[ni].get(&identity) {
                chosen[ni][pi] = Some(existing);
                continue;
            }
            // Swept variables this instance depends on: its own, and those of the inputs it
            // reads one-to-one (a gathered input's variables are what it gathers over).
            let mut vars: BTreeMap<String, serde_json::Value> = my_swept
                .iter()
                .map(|v| (v.to_string(), point_vars[pi][v].clone()))
                .collect();
            for up in inherited {
                for (k, v) in &instances[up].vars {
                    vars.insert(k.clone(), v.clone());
                }
            }
            let label = if vars.is_empty() {
                spec.id.clone()
            } else {
                let parts: Vec<String> = exp
                    .sweep
                    .iter()
                    .filter_map(|s| {
                        vars.get(&s.name)
                            .map(|v| format!("{}={}", s.name, json_short(v)))
                    })
                    .collect();
                format!("{}[{}]", spec.id, parts.join(","))
            };
            // Files: absolute paths for the node, content (not path) in the key.
            let mut params = checked.params.clone();
            let mut key_params = checked.params.clone();
            let mut files = Vec::new();
            let mut file_spans = BTreeMap::new();
            for f in &checked.files {
                let abs: PathBuf = normalize(&if f.path.is_absolute() {
                    f.path.clone()
                } else {
                    exp.dir.join(&f.path)
                });
                if let Some(obj) = params.as_object_mut() {
                    obj.insert(f.param.clone(), abs.to_string_lossy().to_string().into());
                }
                if let Some(obj) = key_params.as_object_mut() {
                    obj.remove(&f.param);
                }
                let span = params_yaml
                    .as_ref()
                    .and_then(|p| p.get(&f.param).map(|(_, n)| n.span))
                    .unwrap_or(spec.params_anchor);
                file_spans.insert(f.param.clone(), span);
                files.push(FileParam {
                    param: f.param.clone(),
                    path: abs,
                    kind: f.kind,
                });
            }
            if let Some(obj) = key_params.as_object_mut() {
                for k in kind.unkeyed_params() {
                    obj.remove(*k);
                }
            }
            let mut resources = checked.resources;
            let rspec = resource_specs.get(&ni).cloned().unwrap_or_default();
            if let Some(g) = rspec.gpus {
                resources.gpus = g;
            }
            if let Some(m) = rspec
                .gpu_mem
                .as_deref()
                .and_then(|m| crate::gpu::parse_mem_mb(m).ok())
            {
                resources.gpu_mem_mb = Some(m);
            }
            let index = instances.len();
            instances.push(Instance {
                index,
                node: spec.id.clone(),
                label,
                kind,
                params,
                key_params,
                files,
                file_spans,
                resources,
                resource_spec: rspec,
                inputs,
                vars,
                span: spec.id_span,
            });
            by_identity[ni].insert(identity, index);
            chosen[ni][pi] = Some(index);
        }
    }
    if !problems.is_empty() {
        return Err(SpecError::new(&exp.shown, &exp.src, problems));
    }
    // Instances were created point by point; order them topologically by construction: every
    // input of an instance was created before it.
    let mut graph = DiGraph::new();
    let nodes: Vec<NodeIndex> = instances.iter().map(|i| graph.add_node(i.index)).collect();
    for inst in &instances {
        for (slot, &up) in &inst.inputs {
            graph.add_edge(nodes[up], nodes[inst.index], slot.clone());
        }
    }
    let n_points = points.len();
    Ok(Plan {
        experiment: exp,
        instances,
        graph,
        points: n_points,
        device,
    })
}

fn json_short(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Node indices in topological order, breaking ties by file order (so listings follow the
/// YAML). Nodes on a cycle are appended in file order (the cycle is reported separately).
fn stable_topo_order(exp: &Experiment) -> Vec<usize> {
    let n = exp.nodes.len();
    let deps: Vec<Vec<usize>> = exp
        .nodes
        .iter()
        .map(|spec| {
            spec.inputs
                .iter()
                .filter_map(|(_, _, t, _)| exp.nodes.iter().position(|m| &m.id == t))
                .collect()
        })
        .collect();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    loop {
        let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d] || d == i));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => break,
        }
    }
    order.extend((0..n).filter(|&i| !placed[i]));
    order
}

/// Remove `.` and `..` components lexically (`/a/exp/../assets` → `/a/assets`), as users read
/// paths; symlinks are not resolved.
pub fn normalize(p: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
