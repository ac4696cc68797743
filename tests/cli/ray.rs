//! The Ray executor against a real Ray head: `.ci/run` starts one on 127.0.0.1
//! (scripts/ray_local.sh: 2 CPUs, 1 logical GPU). Without one, each test says so on stderr
//! (outside the test harness's capture, so it shows in CI logs) and returns.
//! `CEDM_TEST_RAY` names another dashboard address.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::util::{Dir, events, output_digests, stderr, stdout, with_event};

fn address() -> String {
    std::env::var("CEDM_TEST_RAY").unwrap_or_else(|_| "http://127.0.0.1:8265".into())
}

/// GET a path of the dashboard: the JSON answer.
fn get(path: &str) -> Result<serde_json::Value, String> {
    let addr = address();
    let hostport = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(hostport).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let token = std::env::var("RAY_AUTH_TOKEN").ok().or_else(|| {
        std::env::var_os("HOME").and_then(|h| {
            std::fs::read_to_string(std::path::Path::new(&h).join(".ray/auth_token")).ok()
        })
    });
    let auth = token
        .map(|t| format!("Authorization: Bearer {}\r\n", t.trim()))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or("no HTTP body")?;
    serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))
}

fn ray_up() -> Result<(), String> {
    let v = get("/api/version")?;
    v.get("ray_version")
        .map(|_| ())
        .ok_or_else(|| format!("not a Ray dashboard: {v}"))
}

fn skip_loudly(test: &str, why: &str) {
    // Written straight to the process's stderr: libtest captures print!/eprint!, not this.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** RAY TEST SKIPPED: {test}: {why}. Start a local head with `scripts/ray_local.sh start` (what .ci/run does). ***\n"
    );
}

/// The Ray jobs this directory's cache submitted.
fn jobs_of(d: &Dir) -> Vec<serde_json::Value> {
    let cache = d.cache().display().to_string();
    let all = get("/api/jobs/").expect("the job list");
    let list = all.as_array().cloned().unwrap_or_default();
    list.into_iter()
        .filter(|j| j["metadata"]["cedm_cache"].as_str() == Some(cache.as_str()))
        .collect()
}

/// A `cedm run --executor ray` command; the jobs see the toy kinds.
fn ray_run<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "exp.yaml",
        "--executor",
        "ray",
        "--poll-seconds",
        "0.3",
    ];
    args.extend_from_slice(extra);
    args
}

fn with_address(d: &Dir, args: &[&str]) -> std::process::Output {
    d.cedm()
        .env("RAY_API_SERVER_ADDRESS", address())
        .args(args)
        .output()
        .expect("spawn cedm")
}

const SWEEP: &str = "name: sweep
sweep:
  C: [2, 3, 4]
nodes:
  base: {kind: toy/value, params: {value: 1}}
  scaled: {kind: toy/add, inputs: {a: base}, params: {k: \"${C}\", sleep_ms: 100}}
  total: {kind: toy/add, inputs: {a: scaled, b: base}, resources: {cpus: 1, mem: 100M}}
";

#[test]
fn a_sweep_runs_as_ray_jobs_once_each_with_the_local_digests() {
    if let Err(why) = ray_up() {
        skip_loudly(
            "a_sweep_runs_as_ray_jobs_once_each_with_the_local_digests",
            &why,
        );
        return;
    }
    let d = Dir::new();
    d.write("exp.yaml", SWEEP);
    let o = with_address(&d, &ray_run(&["--json"]));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let finished = with_event(&events(&o), "finished");
    assert_eq!(finished.len(), 7, "{finished:?}");
    // Every node ran once, each as its own Ray job, recorded as such.
    let ls = d.run(&["cache", "ls", "exp.yaml", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&ls)).unwrap();
    let ex: BTreeMap<String, String> = records
        .iter()
        .map(|r| {
            (
                r["meta"]["instance"].as_str().unwrap().to_string(),
                r["meta"]["executor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ex.len(), 7, "{ex:?}");
    assert!(ex.values().all(|e| e.starts_with("ray:cedm-")), "{ex:?}");
    assert_eq!(ex.values().collect::<BTreeSet<_>>().len(), 7, "{ex:?}");
    let jobs = jobs_of(&d);
    assert_eq!(jobs.len(), 7, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["status"] == "SUCCEEDED"), "{jobs:?}");
    // The reservation went with the job: `total` asked for 1 CPU and 100M.
    let total = jobs
        .iter()
        .find(|j| {
            j["metadata"]["cedm_instance"]
                .as_str()
                .is_some_and(|i| i.starts_with("total"))
        })
        .unwrap_or_else(|| panic!("{jobs:?}"));
    assert!(
        total["entrypoint"].as_str().unwrap().contains(" exec "),
        "{total}"
    );
    // The same experiment locally: identical output digests.
    let local = Dir::new();
    local.write("exp.yaml", SWEEP);
    assert!(local.run(&["run", "exp.yaml"]).status.success());
    assert_eq!(
        output_digests(&d, "exp.yaml"),
        output_digests(&local, "exp.yaml")
    );
    // Again: all cache hits, nothing submitted.
    let again = with_address(&d, &ray_run(&["--json"]));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(with_event(&events(&again), "cache_hit").len(), 7);
    assert_eq!(jobs_of(&d).len(), 7);
}

#[test]
fn a_failed_ray_job_is_reported_with_its_log() {
    if let Err(why) = ray_up() {
        skip_loudly("a_failed_ray_job_is_reported_with_its_log", &why);
        return;
    }
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: failing
nodes:
  base: {kind: toy/value, params: {value: 1}}
  bad: {kind: toy/add, inputs: {a: base}, params: {fail: true}}
  after: {kind: toy/add, inputs: {a: bad}}
",
    );
    let o = with_address(&d, &ray_run(&[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("asked to fail") && err.contains("Ray job"),
        "{err}"
    );
    // The job's log is kept beside its exit code, and the failure is in the cache.
    let log = err
        .split("log: ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("{err}"));
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert!(text.contains("asked to fail"), "{text}");
    let show = d.run(&["cache", "show", "bad", "exp.yaml"]);
    assert!(stdout(&show).contains("asked to fail"), "{}", stdout(&show));
    // `after` never ran: only base and bad were submitted.
    assert_eq!(jobs_of(&d).len(), 2);
}

/// The head has one logical GPU: three GPU nodes that could run at once run one after the
/// other (Ray keeps the others PENDING), while the run is watched through the Jobs API.
#[test]
fn ray_accounts_gpus_one_job_per_gpu() {
    if let Err(why) = ray_up() {
        skip_loudly("ray_accounts_gpus_one_job_per_gpu", &why);
        return;
    }
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: gpus
sweep:
  C: [1, 2, 3]
nodes:
  base: {kind: toy/value, params: {value: 1}}
  train: {kind: toy/add, inputs: {a: base}, params: {k: \"${C}\", sleep_ms: 2000}, resources: {gpus: 1, cpus: 1}}
",
    );
    let mut child = d
        .cedm()
        .env("RAY_API_SERVER_ADDRESS", address())
        .args(ray_run(&[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let train = |j: &serde_json::Value| {
        j["metadata"]["cedm_instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("train"))
    };
    let (mut most, mut seen_waiting) = (0, false);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        let jobs = jobs_of(&d);
        let running = jobs
            .iter()
            .filter(|j| train(j) && j["status"] == "RUNNING")
            .count();
        most = most.max(running);
        seen_waiting |= running == 1 && jobs.iter().any(|j| train(j) && j["status"] == "PENDING");
        assert!(t0.elapsed() < Duration::from_secs(120), "the run hangs");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(most, 1, "GPU jobs ran side by side on one GPU");
    assert!(seen_waiting, "no GPU job ever waited for the GPU");
    assert_eq!(jobs_of(&d).iter().filter(|j| train(j)).count(), 3);
}

/// Ctrl-C stops the run's Ray jobs; a rerun continues and finishes.
#[test]
fn ctrl_c_stops_ray_jobs() {
    if let Err(why) = ray_up() {
        skip_loudly("ctrl_c_stops_ray_jobs", &why);
        return;
    }
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: stop
nodes:
  base: {kind: toy/value, params: {value: 1}}
  slow: {kind: toy/add, inputs: {a: base}, params: {k: 40, sleep_ms: 12000}}
",
    );
    let mut child = d
        .cedm()
        .env("RAY_API_SERVER_ADDRESS", address())
        .args(ray_run(&[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let running = jobs_of(&d)
            .iter()
            .any(|j| j["metadata"]["cedm_instance"] == "slow" && j["status"] == "RUNNING");
        if running {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "slow never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "Ctrl-C did not stop the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let slow = jobs_of(&d)
        .into_iter()
        .find(|j| j["metadata"]["cedm_instance"] == "slow")
        .unwrap();
    assert_eq!(slow["status"], "STOPPED", "{slow}");
    // The rerun continues from the checkpoint and finishes.
    let o = with_address(&d, &ray_run(&[]));
    assert!(o.status.success(), "{}", stderr(&o));
}
