//! `cedm run`, `cedm status`, `cedm dag`, `cedm exec`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cedm_engine::{Engine, Outcome, Plan, Reporter, RunOptions, Status};

use crate::cli::{Cli, DagArgs, DagFormat, ExecArgs, RunArgs, StatusArgs};
use crate::render::{self, Human, JsonLines, paint, secs, status_text};
use crate::{CliError, cache_for, outln, registry};

/// Install handlers: the first SIGINT/SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 asks nodes to stop (they
/// checkpoint); a second SIGINT, SIGTERM or SIGHUP exits at once. SIGHUP is an SSH session
/// dropping: it stops as cleanly as Ctrl-C.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    // Slurm sends USR1/USR2 (`--signal`) before the time limit: checkpoint and stop.
    for sig in [signal_hook::consts::SIGUSR1, signal_hook::consts::SIGUSR2] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    stop
}

/// The status table: every instance (only the uncached with `changed_only`; only those in
/// `keep` when given, which the totals then count too).
fn print_status(
    plan: &Plan,
    statuses: &[Status],
    changed_only: bool,
    keep: Option<&std::collections::BTreeSet<usize>>,
) {
    let kept = |i: usize| keep.is_none_or(|k| k.contains(&i));
    let statuses: Vec<&Status> = statuses
        .iter()
        .enumerate()
        .filter(|(i, _)| kept(*i))
        .map(|(_, s)| s)
        .collect();
    let instances: Vec<&cedm_engine::Instance> =
        plan.instances.iter().filter(|i| kept(i.index)).collect();
    let width = instances
        .iter()
        .map(|i| i.label.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let kwidth = instances
        .iter()
        .map(|i| i.kind.kind().len())
        .max()
        .unwrap_or(4)
        .max(4);
    for (inst, st) in instances.iter().zip(&statuses) {
        if changed_only && matches!(st, Status::Cached { .. }) {
            continue;
        }
        outln!(
            "{:<width$}  {:<kwidth$}  {}",
            inst.label,
            inst.kind.kind(),
            status_text(st)
        );
    }
    let cached = statuses
        .iter()
        .filter(|s| matches!(s, Status::Cached { .. }))
        .count();
    let run = statuses
        .iter()
        .filter(|s| matches!(s, Status::WillRun { .. }))
        .count();
    let waits = statuses
        .iter()
        .filter(|s| matches!(s, Status::Waits { .. }))
        .count();
    let missing = statuses
        .iter()
        .filter(|s| matches!(s, Status::MissingFile { .. }))
        .count();
    let mut line = format!(
        "{} nodes ({} sweep points): {cached} cached, {run} will run, {waits} wait on them",
        instances.len(),
        plan.points
    );
    if missing > 0 {
        line.push_str(&format!(
            ", {} with missing files",
            paint(&missing.to_string(), "31")
        ));
    }
    outln!("{line}");
}

/// How many rungs a search has (its budget variable's values).
fn budgets(plan: &Plan, s: &cedm_engine::search::Search) -> usize {
    plan.experiment
        .sweep
        .iter()
        .find(|v| v.name == s.budget)
        .map_or(0, |v| v.values.len())
}

/// A score for people: four significant digits, no trailing zeros.
fn short(v: f64) -> String {
    let t = format!("{v:.4}");
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else {
        t
    }
}

/// One line saying what a rung decided (or what it waits for).
fn rung_line(s: &cedm_engine::search::Search, r: &cedm_engine::search::Rung, n: usize) -> String {
    let scores: Vec<String> = r
        .scores
        .iter()
        .map(|(c, v)| match v {
            Some(v) => format!("{c}: {}", short(*v)),
            None => format!("{c}: n/a"),
        })
        .collect();
    // The metric node, and the field when the YAML names one.
    let metric = if s.field.is_empty() {
        s.metric.clone()
    } else {
        format!("{}.{}", s.metric, s.field)
    };
    let head = format!(
        "rung {}/{n} ({} = {}): {metric} by {} = [{}]",
        r.index + 1,
        s.budget,
        r.budget,
        s.over,
        scores.join(", ")
    );
    let join = |v: &[serde_json::Value]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &r.promoted {
        None => format!(
            "{head} → waits: not every {} is scored yet; the next rung is decided once they are",
            s.metric
        ),
        Some(_) if r.index + 1 == n => {
            let best = r
                .scores
                .iter()
                .filter_map(|(c, v)| v.map(|v| (c, if s.minimize { v } else { -v })))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(c, _)| format!("; best {} = {c}", s.over))
                .unwrap_or_default();
            format!("{head} (last rung{best})")
        }
        Some(p) => {
            let dropped: Vec<serde_json::Value> = r
                .candidates
                .iter()
                .filter(|c| !p.contains(c))
                .cloned()
                .collect();
            format!(
                "{head} → promoted {} = {} (best {} of {} by {metric}, {} is better), dropped {}",
                s.over,
                join(p),
                p.len(),
                r.candidates.len(),
                if s.minimize { "lower" } else { "higher" },
                if dropped.is_empty() {
                    "none".to_string()
                } else {
                    join(&dropped)
                }
            )
        }
    }
}

/// `cedm status`.
pub fn status(cli: &Cli, a: &StatusArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = crate::load_plan_with(&a.file, &a.overrides, &reg)?;
    let cache = crate::cache_view(cli.cache.as_deref(), Some(&a.file))?;
    if let Some(search) = cedm_engine::search::of(&plan.experiment) {
        let rungs =
            cedm_engine::search::rungs(&plan.experiment, &reg, &cache.read_only(), |_| true)?;
        if a.json {
            let v: Vec<serde_json::Value> = rungs
                .iter()
                .map(|r| {
                    let st = cedm_engine::status(&r.plan, &cache, &[]);
                    serde_json::json!({
                        "rung": r.index, "budget": r.budget, "candidates": r.candidates,
                        "scores": r.scores, "promoted": r.promoted,
                        "instances": r.plan.instances.iter().zip(&st).map(|(i, s)| serde_json::json!({
                            "instance": i.label, "node": i.node, "kind": i.kind.kind(), "vars": i.vars, "status": s,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            for r in &rungs {
                print_status(
                    &r.plan,
                    &cedm_engine::status(&r.plan, &cache, &[]),
                    a.changed,
                    None,
                );
                outln!("{}", rung_line(&search, r, budgets(&plan, &search)));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let statuses = cedm_engine::status(&plan, &cache, &[]);
    if a.json {
        let v: Vec<serde_json::Value> = plan
            .instances
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| !(a.changed && matches!(s, Status::Cached { .. })))
            .map(|(i, s)| {
                serde_json::json!({
                    "instance": i.label, "node": i.node, "kind": i.kind.kind(),
                    "vars": i.vars, "status": s,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_status(&plan, &statuses, a.changed, None);
    }
    Ok(ExitCode::SUCCESS)
}

/// `cedm run`.
pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = crate::load_plan_with(&a.file, &a.overrides, &reg)?;
    for name in a.only.iter().chain(&a.force) {
        // A label of a known node at a sweep point it does not have: list its instances.
        let base = name.split('[').next().unwrap_or(name);
        let of_base = plan.find(base);
        if plan.find(name).is_empty() && base != name && !of_base.is_empty() {
            let labels: Vec<&str> = of_base
                .iter()
                .map(|&i| plan.instances[i].label.as_str())
                .collect();
            let more = labels.len().saturating_sub(12);
            return Err(CliError::Usage(format!(
                "`{name}` is not a sweep point of `{base}` in {}; its instances: {}{}",
                a.file.display(),
                labels[..labels.len().min(12)].join(", "),
                if more > 0 {
                    format!(" … and {more} more")
                } else {
                    String::new()
                }
            )));
        }
        if plan.find(name).is_empty() {
            let names: Vec<&str> = plan
                .experiment
                .nodes
                .iter()
                .map(|n| n.id.as_str())
                .collect();
            return Err(CliError::Usage(format!(
                "`{name}` is not a node of {} (nodes: {}; or a label like `{}`)",
                a.file.display(),
                names.join(", "),
                plan.instances
                    .last()
                    .map(|i| i.label.as_str())
                    .unwrap_or("")
            )));
        }
    }
    // A dry run only looks: it creates no cache.
    let cache = if a.dry_run {
        crate::cache_view(cli.cache.as_deref(), Some(&a.file))?
    } else {
        cache_for(cli.cache.as_deref(), Some(&a.file))?
    };
    if a.pull {
        crate::cmd_remote::read_through(&plan, &cache, &a.remote)?;
    }
    if a.dry_run {
        let statuses = cedm_engine::status(&plan, &cache, &a.force);
        if a.only.is_empty() {
            print_status(&plan, &statuses, false, None);
        } else {
            // What `--only` would run: the named instances and everything upstream of them.
            let roots: Vec<usize> = a.only.iter().flat_map(|o| plan.find(o)).collect();
            print_status(&plan, &statuses, false, Some(&plan.ancestors(&roots)));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let slurm = a.executor == crate::cli::ExecutorKind::Slurm;
    let ray = a.executor == crate::cli::ExecutorKind::Ray;
    // A JSON object, or nothing (`null` counts as nothing).
    let ray_env = match a.ray.ray_runtime_env.as_deref().map(serde_json::from_str) {
        None | Some(Ok(serde_json::Value::Null)) => None,
        Some(Ok(v @ serde_json::Value::Object(_))) => Some(v),
        Some(Ok(_)) => {
            return Err(CliError::Usage(
                "--ray-runtime-env: expected a JSON object ({\"env_vars\": {…}}, …)".into(),
            ));
        }
        Some(Err(e)) => {
            return Err(CliError::Usage(format!(
                "--ray-runtime-env: not JSON ({e})"
            )));
        }
    };
    let opts = RunOptions {
        only: a.only.clone(),
        force: a.force.clone(),
        jobs: a.jobs.unwrap_or(if slurm || ray { 100 } else { 2 }).max(1),
        device: a.device,
        gpus: a.gpus.clone().map(|g| g.0).unwrap_or_default(),
        gpu_mem_mb: a.gpu_mem,
        stop: stop_flag(),
    };
    let human = Human::new(a.output.verbose, a.output.quiet);
    let json = JsonLines::new();
    let reporter: &dyn Reporter = if a.output.json { &json } else { &human };
    let engine = Engine {
        cache: &cache,
        registry: &reg,
        reporter,
    };
    let search = cedm_engine::search::of(&plan.experiment);
    let run_plan = |plan: &Plan| -> Result<cedm_engine::RunSummary, CliError> {
        Ok(if slurm {
            if !cedm_engine::exec::slurm::available() {
                return Err(CliError::Other(
                "--executor slurm: `sinfo` does not answer here (is this a Slurm login node with the client tools on PATH?)".into(),
            ));
            }
            let exe = std::env::current_exe()
                .map_err(|e| CliError::Other(format!("cannot find the cedm binary: {e}")))?;
            let mut so = cedm_engine::exec::slurm::SlurmOptions::new(exe);
            so.partition = a.slurm.partition.clone();
            so.account = a.slurm.account.clone();
            so.qos = a.slurm.qos.clone();
            so.sbatch_args = a.slurm.sbatch_args.clone();
            so.poll = std::time::Duration::from_secs_f64(a.slurm.poll_seconds.max(0.1));
            so.signal_seconds = a.slurm.signal_seconds;
            so.max_resubmits = a.slurm.max_resubmits;
            so.array_parallel = a.slurm.array_parallel;
            let executor = cedm_engine::exec::slurm::SlurmExecutor::new(&cache, so)
                .map_err(|e| CliError::Other(e.to_string()))?;
            if !a.output.json {
                eprintln!(
                    "Slurm: jobs write their scripts, logs and exit codes to {}",
                    executor.dir().display()
                );
            }
            cedm_engine::run_with(plan, &engine, &opts, &executor)?
        } else if ray {
            let exe = std::env::current_exe()
                .map_err(|e| CliError::Other(format!("cannot find the cedm binary: {e}")))?;
            let mut ro = cedm_engine::exec::ray::RayOptions::new(&a.ray.ray_address, exe);
            ro.poll = std::time::Duration::from_secs_f64(a.slurm.poll_seconds.max(0.1));
            ro.max_resubmits = a.slurm.max_resubmits;
            ro.runtime_env = ray_env.clone();
            ro.token = cedm_engine::exec::ray::auth_token()
                .map_err(|e| CliError::Usage(format!("--executor ray: {e}")))?;
            // What sbatch's --export=ALL would carry: cedm's own settings (not the cache,
            // which the entrypoint names).
            ro.env_vars = std::env::vars()
                .filter(|(k, _)| k.starts_with("CEDM_") && k != "CEDM_CACHE")
                .collect();
            let executor = cedm_engine::exec::ray::RayExecutor::new(&cache, ro)
                .map_err(|e| CliError::Other(format!("--executor ray: {e}")))?;
            if !a.output.json {
                eprintln!(
                    "Ray: job logs and exit codes go to {}",
                    executor.dir().display()
                );
            }
            cedm_engine::run_with(plan, &engine, &opts, &executor)?
        } else {
            cedm_engine::run(plan, &engine, &opts)?
        })
    };
    // A search runs rung by rung: each rung's plan, then its scores decide the next.
    let (plan, summary) = match &search {
        None => {
            let s = run_plan(&plan)?;
            (plan, s)
        }
        Some(sr) => {
            let mut last: Option<cedm_engine::RunSummary> = None;
            let mut err = None;
            let mut all_ok = true;
            let n = budgets(&plan, sr);
            let rungs = cedm_engine::search::rungs(&plan.experiment, &reg, &cache, |r| {
                if !a.output.json {
                    eprintln!(
                        "rung {}/{n} ({} = {}): {} = {}",
                        r.index + 1,
                        sr.budget,
                        r.budget,
                        sr.over,
                        r.candidates
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                match run_plan(&r.plan) {
                    Ok(s) => {
                        let go = s.ok() && !s.interrupted;
                        all_ok &= go;
                        last = Some(s);
                        go
                    }
                    Err(e) => {
                        err = Some(e);
                        false
                    }
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            if !a.output.json {
                for r in &rungs {
                    eprintln!("{}", rung_line(sr, r, n));
                }
            }
            let _ = all_ok;
            match (rungs.into_iter().last(), last) {
                (Some(r), Some(s)) => (r.plan, s),
                _ => return Ok(ExitCode::SUCCESS),
            }
        }
    };
    if !a.output.json {
        human.finish();
        let ran = summary.count(|o| matches!(o, Outcome::Ran(_)));
        let cached = summary.count(|o| matches!(o, Outcome::Cached(_)));
        let failed = summary.count(|o| matches!(o, Outcome::Failed(_)));
        let blocked = summary.count(|o| matches!(o, Outcome::Blocked(_)));
        let mut line = format!("{}: {ran} ran, {cached} cached", plan.experiment.name);
        if failed > 0 {
            line.push_str(&format!(", {}", paint(&format!("{failed} failed"), "31")));
        }
        if blocked > 0 {
            line.push_str(&format!(", {blocked} not run"));
        }
        line.push_str(&format!(" in {}", secs(summary.seconds)));
        if summary.interrupted {
            line.push_str(" (interrupted; finished nodes are cached, rerun to continue)");
        }
        eprintln!("{line}");
        for (inst, o) in plan.instances.iter().zip(&summary.outcomes) {
            if let Outcome::Failed(e) = o {
                eprintln!("  {} {}: {e}", paint("✗", "31"), inst.label);
            }
        }
        if !a.output.quiet {
            render::results_table(&plan, &summary, &cache);
        }
        let records: Vec<Option<cedm_cache::Record>> = summary
            .outcomes
            .iter()
            .map(|o| o.record().cloned())
            .collect();
        render::summary_table(&plan, &records, &cache);
    }
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else if summary.ok() {
        ExitCode::SUCCESS
    } else if summary.storage_full() {
        // The disk is full: a filesystem failure (docs/cli.md), not a node's.
        ExitCode::from(3)
    } else {
        ExitCode::from(1)
    })
}

/// `cedm dag`.
pub fn dag(a: &DagArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = crate::load_plan_with(&a.file, &a.overrides, &reg)?;
    let id = |i: usize| format!("n{i}");
    match a.format {
        DagFormat::Text => {
            for inst in &plan.instances {
                let ins: Vec<String> = inst
                    .inputs
                    .iter()
                    .map(|(s, &u)| format!("{s} ← {}", plan.instances[u].label))
                    .collect();
                if ins.is_empty() {
                    outln!("{} ({})", inst.label, inst.kind.kind());
                } else {
                    outln!("{} ({})  {}", inst.label, inst.kind.kind(), ins.join(", "));
                }
            }
        }
        DagFormat::Json => {
            let v: Vec<serde_json::Value> = plan
                .instances
                .iter()
                .map(|i| {
                    let inputs: serde_json::Map<String, serde_json::Value> = i
                        .inputs
                        .iter()
                        .map(|(s, &u)| (s.clone(), plan.instances[u].label.clone().into()))
                        .collect();
                    serde_json::json!({
                        "instance": i.label, "node": i.node, "kind": i.kind.kind(),
                        "vars": i.vars, "params": i.params, "inputs": inputs,
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        DagFormat::Dot => {
            outln!("digraph \"{}\" {{", plan.experiment.name);
            outln!("  rankdir=LR; node [shape=box, fontname=\"sans-serif\"];");
            for inst in &plan.instances {
                outln!(
                    "  {} [label=\"{}\\n{}\"];",
                    id(inst.index),
                    inst.label.replace('"', "\\\""),
                    inst.kind.kind()
                );
            }
            for inst in &plan.instances {
                for (s, &u) in &inst.inputs {
                    outln!("  {} -> {} [label=\"{s}\"];", id(u), id(inst.index));
                }
            }
            outln!("}}");
        }
        DagFormat::Mermaid => {
            outln!("flowchart LR");
            for inst in &plan.instances {
                outln!(
                    "  {}[\"{}<br/>{}\"]",
                    id(inst.index),
                    inst.label.replace('"', "#quot;"),
                    inst.kind.kind()
                );
            }
            for inst in &plan.instances {
                for (s, &u) in &inst.inputs {
                    outln!("  {} -->|{s}| {}", id(u), id(inst.index));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cedm exec KEY`: compute one stored task (a batch job's body).
pub fn exec(cli: &Cli, a: &ExecArgs) -> Result<ExitCode, CliError> {
    let cache = cache_for(cli.cache.as_deref(), None)?;
    let key = cache.resolve_prefix(&a.key).or_else(|_| {
        a.key
            .parse()
            .map_err(|e: cedm_cache::BadDigest| CliError::Usage(e.to_string()))
    })?;
    let task = cedm_engine::load_task(&cache, &key).map_err(|e| CliError::Other(e.to_string()))?;
    let reg = registry();
    let stop = stop_flag();
    let human = Human::new(a.output.verbose, a.output.quiet);
    let json = JsonLines::new();
    let reporter: &dyn Reporter = if a.output.json { &json } else { &human };
    // The Ray executor names its job in CEDM_EXECUTOR (`ray:<submission id>`).
    let executor = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_JOB_ID"),
        std::env::var("CEDM_EXECUTOR"),
    ) {
        (Ok(a), Ok(t), _, _) => format!("slurm:{a}_{t}"),
        (_, _, Ok(j), _) => format!("slurm:{j}"),
        (_, _, _, Ok(e)) if e.starts_with("ray:") => e,
        _ => "exec".into(),
    };
    let code = exec_code(&task, &cache, &reg, reporter, &stop, &executor);
    if let Some(f) = &a.exit_code_file {
        // Written last, atomically: the Slurm and Ray drivers take the file's presence as "done".
        let tmp = f.with_extension("exit.tmp");
        let code_num = code.1;
        if std::fs::write(&tmp, format!("{code_num}\n"))
            .and_then(|()| std::fs::rename(&tmp, f))
            .is_err()
        {
            eprintln!("cannot write the exit code to {}", f.display());
        }
    }
    Ok(code.0)
}

fn exec_code(
    task: &cedm_engine::Task,
    cache: &cedm_cache::Cache,
    reg: &cedm_engine::Registry,
    reporter: &dyn Reporter,
    stop: &std::sync::atomic::AtomicBool,
    executor: &str,
) -> (ExitCode, u8) {
    match cedm_engine::task::execute_locked(task, cache, reg, reporter, stop, executor) {
        Ok(o) => {
            let r = o.record();
            eprintln!("{} {} {}", paint("✓", "32"), task.instance, r.key.short());
            (ExitCode::SUCCESS, 0)
        }
        Err(cedm_engine::TaskError::Interrupted) => (ExitCode::from(130), 130),
        Err(e) => {
            eprintln!("{} {} failed: {e}", paint("✗", "31"), task.instance);
            let msg = e.to_string();
            let c = if stop.load(std::sync::atomic::Ordering::Relaxed) {
                130
            } else if msg.contains("(os error 28)") || msg.contains("(os error 122)") {
                3
            } else {
                1
            };
            (ExitCode::from(c), c)
        }
    }
}
