//! `cedm cache ls | show | verify | gc | export`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cedm_cache::{Cache, Digest, Record, VerifyProblem};
use cedm_engine::{Status, load_plan};

use crate::cli::{CacheCommand, Cli};
use crate::render::{bytes, paint, secs};
use crate::{CliError, existing_cache, outln, registry};

/// Dispatch a cache subcommand.
pub fn cache(cli: &Cli, c: &CacheCommand) -> Result<ExitCode, CliError> {
    match c {
        CacheCommand::Ls { experiment, json } => ls(cli, experiment.get(), *json),
        CacheCommand::Show {
            name,
            experiment,
            json,
        } => show(cli, name, experiment.get(), *json),
        CacheCommand::Verify { experiment } => verify(cli, experiment.get()),
        CacheCommand::Gc { keep, dry_run } => gc(cli, keep, *dry_run),
        CacheCommand::Push { experiment, remote } => {
            crate::cmd_remote::push(cli, experiment.get(), remote)
        }
        CacheCommand::Pull { experiment, remote } => {
            crate::cmd_remote::pull(cli, experiment.get(), remote)
        }
        CacheCommand::Export {
            name,
            dir,
            experiment,
        } => export(cli, name, dir, experiment.get()),
    }
}

fn ls(cli: &Cli, file: Option<&Path>, json: bool) -> Result<ExitCode, CliError> {
    let cache = existing_cache(cli.cache.as_deref(), file, false)?;
    let experiment = match file {
        Some(f) => Some(load_plan(f, &registry())?.experiment.name),
        None => None,
    };
    let records: Vec<Record> = cache
        .records()
        .into_iter()
        .filter(|r| experiment.as_ref().is_none_or(|e| &r.meta.experiment == e))
        .collect();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let lw = records
        .iter()
        .map(|r| r.meta.instance.len())
        .max()
        .unwrap_or(4)
        .max(8);
    let kw = records
        .iter()
        .map(|r| r.kind.len())
        .max()
        .unwrap_or(4)
        .max(4);
    outln!(
        "{:<12}  {:<lw$}  {:<kw$}  {:>10}  {:>9}  started",
        "key",
        "instance",
        "kind",
        "size",
        "time"
    );
    let mut total = 0;
    for r in &records {
        total += r.output_bytes();
        outln!(
            "{:<12}  {:<lw$}  {:<kw$}  {:>10}  {:>9}  {}",
            r.key.short(),
            r.meta.instance,
            r.kind,
            bytes(r.output_bytes()),
            secs(r.meta.seconds),
            r.meta.started
        );
    }
    let (objects, obytes) = cache.object_usage();
    outln!(
        "{} records ({} of outputs); cache {}: {objects} objects, {}",
        records.len(),
        bytes(total),
        cache.root().display(),
        bytes(obytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolve a name to keys: a key prefix, or a node id / label (through the experiment's
/// current plan when a file is given, else through the refs of every experiment).
fn resolve(cache: &Cache, name: &str, file: Option<&Path>) -> Result<Vec<Digest>, CliError> {
    if let Some(f) = file {
        let plan = load_plan(f, &registry())?;
        let idx = plan.find(name);
        if !idx.is_empty() {
            let statuses = cedm_engine::status(&plan, cache, &[]);
            let mut keys = Vec::new();
            for i in idx {
                let inst = &plan.instances[i];
                let k = match &statuses[i] {
                    Status::Cached { key } | Status::WillRun { key, .. } => Some(*key),
                    _ => None,
                }
                .or_else(|| cache.get_ref(&plan.experiment.name, &inst.label));
                match k {
                    Some(k) => keys.push(k),
                    None => {
                        return Err(CliError::Usage(format!(
                            "`{}` has not been computed yet",
                            inst.label
                        )));
                    }
                }
            }
            return Ok(keys);
        }
    }
    if let Ok(k) = cache.resolve_prefix(name) {
        return Ok(vec![k]);
    }
    let keys: Vec<Digest> = cache
        .refs()
        .into_iter()
        .filter(|(_, inst, _)| inst == name || inst.split('[').next() == Some(name))
        .map(|(_, _, k)| k)
        .collect();
    if keys.is_empty() {
        Err(CliError::Hint {
            message: format!(
                "`{name}` is neither a key prefix nor a node name known to the cache at {}",
                cache.root().display()
            ),
            help: match file {
                Some(f) => format!(
                    "`cedm status {}` lists its nodes; `cedm cache ls {}` what is cached",
                    f.display(),
                    f.display()
                ),
                None => crate::where_caches_are(),
            },
        })
    } else {
        Ok(keys)
    }
}

fn lineage(cache: &Cache, r: &Record, depth: usize, seen: &mut HashSet<Digest>) {
    for (slot, input) in &r.inputs {
        let pad = "  ".repeat(depth + 1);
        match cache.record(&input.key).ok().flatten() {
            Some(up) => {
                outln!(
                    "{pad}{slot} ← {} ({}, {})",
                    up.meta.instance,
                    up.kind,
                    up.key.short()
                );
                if seen.insert(up.key) {
                    lineage(cache, &up, depth + 1, seen);
                }
            }
            None => outln!("{pad}{slot} ← {} (record gone)", input.key.short()),
        }
    }
}

fn show(cli: &Cli, name: &str, file: Option<&Path>, json: bool) -> Result<ExitCode, CliError> {
    let cache = existing_cache(cli.cache.as_deref(), file, false)?;
    let keys = resolve(&cache, name, file)?;
    for (n, key) in keys.iter().enumerate() {
        if n > 0 {
            outln!();
        }
        let record = cache.record(key)?;
        let failure = cache.failure(key)?;
        if json {
            outln!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"record": record, "failure": failure})
                )
                .unwrap_or_default()
            );
            continue;
        }
        match &record {
            Some(r) => {
                outln!("{} {}", paint("key", "1"), r.key);
                outln!(
                    "node      {} ({} v{}) in {}",
                    r.meta.instance,
                    r.kind,
                    r.kind_version,
                    r.meta.experiment
                );
                outln!(
                    "ran       {} for {} on {} ({}, {})",
                    r.meta.started,
                    secs(r.meta.seconds),
                    r.meta.host,
                    r.meta.device,
                    r.meta.executor
                );
                if let Some(rss) = r.meta.peak_rss {
                    outln!("peak RSS  {}", bytes(rss));
                }
                outln!(
                    "params    {}",
                    serde_json::to_string(&r.params).unwrap_or_default()
                );
                for (p, f) in &r.files {
                    outln!(
                        "file      {p} = {} ({}, {})",
                        f.path,
                        bytes(f.size),
                        f.digest.short()
                    );
                }
                if !r.inputs.is_empty() {
                    outln!("lineage");
                    lineage(&cache, r, 0, &mut HashSet::new());
                }
                outln!("outputs   (digest {})", r.output_digest.short());
                for (name, o) in &r.outputs {
                    outln!(
                        "  {name:<28} {:>10}  {}  {}",
                        bytes(o.size),
                        o.digest.short(),
                        cache.object_path(&o.digest).display()
                    );
                }
                for (k, v) in &r.meta.stats {
                    outln!("stat      {k} = {v}");
                }
                if let Some(log) = r.meta.log
                    && let Ok(b) = cache.read_object(&log)
                {
                    let text = String::from_utf8_lossy(&b);
                    let lines: Vec<&str> = text.lines().collect();
                    outln!(
                        "log       ({} lines{})",
                        lines.len(),
                        if lines.len() > 40 { ", last 40" } else { "" }
                    );
                    for l in lines.iter().skip(lines.len().saturating_sub(40)) {
                        outln!("  {l}");
                    }
                }
            }
            None => outln!("{} {key} has no result", paint("key", "1")),
        }
        if let Some(f) = &failure {
            outln!(
                "{} {} ({} on {}, {})",
                paint("last failure", "31"),
                f.meta.started,
                f.meta.instance,
                f.meta.host,
                f.meta.executor
            );
            outln!("  {}", f.error);
            if let Some(log) = f.meta.log
                && let Ok(b) = cache.read_object(&log)
            {
                for l in String::from_utf8_lossy(&b).lines() {
                    outln!("  | {l}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(cli: &Cli, file: Option<&Path>) -> Result<ExitCode, CliError> {
    let cache = existing_cache(cli.cache.as_deref(), file, true)?;
    let report = cache.verify();
    for p in &report.problems {
        match p {
            VerifyProblem::CorruptObject { digest } => outln!(
                "{} object {digest}: content does not match its digest (quarantined)",
                paint("corrupt", "31")
            ),
            VerifyProblem::MissingObject {
                key,
                output,
                digest,
            } => outln!(
                "{} record {} output `{output}`: object {} is gone (the node will rerun)",
                paint("missing", "31"),
                key.short(),
                digest.short()
            ),
            VerifyProblem::MalformedRecord { path, message } => {
                outln!("{} {}: {message}", paint("malformed", "31"), path.display())
            }
            VerifyProblem::StrayFile { path } => {
                outln!("{} {}", paint("stray", "33"), path.display())
            }
        }
    }
    outln!(
        "verified {} objects ({}) and {} records in {}: {}",
        report.objects,
        bytes(report.bytes),
        report.records,
        cache.root().display(),
        if report.problems.is_empty() {
            paint("clean", "32")
        } else {
            paint(&format!("{} problems", report.problems.len()), "31")
        }
    );
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn gc(cli: &Cli, keep: &[PathBuf], dry_run: bool) -> Result<ExitCode, CliError> {
    let cache = existing_cache(
        cli.cache.as_deref(),
        keep.first().map(PathBuf::as_path),
        true,
    )?;
    let keep_set = if keep.is_empty() {
        None
    } else {
        let reg = registry();
        let mut set = HashSet::new();
        for f in keep {
            let plan = load_plan(f, &reg)?;
            for (inst, st) in plan
                .instances
                .iter()
                .zip(cedm_engine::status(&plan, &cache, &[]))
            {
                if let Status::Cached { key } = st {
                    set.insert(key);
                }
                if let Some(k) = cache.get_ref(&plan.experiment.name, &inst.label) {
                    set.insert(k);
                }
            }
        }
        // Keep what the kept records were computed from.
        let mut stack: Vec<Digest> = set.iter().copied().collect();
        while let Some(k) = stack.pop() {
            if let Ok(Some(r)) = cache.record(&k) {
                for i in r.inputs.values() {
                    if set.insert(i.key) {
                        stack.push(i.key);
                    }
                }
            }
        }
        Some(set)
    };
    let r = cache.gc(keep_set.as_ref(), dry_run)?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    outln!(
        "{verb} {} records, {} objects ({}), {} staging areas of dead runs, {} finished work dirs",
        r.records,
        r.objects,
        bytes(r.bytes),
        r.staging,
        r.work_dirs
    );
    Ok(ExitCode::SUCCESS)
}

fn export(cli: &Cli, name: &str, dir: &Path, file: Option<&Path>) -> Result<ExitCode, CliError> {
    let cache = existing_cache(cli.cache.as_deref(), file, false)?;
    let keys = resolve(&cache, name, file)?;
    if keys.len() != 1 {
        return Err(CliError::Usage(format!(
            "`{name}` names {} results; give a label like `temi[C=10]` or a key",
            keys.len()
        )));
    }
    let files = cache.export(&keys[0], dir)?;
    for (n, p) in files {
        outln!("{n} → {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
