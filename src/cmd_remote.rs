//! `cedm cache push | pull` and `run --pull`: the remote cache tier (feature `remote`).

#[cfg(not(feature = "remote"))]
use std::path::Path;
#[cfg(not(feature = "remote"))]
use std::process::ExitCode;

#[cfg(not(feature = "remote"))]
use crate::CliError;
#[cfg(not(feature = "remote"))]
use crate::cli::{Cli, RemoteArg};

#[cfg(not(feature = "remote"))]
fn unavailable() -> CliError {
    CliError::Hint {
        message: "this cedm was built without the remote cache tier".into(),
        help: "build it with the `remote` feature: `cargo install --path . --features remote` (or `cargo run --features remote -- …`)".into(),
    }
}

/// `cedm cache push`.
#[cfg(not(feature = "remote"))]
pub fn push(_: &Cli, _: Option<&Path>, _: &RemoteArg) -> Result<ExitCode, CliError> {
    Err(unavailable())
}

/// `cedm cache pull`.
#[cfg(not(feature = "remote"))]
pub fn pull(_: &Cli, _: Option<&Path>, _: &RemoteArg) -> Result<ExitCode, CliError> {
    Err(unavailable())
}

/// `cedm run --pull`: fetch what the plan needs before running.
#[cfg(not(feature = "remote"))]
pub fn read_through(
    _: &cedm_engine::Plan,
    _: &cedm_cache::Cache,
    _: &RemoteArg,
) -> Result<(), CliError> {
    Err(unavailable())
}

#[cfg(feature = "remote")]
pub use imp::{pull, push, read_through};

#[cfg(feature = "remote")]
mod imp {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::ExitCode;

    use cedm_cache::{Cache, Digest};
    use cedm_engine::{Plan, Status};
    use cedm_remote::{Remote, Transfer};

    use crate::cli::{Cli, RemoteArg};
    use crate::render::bytes;
    use crate::{CliError, cache_for, existing_cache, outln, registry};

    fn open(r: &RemoteArg) -> Result<Remote, CliError> {
        let Some(url) = r.url.as_deref() else {
            return Err(CliError::Hint {
                message: "no remote cache named".into(),
                help: "give `--remote s3://BUCKET/PREFIX` or set CEDM_REMOTE".into(),
            });
        };
        Ok(Remote::open(url)?)
    }

    /// The cached keys of a plan and everything they were computed from.
    fn lineage(plan: &Plan, cache: &Cache) -> Vec<Digest> {
        let mut set: BTreeSet<Digest> = BTreeSet::new();
        let mut stack: Vec<Digest> = cedm_engine::status(plan, cache, &[])
            .into_iter()
            .filter_map(|s| match s {
                Status::Cached { key } => Some(key),
                _ => None,
            })
            .collect();
        while let Some(k) = stack.pop() {
            if !set.insert(k) {
                continue;
            }
            if let Ok(Some(r)) = cache.record(&k) {
                stack.extend(r.inputs.values().map(|i| i.key));
            }
        }
        set.into_iter().collect()
    }

    fn report(verb: &str, t: &Transfer, url: &str) -> ExitCode {
        outln!(
            "{verb} {} records, {} objects ({}) {} {url}; {} already there{}",
            t.records,
            t.objects,
            bytes(t.bytes),
            if verb == "pushed" { "to" } else { "from" },
            t.present,
            if t.missing.is_empty() {
                String::new()
            } else {
                format!("; {} not on the other side", t.missing.len())
            }
        );
        for c in &t.corrupt {
            outln!("{} {c}", crate::render::paint("corrupt", "31"));
        }
        if t.corrupt.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    /// `cedm cache push`.
    pub fn push(cli: &Cli, file: Option<&Path>, r: &RemoteArg) -> Result<ExitCode, CliError> {
        let remote = open(r)?;
        let cache = existing_cache(cli.cache.as_deref(), file, false)?;
        let keys = match file {
            Some(f) => lineage(&cedm_engine::load_plan(f, &registry())?, &cache),
            None => cache.records().into_iter().map(|r| r.key).collect(),
        };
        let t = remote.push(&cache, &keys)?;
        Ok(report("pushed", &t, remote.url()))
    }

    /// Pull what the plan needs: the keys it would run, repeatedly (a pulled input gives its
    /// consumers their keys).
    fn pull_plan(plan: &Plan, cache: &Cache, remote: &Remote) -> Result<Transfer, CliError> {
        let mut total = Transfer::default();
        let mut tried: BTreeSet<Digest> = BTreeSet::new();
        loop {
            let want: Vec<Digest> = cedm_engine::status(plan, cache, &[])
                .into_iter()
                .filter_map(|s| match s {
                    Status::WillRun { key, .. } => Some(key),
                    _ => None,
                })
                .filter(|k| tried.insert(*k))
                .collect();
            if want.is_empty() {
                break;
            }
            let t = remote.pull(cache, &want)?;
            total.records += t.records;
            total.objects += t.objects;
            total.bytes += t.bytes;
            total.present += t.present;
            total.missing.extend(t.missing);
            total.corrupt.extend(t.corrupt);
            if t.records == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// `cedm cache pull`.
    pub fn pull(cli: &Cli, file: Option<&Path>, r: &RemoteArg) -> Result<ExitCode, CliError> {
        let remote = open(r)?;
        // Pulling writes: it creates the cache if needed.
        let cache = cache_for(cli.cache.as_deref(), file)?;
        let t = match file {
            Some(f) => pull_plan(&cedm_engine::load_plan(f, &registry())?, &cache, &remote)?,
            None => remote.pull(&cache, &remote.keys()?)?,
        };
        Ok(report("pulled", &t, remote.url()))
    }

    /// `cedm run --pull`.
    pub fn read_through(plan: &Plan, cache: &Cache, r: &RemoteArg) -> Result<(), CliError> {
        let remote = open(r)?;
        let t = pull_plan(plan, cache, &remote)?;
        let _ = report("pulled", &t, remote.url());
        Ok(())
    }
}
