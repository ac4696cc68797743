//! `cedm run`, `cedm status`, `cedm dag`, `cedm exec`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cedm_engine::{Engine, Outcome, Plan, Reporter, RunOptions, Status, load_plan};

use crate::cli::{Cli, DagArgs, DagFormat, ExecArgs, RunArgs, StatusArgs};
use crate::render::{self, Human, JsonLines, paint, secs, status_text};
use crate::{CliError, cache_for, outln, registry};

/// Install handlers: the first SIGINT/SIGTERM/SIGUSR1/SIGUSR2 asks nodes to stop (they
/// checkpoint); a second SIGINT or SIGTERM exits at once.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    // Slurm sends USR1/USR2 (`--signal`) before the time limit: checkpoint and stop.
    for sig in [signal_hook::consts::SIGUSR1, signal_hook::consts::SIGUSR2] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    stop
}

fn print_status(plan: &Plan, statuses: &[Status]) {
    let width = plan
        .instances
        .iter()
        .map(|i| i.label.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let kwidth = plan
        .instances
        .iter()
        .map(|i| i.kind.kind().len())
        .max()
        .unwrap_or(4)
        .max(4);
    for (inst, st) in plan.instances.iter().zip(statuses) {
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
        plan.instances.len(),
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

/// `cedm status`.
pub fn status(cli: &Cli, a: &StatusArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = load_plan(&a.file, &reg)?;
    let cache = cache_for(cli.cache.as_deref(), Some(&a.file))?;
    let statuses = cedm_engine::status(&plan, &cache, &[]);
    if a.json {
        let v: Vec<serde_json::Value> = plan
            .instances
            .iter()
            .zip(&statuses)
            .map(|(i, s)| {
                serde_json::json!({
                    "instance": i.label, "node": i.node, "kind": i.kind.kind(),
                    "vars": i.vars, "status": s,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_status(&plan, &statuses);
    }
    Ok(ExitCode::SUCCESS)
}

/// `cedm run`.
pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = load_plan(&a.file, &reg)?;
    if let Some(d) = &a.device {
        cedm_engine::parse_device(d).map_err(CliError::Usage)?;
    }
    for name in a.only.iter().chain(&a.force) {
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
    let cache = cache_for(cli.cache.as_deref(), Some(&a.file))?;
    if a.dry_run {
        let statuses = cedm_engine::status(&plan, &cache, &a.force);
        print_status(&plan, &statuses);
        return Ok(ExitCode::SUCCESS);
    }
    let opts = RunOptions {
        only: a.only.clone(),
        force: a.force.clone(),
        jobs: a.jobs.max(1),
        device: a.device.clone(),
        stop: stop_flag(),
        executor: "local".into(),
    };
    let human = Human::new(a.output.verbose);
    let json = JsonLines::new();
    let reporter: &dyn Reporter = if a.output.json { &json } else { &human };
    let engine = Engine {
        cache: &cache,
        registry: &reg,
        reporter,
    };
    let summary = cedm_engine::run(&plan, &engine, &opts)?;
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
        render::results_table(&plan, &summary, &cache);
    }
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `cedm dag`.
pub fn dag(a: &DagArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = load_plan(&a.file, &reg)?;
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
    let human = Human::new(a.output.verbose);
    let json = JsonLines::new();
    let reporter: &dyn Reporter = if a.output.json { &json } else { &human };
    let executor = std::env::var("SLURM_JOB_ID")
        .map(|j| format!("slurm:{j}"))
        .unwrap_or_else(|_| "exec".into());
    match cedm_engine::task::execute_locked(&task, &cache, &reg, reporter, &stop, &executor) {
        Ok(o) => {
            let r = o.record();
            eprintln!("{} {} {}", paint("✓", "32"), task.instance, r.key.short());
            Ok(ExitCode::SUCCESS)
        }
        Err(cedm_engine::TaskError::Interrupted) => Ok(ExitCode::from(130)),
        Err(e) => {
            eprintln!("{} {} failed: {e}", paint("✗", "31"), task.instance);
            Ok(ExitCode::from(
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    130
                } else {
                    1
                },
            ))
        }
    }
}
