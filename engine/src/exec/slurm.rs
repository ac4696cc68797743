//! The Slurm executor: each ready node becomes an `sbatch` job running `cedm exec KEY` on a
//! compute node, against the same cache on the shared filesystem.
//!
//! How it works (after submitit, the Snakemake Slurm plugin and Nextflow's Slurm executor):
//! - A task is stored in the cache (`tasks/<key>.json`) and queued. Tasks queued within a short
//!   window with the same kind and reservation go out as one job array (a sweep's fan-out:
//!   `--array=0-N`), others as single jobs. Every job is named `cedm-<run id>`, so one
//!   `squeue --name` call per poll interval covers all of a run's jobs — never one call per job.
//! - The job `exec`s `cedm exec KEY --exit-code-file …`, which takes the key's lock, computes,
//!   publishes atomically and then writes its exit code next to the job log
//!   (`<cache>/slurm/<run id>/`). That file is the truth: a job that left Slurm's queue without
//!   one ended in a Slurm state (`sacct -c` is asked which: FAILED, CANCELLED, TIMEOUT,
//!   OUT_OF_MEMORY, NODE_FAIL, PREEMPTED…), and the driver records the failure with the job's log
//!   so that `cedm cache show` shows it.
//! - Jobs get `--signal=B:USR2@<s>`: a training node checkpoints at Slurm's time-limit warning
//!   and exits with 130; the driver resubmits it (up to `max_resubmits` times) and it resumes
//!   from the checkpoint. On Ctrl-C the driver cancels pending jobs and sends USR2 to running
//!   ones, which checkpoint and stop.
//! - `--no-requeue` is set: resubmission is the driver's decision, not Slurm's.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cedm_cache::Cache;

use super::{
    Engine, Executor, job_exited, job_lost, job_succeeded, report_line, run_dir, shell_quote,
};
use crate::task::{BatchResources, Task, TaskError, TaskOutcome, save_task};

/// Settings of the Slurm executor.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// The `cedm` binary jobs run (must be reachable from the compute nodes).
    pub exe: PathBuf,
    /// Default partition (a node's `resources: {partition}` wins).
    pub partition: Option<String>,
    /// Default account.
    pub account: Option<String>,
    /// Default QOS.
    pub qos: Option<String>,
    /// Extra `sbatch` arguments, verbatim.
    pub sbatch_args: Vec<String>,
    /// Seconds between `squeue` polls.
    pub poll: Duration,
    /// Tasks queued within this window are grouped into job arrays.
    pub gather: Duration,
    /// Seconds before the time limit at which jobs get SIGUSR2.
    pub signal_seconds: u32,
    /// Resubmissions of a job stopped by the time-limit warning.
    pub max_resubmits: u32,
    /// Most array tasks running at once (`%P`); 0 = no limit.
    pub array_parallel: usize,
}

impl SlurmOptions {
    /// Defaults for a binary.
    pub fn new(exe: PathBuf) -> SlurmOptions {
        SlurmOptions {
            exe,
            partition: None,
            account: None,
            qos: None,
            sbatch_args: Vec::new(),
            poll: Duration::from_secs(5),
            gather: Duration::from_millis(300),
            signal_seconds: 120,
            max_resubmits: 3,
            array_parallel: 0,
        }
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// `cedm exec` wrote this exit code.
    Exit(i32),
    /// Left the queue without an exit code; Slurm's final state (or what we know).
    Slurm(String),
    /// `sbatch` refused it.
    Refused(String),
}

struct Job {
    /// `123` or `123_4`.
    id: String,
    log: PathBuf,
    exit_file: PathBuf,
    running: bool,
    gone_since: Option<Instant>,
}

#[derive(Default)]
struct State {
    next: u64,
    queued: Vec<(u64, Task, Instant)>,
    jobs: HashMap<u64, Job>,
    ended: HashMap<u64, (End, String, PathBuf)>,
    submissions: usize,
    /// Announcements for the waiting threads: request → lines to report.
    notes: HashMap<u64, Vec<String>>,
    stop_sent: bool,
    stop_requested: bool,
}

struct Inner {
    opts: SlurmOptions,
    cache_root: PathBuf,
    dir: PathBuf,
    run_id: String,
    started: String,
    state: Mutex<State>,
    cv: Condvar,
    shutdown: AtomicBool,
}

/// Runs tasks as Slurm jobs. See the module docs.
pub struct SlurmExecutor {
    inner: Arc<Inner>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SlurmExecutor {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
    }
}

/// Run a Slurm command; stdout, or an error with stderr.
fn slurm(cmd: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{cmd}`: {e} (is Slurm installed and on PATH?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether Slurm answers here (`sinfo` runs).
pub fn available() -> bool {
    slurm("sinfo", &["-h".into(), "-o".into(), "%P".into()]).is_ok()
}

impl SlurmExecutor {
    /// Start an executor for one run on `cache`.
    ///
    /// # Errors
    /// When the run's folder in the cache cannot be created.
    pub fn new(cache: &Cache, opts: SlurmOptions) -> Result<SlurmExecutor, TaskError> {
        let (run_id, dir) = run_dir(cache, "slurm")?;
        // sacct's --starttime wants local time without zone; a day back is safe and cheap.
        let started = "now-1days".to_string();
        let inner = Arc::new(Inner {
            opts,
            cache_root: cache.root().to_path_buf(),
            dir,
            run_id,
            started,
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let p = inner.clone();
        let poller = std::thread::Builder::new()
            .name("slurm-poller".into())
            .spawn(move || p.poll_loop())
            .map_err(|e| TaskError::Node(format!("starting the Slurm poller: {e}")))?;
        Ok(SlurmExecutor {
            inner,
            poller: Some(poller),
        })
    }

    /// The folder of this run's job scripts, logs and exit codes.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn job_name(&self) -> String {
        format!("cedm-{}", self.run_id)
    }

    fn poll_loop(&self) {
        let mut last_poll = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            self.submit_ready();
            let stop = {
                let st = self.lock();
                st.stop_requested && !st.stop_sent
            };
            if stop {
                self.send_stop();
            }
            if last_poll.elapsed() >= self.opts.poll {
                last_poll = Instant::now();
                self.poll();
            }
        }
    }

    /// Submit what has waited the gather window, grouped by (kind, reservation).
    fn submit_ready(&self) {
        let batch: Vec<(u64, Task)> = {
            let mut st = self.lock();
            if st.stop_requested
                || st.queued.is_empty()
                || st.queued.iter().all(|q| q.2.elapsed() < self.opts.gather)
            {
                return;
            }
            st.queued.drain(..).map(|(id, t, _)| (id, t)).collect()
        };
        let mut groups: BTreeMap<(String, BatchResources), Vec<(u64, Task)>> = BTreeMap::new();
        for (id, t) in batch {
            groups
                .entry((t.kind.clone(), t.resources.clone()))
                .or_default()
                .push((id, t));
        }
        for ((kind, res), members) in groups {
            for chunk in members.chunks(1000) {
                self.submit(&kind, &res, chunk);
            }
        }
    }

    fn submit(&self, kind: &str, res: &BatchResources, members: &[(u64, Task)]) {
        let n = {
            let mut st = self.lock();
            st.submissions += 1;
            st.submissions
        };
        let array = members.len() > 1;
        let script = self.dir.join(format!("submit-{n:04}.sh"));
        let log_pattern = if array {
            self.dir.join("%A_%a.log")
        } else {
            self.dir.join("%j.log")
        };
        let mut s = String::from("#!/bin/bash\n");
        let mut sb = |k: &str, v: &str| {
            // sbatch reads directive values like a shell word: quote anything with spaces.
            if v.contains(char::is_whitespace) {
                s.push_str(&format!("#SBATCH --{k}=\"{}\"\n", v.replace('"', "'")));
            } else {
                s.push_str(&format!("#SBATCH --{k}={v}\n"));
            }
        };
        sb("job-name", &self.job_name());
        sb(
            "comment",
            &format!(
                "{kind}:{}",
                members
                    .iter()
                    .map(|m| m.1.instance.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .chars()
            .take(200)
            .collect::<String>(),
        );
        sb("output", &log_pattern.display().to_string());
        sb("open-mode", "append");
        sb("cpus-per-task", &res.cpus.to_string());
        sb("mem", &res.mem);
        sb("time", &res.time);
        sb("signal", &format!("B:USR2@{}", self.opts.signal_seconds));
        if res.gpus > 0 {
            sb("gres", &format!("gpu:{}", res.gpus));
        }
        for (k, v) in [
            (
                "partition",
                res.partition.as_ref().or(self.opts.partition.as_ref()),
            ),
            (
                "account",
                res.account.as_ref().or(self.opts.account.as_ref()),
            ),
            ("qos", res.qos.as_ref().or(self.opts.qos.as_ref())),
            ("constraint", res.constraint.as_ref()),
        ] {
            if let Some(v) = v {
                sb(k, v);
            }
        }
        if array {
            let par = if self.opts.array_parallel > 0 {
                format!("%{}", self.opts.array_parallel)
            } else {
                String::new()
            };
            sb("array", &format!("0-{}{par}", members.len() - 1));
        }
        s.push_str("#SBATCH --no-requeue\n");
        s.push_str(&format!(
            "# cedm run {}: {} task(s) of {kind}\n",
            self.run_id,
            members.len()
        ));
        s.push_str("KEYS=(");
        for (_, t) in members {
            s.push_str(&format!(" {}", t.key));
        }
        s.push_str(" )\nKEY=${KEYS[${SLURM_ARRAY_TASK_ID:-0}]}\n");
        s.push_str(&format!(
            "exec {} --cache {} exec \"$KEY\" --exit-code-file {}/\"$KEY\".exit\n",
            shell_quote(&self.opts.exe.display().to_string()),
            shell_quote(&self.cache_root.display().to_string()),
            shell_quote(&self.dir.display().to_string()),
        ));
        for (_, t) in members {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.exit", t.key)));
        }
        let result = std::fs::write(&script, s)
            .map_err(|e| format!("writing {}: {e}", script.display()))
            .and_then(|()| {
                let mut args: Vec<String> = vec!["--parsable".into()];
                args.extend(self.opts.sbatch_args.iter().cloned());
                args.push(script.display().to_string());
                slurm("sbatch", &args)
            });
        let mut st = self.lock();
        match result {
            Ok(out) => {
                let base = out.trim().split(';').next().unwrap_or("").to_string();
                for (i, (id, t)) in members.iter().enumerate() {
                    let (job, log) = if array {
                        (
                            format!("{base}_{i}"),
                            self.dir.join(format!("{base}_{i}.log")),
                        )
                    } else {
                        (base.clone(), self.dir.join(format!("{base}.log")))
                    };
                    st.notes
                        .entry(*id)
                        .or_default()
                        .push(format!("submitted as Slurm job {job}"));
                    st.jobs.insert(
                        *id,
                        Job {
                            id: job,
                            log,
                            exit_file: self.dir.join(format!("{}.exit", t.key)),
                            running: false,
                            gone_since: None,
                        },
                    );
                }
            }
            Err(e) => {
                for (id, _) in members {
                    st.ended.insert(
                        *id,
                        (End::Refused(e.clone()), String::new(), PathBuf::new()),
                    );
                }
            }
        }
        drop(st);
        self.cv.notify_all();
    }

    /// One `squeue` for all of the run's jobs; jobs that left the queue are resolved by their
    /// exit-code file, else by `sacct -c`.
    fn poll(&self) {
        if self.lock().jobs.is_empty() {
            return;
        }
        let Ok(out) = slurm(
            "squeue",
            &[
                "-h".into(),
                "-r".into(),
                "-n".into(),
                self.job_name(),
                "-o".into(),
                "%i|%T|%N".into(),
            ],
        ) else {
            return; // transient: try again next interval
        };
        let queue: HashMap<String, (String, String)> = out
            .lines()
            .filter_map(|l| {
                let mut p = l.split('|');
                Some((
                    p.next()?.trim().to_string(),
                    (
                        p.next()?.trim().to_string(),
                        p.next().unwrap_or("").trim().to_string(),
                    ),
                ))
            })
            .collect();
        let mut unresolved: Vec<u64> = Vec::new();
        {
            let mut st = self.lock();
            let ids: Vec<u64> = st.jobs.keys().copied().collect();
            for id in ids {
                let Some(job) = st.jobs.get_mut(&id) else {
                    continue;
                };
                let active = queue.get(&job.id).filter(|(s, _)| {
                    matches!(
                        s.as_str(),
                        "PENDING"
                            | "RUNNING"
                            | "CONFIGURING"
                            | "COMPLETING"
                            | "SUSPENDED"
                            | "REQUEUED"
                            | "RESIZING"
                            | "SIGNALING"
                            | "STAGE_OUT"
                    )
                });
                if let Some((s, node)) = active {
                    if s == "RUNNING" && !job.running {
                        job.running = true;
                        let line = format!("Slurm job {} running on {node}", job.id);
                        st.notes.entry(id).or_default().push(line);
                    }
                    continue;
                }
                // Left the queue (or finishing): the exit-code file decides.
                if let Some(code) = std::fs::read_to_string(&job.exit_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let job = st.jobs.remove(&id).expect("present");
                    st.ended.insert(id, (End::Exit(code), job.id, job.log));
                    continue;
                }
                // No file yet: allow the shared filesystem a moment, then ask accounting.
                let since = *job.gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(3).max(self.opts.poll * 2) {
                    unresolved.push(id);
                }
            }
        }
        if !unresolved.is_empty() {
            let states = self.sacct_states();
            let mut st = self.lock();
            for id in unresolved {
                if let Some(job) = st.jobs.remove(&id) {
                    let state = states.get(&job.id).cloned().unwrap_or_else(|| "ended without an exit code (no accounting record: killed, or the node failed)".into());
                    st.ended.insert(id, (End::Slurm(state), job.id, job.log));
                }
            }
        }
        self.cv.notify_all();
    }

    /// Final states from the job-completion log (`sacct -c`, which works without slurmdbd;
    /// with accounting storage, plain `sacct` is tried first).
    fn sacct_states(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for completion in [false, true] {
            let mut args: Vec<String> = vec![
                "-n".into(),
                "-P".into(),
                "-X".into(),
                "--name".into(),
                self.job_name(),
                "--starttime".into(),
                self.started.clone(),
                "-o".into(),
                "JobID,State,ExitCode".into(),
            ];
            if completion {
                args.insert(0, "-c".into());
            }
            if let Ok(text) = slurm("sacct", &args) {
                for l in text.lines() {
                    let p: Vec<&str> = l.split('|').collect();
                    if p.len() >= 2 {
                        let state = p[1].split_whitespace().next().unwrap_or("").to_string();
                        out.insert(
                            p[0].trim().to_string(),
                            if p.len() > 2 {
                                format!("{state} (exit {})", p[2].trim())
                            } else {
                                state
                            },
                        );
                    }
                }
                if !out.is_empty() {
                    break;
                }
            }
        }
        out
    }

    /// Ctrl-C: cancel what has not started, ask running jobs to checkpoint and stop.
    fn send_stop(&self) {
        let (pending, running): (Vec<String>, Vec<String>) = {
            let mut st = self.lock();
            st.stop_sent = true;
            let q: Vec<u64> = st.queued.drain(..).map(|q| q.0).collect();
            for id in q {
                st.ended.insert(
                    id,
                    (
                        End::Slurm("not submitted (interrupted)".into()),
                        String::new(),
                        PathBuf::new(),
                    ),
                );
            }
            let (r, p): (Vec<&Job>, Vec<&Job>) = st.jobs.values().partition(|j| j.running);
            (
                p.iter().map(|j| j.id.clone()).collect(),
                r.iter().map(|j| j.id.clone()).collect(),
            )
        };
        if !pending.is_empty() {
            let _ = slurm("scancel", &pending);
        }
        if !running.is_empty() {
            let mut args = vec!["--signal=USR2".to_string(), "--batch".to_string()];
            args.extend(running);
            let _ = slurm("scancel", &args);
        }
        self.cv.notify_all();
    }

    fn enqueue(&self, task: &Task) -> u64 {
        let mut st = self.lock();
        st.next += 1;
        let id = st.next;
        st.queued.push((id, task.clone(), Instant::now()));
        id
    }

    /// Wait for request `id` to end, passing its notes to `report`.
    fn wait(&self, id: u64, stop: &AtomicBool, report: &dyn Fn(&str)) -> (End, String, PathBuf) {
        let mut st = self.lock();
        loop {
            if let Some(notes) = st.notes.remove(&id) {
                drop(st);
                notes.iter().for_each(|n| report(n));
                st = self.lock();
                continue;
            }
            if let Some(end) = st.ended.remove(&id) {
                return end;
            }
            if stop.load(Ordering::Relaxed) && !st.stop_requested {
                st.stop_requested = true;
            }
            st = self
                .cv
                .wait_timeout(st, Duration::from_millis(200))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl Executor for SlurmExecutor {
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
        let report = |line: &str| report_line(engine, task, line);
        let mut resubmits = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(TaskError::Interrupted);
            }
            let id = self.inner.enqueue(task);
            let (end, job, log) = self.inner.wait(id, stop, &report);
            match end {
                End::Exit(0) => {
                    return job_succeeded(task, engine, &format!("Slurm job {job}"), &log);
                }
                End::Exit(130)
                    if !stop.load(Ordering::Relaxed)
                        && resubmits < self.inner.opts.max_resubmits =>
                {
                    resubmits += 1;
                    report(&format!(
                        "Slurm job {job} stopped at the time-limit warning (checkpoint kept); resubmitting ({resubmits}/{})",
                        self.inner.opts.max_resubmits
                    ));
                }
                End::Exit(130) if stop.load(Ordering::Relaxed) => {
                    return Err(TaskError::Interrupted);
                }
                End::Exit(130) => {
                    return Err(TaskError::Node(format!(
                        "Slurm job {job} stopped at the time-limit warning {} times; its checkpoint is kept — raise `resources: {{time}}` or rerun to continue (log: {})",
                        resubmits + 1,
                        log.display()
                    )));
                }
                End::Exit(code) => {
                    return Err(job_exited(
                        task,
                        engine,
                        &format!("Slurm job {job}"),
                        code,
                        &log,
                    ));
                }
                End::Slurm(state) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(TaskError::Interrupted);
                    }
                    let error = format!("Slurm job {job} ended {state} (log: {})", log.display());
                    return Err(job_lost(task, engine, &format!("slurm:{job}"), error, &log));
                }
                End::Refused(e) => {
                    return Err(TaskError::Node(format!("sbatch refused the job: {e}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::shell_quote;

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
