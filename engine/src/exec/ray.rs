//! The Ray executor: each ready node becomes a Ray job running `cedm exec KEY`, submitted
//! through the Ray Jobs REST API of the head node's dashboard (`POST /api/jobs/`), against the
//! same cache on a shared filesystem.
//!
//! How it works (the Slurm executor's contract, on Ray's job API):
//! - The task is stored in the cache (`tasks/<key>.json`); the job's entrypoint is
//!   `cedm --cache CACHE exec KEY --exit-code-file CACHE/ray/<run>/<key>.exit`, with the
//!   reservation as `entrypoint_num_cpus`, `entrypoint_num_gpus` and `entrypoint_memory`, so Ray
//!   places it on a node with free resources and accounts GPUs (logical GPUs on a CPU cluster
//!   too). The submission id is `cedm-<run>-<n>-<key>`; metadata names the run, the instance,
//!   the kind and the cache.
//! - One thread per running task polls `GET /api/jobs/<id>` every poll interval. When the job
//!   is over, its logs (`GET /api/jobs/<id>/logs`) are written beside the exit-code file. The
//!   exit-code file is the truth, as under Slurm; without it, the driver's exit code and
//!   Ray's status and message say how the job ended, and the failure is recorded with the log.
//! - Exit 130 (the node checkpointed and stopped) is resubmitted up to `max_resubmits` times,
//!   unless the run is stopping. On Ctrl-C the driver stops every job of the run
//!   (`POST /api/jobs/<id>/stop`: Ray sends SIGTERM, on which `cedm exec` checkpoints, then kills
//!   after its timeout).
//!
//! The HTTP client is `ureq` without TLS: a Ray dashboard is plain HTTP (port 8265); an
//! `https://` address gets a clear error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cedm_cache::Cache;

use super::{
    Engine, Executor, job_exited, job_lost, job_succeeded, report_line, run_dir, shell_quote,
};
use crate::task::{BatchResources, Task, TaskError, TaskOutcome, save_task};

/// Settings of the Ray executor.
#[derive(Clone, Debug)]
pub struct RayOptions {
    /// The dashboard's address (`http://HEAD:8265`).
    pub address: String,
    /// The `cedm` binary jobs run (must be reachable from the Ray nodes).
    pub exe: PathBuf,
    /// Seconds between status polls.
    pub poll: Duration,
    /// Resubmissions of a job that checkpointed and stopped (exit 130).
    pub max_resubmits: u32,
    /// A runtime environment for every job (`{"env_vars": {...}}`, …), verbatim.
    pub runtime_env: Option<serde_json::Value>,
    /// Environment variables every job gets (added to the runtime environment's `env_vars`;
    /// one that `runtime_env` sets wins). Ray jobs do not inherit the driver's environment, as
    /// `sbatch` jobs do; the CLI passes cedm's own `CEDM_*` settings this way.
    pub env_vars: std::collections::BTreeMap<String, String>,
    /// The cluster's token when it has token authentication (`RAY_AUTH_MODE=token`), sent as
    /// `Authorization: Bearer …` ([`auth_token`] finds it as Ray's CLI does).
    pub token: Option<String>,
}

/// The Ray token as Ray's own clients find it: `RAY_AUTH_TOKEN`, else the file
/// `RAY_AUTH_TOKEN_PATH` names, else `~/.ray/auth_token` when it exists.
///
/// # Errors
/// `RAY_AUTH_TOKEN_PATH` names a file that cannot be read (Ray treats that as fatal too).
pub fn auth_token() -> Result<Option<String>, String> {
    if let Ok(t) = std::env::var("RAY_AUTH_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_string()));
    }
    if let Ok(p) = std::env::var("RAY_AUTH_TOKEN_PATH") {
        return std::fs::read_to_string(&p)
            .map(|t| Some(t.trim().to_string()).filter(|t| !t.is_empty()))
            .map_err(|e| format!("RAY_AUTH_TOKEN_PATH={p}: {e}"));
    }
    Ok(std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".ray").join("auth_token"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

impl RayOptions {
    /// Defaults for a dashboard address and a binary.
    pub fn new(address: &str, exe: PathBuf) -> RayOptions {
        RayOptions {
            address: address.trim_end_matches('/').to_string(),
            exe,
            poll: Duration::from_secs(2),
            max_resubmits: 3,
            runtime_env: None,
            env_vars: std::collections::BTreeMap::new(),
            token: None,
        }
    }
}

/// An HTTP agent with timeouts: a dashboard that hangs is an error, not a hung run.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .timeout_connect(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// A JSON answer of the dashboard, or what went wrong (status and body).
fn answer(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
) -> Result<serde_json::Value, String> {
    let mut r = r.map_err(|e| format!("{what}: {e}"))?;
    let status = r.status();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| format!("{what}: reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("{what}: HTTP {status}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|e| format!("{what}: not JSON ({e}): {}", body.trim()))
}

/// The Ray version of the dashboard at `address`, or why it does not answer.
///
/// # Errors
/// No dashboard there, or not Ray's.
pub fn version(address: &str, token: Option<&str>) -> Result<String, String> {
    let address = address.trim_end_matches('/');
    if !address.starts_with("http://") {
        return Err(format!(
            "{address}: the Ray dashboard's address is plain http://HOST:PORT (8265 by default)"
        ));
    }
    let mut req = agent().get(&format!("{address}/api/version"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let v = answer(req.call(), &format!("the Ray dashboard at {address}"))?;
    v.get("ray_version")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{address}/api/version: no ray_version in {v}"))
}

/// Slurm-style memory (`16G`, `500M`, `1T`, a bare number in MiB) in bytes.
fn memory_bytes(mem: &str) -> Option<u64> {
    let m = mem.trim();
    let (num, unit) = match m.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&m[..i], m[i..].to_ascii_uppercase()),
        None => (m, "M".to_string()),
    };
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim_end_matches('B') {
        "K" => 1u64 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}

/// How a job ended.
#[derive(Debug)]
enum End {
    /// `cedm exec` wrote this exit code (or the driver's exit code said it).
    Exit(i32),
    /// Ray's final status and message, without an exit code.
    Ray(String),
}

/// Runs tasks as Ray jobs. See the module docs.
pub struct RayExecutor {
    opts: RayOptions,
    agent: ureq::Agent,
    cache_root: PathBuf,
    dir: PathBuf,
    run_id: String,
    next: AtomicU64,
}

impl RayExecutor {
    /// Start an executor for one run on `cache`: checks that the dashboard answers.
    ///
    /// # Errors
    /// When the dashboard does not answer or the run's folder cannot be created.
    pub fn new(cache: &Cache, opts: RayOptions) -> Result<RayExecutor, TaskError> {
        version(&opts.address, opts.token.as_deref()).map_err(TaskError::Node)?;
        let (run_id, dir) = run_dir(cache, "ray")?;
        Ok(RayExecutor {
            opts,
            agent: agent(),
            cache_root: cache.root().to_path_buf(),
            dir,
            run_id,
            next: AtomicU64::new(0),
        })
    }

    /// The folder of this run's job logs and exit codes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn get(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let r = self.agent.get(&format!("{}{path}", self.opts.address));
        match &self.opts.token {
            Some(t) => r.header("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    fn post(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let r = self.agent.post(&format!("{}{path}", self.opts.address));
        match &self.opts.token {
            Some(t) => r.header("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    /// The request body of a job for `task`.
    fn job_body(&self, task: &Task, id: &str, exit_file: &Path) -> serde_json::Value {
        let res: &BatchResources = &task.resources;
        let entrypoint = format!(
            "CEDM_EXECUTOR={} exec {} --cache {} exec {} --exit-code-file {}",
            shell_quote(&format!("ray:{id}")),
            shell_quote(&self.opts.exe.display().to_string()),
            shell_quote(&self.cache_root.display().to_string()),
            task.key,
            shell_quote(&exit_file.display().to_string()),
        );
        let mut body = serde_json::json!({
            "entrypoint": entrypoint,
            "submission_id": id,
            "entrypoint_num_cpus": res.cpus.max(1),
            "entrypoint_num_gpus": res.gpus,
            "metadata": {
                "cedm_run": self.run_id,
                "cedm_instance": task.instance,
                "cedm_kind": task.kind,
                "cedm_cache": self.cache_root.display().to_string(),
            },
        });
        if let Some(bytes) = memory_bytes(&res.mem) {
            body["entrypoint_memory"] = bytes.into();
        }
        let mut env = self
            .opts
            .runtime_env
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        if !self.opts.env_vars.is_empty() && env.is_object() {
            if !env["env_vars"].is_object() {
                env["env_vars"] = serde_json::json!({});
            }
            for (k, v) in &self.opts.env_vars {
                if env["env_vars"].get(k).is_none() {
                    env["env_vars"][k] = v.clone().into();
                }
            }
        }
        if env.as_object().is_some_and(|o| !o.is_empty()) {
            body["runtime_env"] = env;
        }
        body
    }

    /// Submit, wait, and say how the job ended, with its log's path.
    fn run_job(
        &self,
        task: &Task,
        engine: &Engine<'_>,
        stop: &AtomicBool,
    ) -> Result<(End, String, PathBuf), TaskError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let key = task.key.to_string();
        let id = format!("cedm-{}-{n}-{}", self.run_id, &key[..12.min(key.len())]);
        let exit_file = self.dir.join(format!("{key}.exit"));
        let log = self.dir.join(format!("{id}.log"));
        let _ = std::fs::remove_file(&exit_file);
        answer(
            self.post("/api/jobs/")
                .send_json(self.job_body(task, &id, &exit_file)),
            "submitting the Ray job",
        )
        .map_err(|e| TaskError::Node(format!("Ray refused the job: {e}")))?;
        report_line(engine, task, &format!("submitted as Ray job {id}"));
        let (mut running, mut stop_sent, mut last_poll) = (false, false, None::<Instant>);
        let mut failed_polls = 0;
        let details = loop {
            std::thread::sleep(Duration::from_millis(100));
            if stop.load(Ordering::Relaxed) && !stop_sent {
                stop_sent = true;
                let _ = answer(
                    self.post(&format!("/api/jobs/{id}/stop")).send_empty(),
                    "stopping the Ray job",
                );
            }
            if last_poll.is_some_and(|t| t.elapsed() < self.opts.poll) {
                continue;
            }
            last_poll = Some(Instant::now());
            let d = match answer(
                self.get(&format!("/api/jobs/{id}")).call(),
                "polling the Ray job",
            ) {
                Ok(d) => d,
                Err(e) => {
                    // A dashboard restarting: try again, but not forever.
                    failed_polls += 1;
                    if failed_polls > 30 {
                        return Err(TaskError::Node(format!("Ray job {id}: {e}")));
                    }
                    continue;
                }
            };
            failed_polls = 0;
            match d.get("status").and_then(|s| s.as_str()).unwrap_or("") {
                "RUNNING" if !running => {
                    running = true;
                    report_line(engine, task, &format!("Ray job {id} running"));
                }
                "SUCCEEDED" | "FAILED" | "STOPPED" => break d,
                _ => {}
            }
        };
        // The logs, beside the exit-code file (what `cache show` keeps for a lost job).
        if let Ok(l) = answer(
            self.get(&format!("/api/jobs/{id}/logs")).call(),
            "the Ray job's logs",
        ) {
            let _ = std::fs::write(&log, l["logs"].as_str().unwrap_or_default());
        }
        // The exit-code file decides; give a shared filesystem a moment to show it.
        let t0 = Instant::now();
        loop {
            if let Some(code) = std::fs::read_to_string(&exit_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                return Ok((End::Exit(code), id, log));
            }
            if t0.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = details["status"].as_str().unwrap_or("?").to_string();
        let message = details["message"].as_str().unwrap_or("").trim().to_string();
        // Without the file, the driver's exit code (Ray ≥ 2.10) only says it exited.
        Ok((
            End::Ray(match details["driver_exit_code"].as_i64() {
                Some(c) => format!(
                    "{status}, the entrypoint exited {c} without writing its exit code: {message}"
                ),
                None => format!("{status}: {message}"),
            }),
            id,
            log,
        ))
    }
}

impl Executor for RayExecutor {
    fn shares_host_gpu(&self) -> bool {
        false
    }
    fn execute(
        &self,
        task: &Task,
        engine: &Engine<'_>,
        stop: &AtomicBool,
    ) -> Result<TaskOutcome, TaskError> {
        save_task(engine.cache, task)?;
        let mut resubmits = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(TaskError::Interrupted);
            }
            let (end, id, log) = self.run_job(task, engine, stop)?;
            let job = format!("Ray job {id}");
            match end {
                End::Exit(0) => return job_succeeded(task, engine, &job, &log),
                End::Exit(130) if stop.load(Ordering::Relaxed) => {
                    return Err(TaskError::Interrupted);
                }
                End::Exit(130) if resubmits < self.opts.max_resubmits => {
                    resubmits += 1;
                    report_line(
                        engine,
                        task,
                        &format!(
                            "{job} checkpointed and stopped; resubmitting ({resubmits}/{})",
                            self.opts.max_resubmits
                        ),
                    );
                }
                End::Exit(130) => {
                    return Err(TaskError::Node(format!(
                        "{job} checkpointed and stopped {} times; its checkpoint is kept — rerun to continue (log: {})",
                        resubmits + 1,
                        log.display()
                    )));
                }
                End::Exit(code) => return Err(job_exited(task, engine, &job, code, &log)),
                End::Ray(state) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(TaskError::Interrupted);
                    }
                    let error = format!("{job} ended {state} (log: {})", log.display());
                    return Err(job_lost(task, engine, &format!("ray:{id}"), error, &log));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory_bytes;

    #[test]
    fn slurm_memory_reads_as_bytes() {
        assert_eq!(memory_bytes("16G"), Some(16 << 30));
        assert_eq!(memory_bytes("100M"), Some(100 << 20));
        assert_eq!(memory_bytes("512"), Some(512 << 20));
        assert_eq!(memory_bytes("1.5g"), Some(3 << 29));
        assert_eq!(memory_bytes("2TB"), Some(2 << 40));
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(memory_bytes("-1G"), None);
    }
}
