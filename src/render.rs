//! Rendering engine events: progress bars on a terminal, plain lines otherwise, or JSON lines.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cedm_engine::{Event, EventKind, Reporter, Status};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether to use colour on stdout.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Wrap text in an ANSI colour when colour is on.
pub fn paint(s: &str, code: &str) -> String {
    if color() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Short human form of a byte count.
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Short human form of seconds.
pub fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// One line describing a planned status.
pub fn status_text(s: &Status) -> String {
    match s {
        Status::Cached { .. } => paint("cached", "32"),
        Status::WillRun { reason, .. } => format!("{} ({reason})", paint("will run", "33")),
        Status::Waits { on, own } => {
            let base = format!("{} on {}", paint("waits", "36"), on.join(", "));
            match own {
                Some(r) => format!("{base}; will run ({r})"),
                None => format!("{base}; cached if their outputs are unchanged"),
            }
        }
        Status::MissingFile { param, path } => {
            format!("{} `{param}`: {path}", paint("missing file", "31"))
        }
        Status::Skipped => "skipped".to_string(),
    }
}

/// A reporter for the terminal (bars) or logs (plain lines).
pub struct Human {
    t0: Instant,
    verbose: bool,
    /// Only failures (and blocked nodes); no bars, no progress.
    quiet: bool,
    tty: bool,
    multi: MultiProgress,
    state: Mutex<HumanState>,
}

#[derive(Default)]
struct HumanState {
    bars: HashMap<String, ProgressBar>,
    last_plain: HashMap<String, (Instant, u64)>,
    /// The first progress of each running node (its rate and ETA are measured from there).
    first: HashMap<String, (Instant, u64)>,
    /// Instances planned, and those settled (cached, finished, failed, not run).
    planned: usize,
    settled: usize,
}

impl HumanState {
    /// The run's overall position: `[12/32]`, the instances settled of those planned.
    fn position(&self) -> String {
        format!("[{}/{}]", self.settled, self.planned)
    }

    /// Percent, rate and ETA of a node's progress (plain lines), measured from its first report.
    fn pace(&mut self, label: &str, p: &cedm_engine::node::Progress) -> String {
        let now = Instant::now();
        let (t0, d0) = *self.first.entry(label.to_string()).or_insert((now, p.done));
        let dt = now.duration_since(t0).as_secs_f64();
        let rate = (dt > 0.5 && p.done > d0).then(|| (p.done - d0) as f64 / dt);
        let mut parts = Vec::new();
        if let Some(t) = p.total {
            parts.push(format!("{:.0}%", 100.0 * p.done as f64 / t.max(1) as f64));
        }
        if let Some(r) = rate {
            parts.push(format!(
                "{} {}/s",
                crate::cmd_exp::human(if r >= 10.0 { r.round() } else { r }),
                p.unit
            ));
            if let Some(t) = p.total {
                parts.push(format!("ETA {}", secs(t.saturating_sub(p.done) as f64 / r)));
            }
        }
        parts.join(", ")
    }
}

impl Human {
    /// A reporter; bars when stderr is a terminal (never when `quiet`).
    pub fn new(verbose: bool, quiet: bool) -> Human {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Human {
            t0: Instant::now(),
            verbose,
            quiet,
            tty,
            multi,
            state: Mutex::new(HumanState::default()),
        }
    }

    fn line(&self, s: String) {
        if self.tty {
            let _ = self.multi.println(s);
        } else {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "[{:>7.1}s] {s}", self.t0.elapsed().as_secs_f64());
        }
    }

    fn bar(&self, st: &mut HumanState, label: &str) -> ProgressBar {
        st.bars
            .entry(label.to_string())
            .or_insert_with(|| {
                let pb = self.multi.add(ProgressBar::new_spinner());
                pb.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.set_prefix(label.to_string());
                pb.enable_steady_tick(Duration::from_millis(120));
                pb
            })
            .clone()
    }

    /// Remove all bars (before printing a summary).
    pub fn finish(&self) {
        if let Ok(mut st) = self.state.lock() {
            for (_, b) in st.bars.drain() {
                b.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

impl Reporter for Human {
    fn event(&self, e: &Event) {
        if self.quiet && !matches!(e.kind, EventKind::Failed { .. } | EventKind::Blocked { .. }) {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let label = &e.instance;
        match &e.kind {
            EventKind::Planned { .. } => st.planned += 1,
            EventKind::CacheHit { .. }
            | EventKind::Finished { .. }
            | EventKind::Failed { .. }
            | EventKind::Blocked { .. } => {
                st.settled += 1;
                st.first.remove(label);
            }
            _ => {}
        }
        match &e.kind {
            EventKind::Planned { status } => {
                if self.verbose {
                    self.line(format!("  {label}: {}", status_text(status)));
                }
            }
            EventKind::CacheHit { by_other, .. } => {
                if let Some(b) = st.bars.remove(label) {
                    b.finish_and_clear();
                }
                if *by_other {
                    self.line(format!(
                        "{} {label} computed by another process",
                        paint("·", "32")
                    ));
                } else if self.verbose {
                    self.line(format!("{} {label} cached", paint("·", "32")));
                }
            }
            EventKind::Waiting { holder } => {
                if self.tty {
                    self.bar(&mut st, label)
                        .set_message(format!("waiting for {holder}"));
                } else {
                    self.line(format!("… {label} waits for {holder}"));
                }
            }
            EventKind::Started { reason, .. } => {
                if self.tty {
                    self.bar(&mut st, label)
                        .set_message(format!("running ({reason})"));
                } else {
                    self.line(format!("▶ {label} ({reason})"));
                }
            }
            EventKind::Progress(p) => {
                if self.tty {
                    let b = self.bar(&mut st, label);
                    b.set_prefix(format!("{} {label}", st.position()));
                    if let Some(total) = p.total
                        && b.length() != Some(total)
                    {
                        b.set_length(total);
                        b.set_style(
                                ProgressStyle::with_template(
                                    "{spinner:.cyan} {prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {percent}% {msg} ({per_sec}, ETA {eta})",
                                )
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                            );
                    }
                    b.set_position(p.done);
                    b.set_message(format!(
                        "{}{}",
                        p.unit,
                        p.message
                            .as_ref()
                            .map(|m| format!(" {m}"))
                            .unwrap_or_default()
                    ));
                } else {
                    // Plain output: a line every 10% or every 30 s.
                    let now = Instant::now();
                    let pct = p.total.map(|t| p.done * 10 / t.max(1)).unwrap_or(0);
                    let emit = match st.last_plain.get(label) {
                        None => true,
                        Some((t, last_pct)) => {
                            pct > *last_pct || now.duration_since(*t) > Duration::from_secs(30)
                        }
                    };
                    let pace = st.pace(label, p);
                    if emit {
                        st.last_plain.insert(label.clone(), (now, pct));
                        let total = p.total.map(|t| format!("/{t}")).unwrap_or_default();
                        let pace = if pace.is_empty() {
                            String::new()
                        } else {
                            format!(" ({pace})")
                        };
                        let msg = p
                            .message
                            .as_ref()
                            .map(|m| format!(" {m}"))
                            .unwrap_or_default();
                        self.line(format!(
                            "  {} {label} {}{total} {}{pace}{msg}",
                            st.position(),
                            p.done,
                            p.unit
                        ));
                    }
                }
            }
            EventKind::Log { line } => {
                if self.verbose {
                    self.line(format!("  {label}: {line}"));
                }
            }
            EventKind::Finished {
                seconds,
                outputs,
                bytes: b,
                ..
            } => {
                if let Some(bar) = st.bars.remove(label) {
                    bar.finish_and_clear();
                }
                self.line(format!(
                    "{} {} {label} {} ({outputs} files, {})",
                    paint("✓", "32"),
                    st.position(),
                    secs(*seconds),
                    bytes(*b)
                ));
            }
            EventKind::Failed { error, key } => {
                if let Some(bar) = st.bars.remove(label) {
                    bar.finish_and_clear();
                }
                let hint = key
                    .map(|k| format!("\n    log: cedm cache show {}", k.short()))
                    .unwrap_or_default();
                self.line(format!(
                    "{} {label} failed: {error}{hint}",
                    paint("✗", "31")
                ));
            }
            EventKind::Blocked { on } => {
                self.line(format!("{} {label} not run: {on} failed", paint("-", "33")));
            }
        }
    }
}

/// One JSON object per event on stdout.
pub struct JsonLines {
    t0: Instant,
    out: Mutex<std::io::Stdout>,
}

impl JsonLines {
    /// A JSON-lines reporter.
    pub fn new() -> JsonLines {
        JsonLines {
            t0: Instant::now(),
            out: Mutex::new(std::io::stdout()),
        }
    }
}

impl Reporter for JsonLines {
    fn event(&self, e: &Event) {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "t".into(),
                serde_json::json!((self.t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
            );
        }
        if let Ok(out) = self.out.lock() {
            let mut out = out.lock();
            let _ = writeln!(out, "{v}");
        }
    }
}

/// After a run: one table per node kind that wrote `metrics.json`, one row per instance, the
/// columns being the swept variables and the metrics' numbers.
pub fn results_table(
    plan: &cedm_engine::Plan,
    summary: &cedm_engine::RunSummary,
    cache: &cedm_cache::Cache,
) {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<String, Vec<(String, BTreeMap<String, String>)>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (inst, o) in plan.instances.iter().zip(&summary.outcomes) {
        let Some(r) = o.record() else { continue };
        let Some(m) = r.outputs.get("metrics.json") else {
            continue;
        };
        let Ok(bytes) = cache.read_object(&m.digest) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let Some(obj) = v.as_object() else { continue };
        let mut row = BTreeMap::new();
        for (k, x) in obj {
            let cell = match x {
                serde_json::Value::Number(n) => match n.as_f64() {
                    Some(f) if f.fract() != 0.0 => format!("{f:.4}"),
                    _ => n.to_string(),
                },
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            row.insert(k.clone(), cell);
        }
        let group = format!("{} ({})", inst.node, inst.kind.kind());
        if !groups.contains_key(&group) {
            order.push(group.clone());
        }
        groups
            .entry(group)
            .or_default()
            .push((inst.label.clone(), row));
    }
    for g in order {
        let rows = &groups[&g];
        let mut cols: Vec<String> = Vec::new();
        for (_, r) in rows {
            for k in r.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        let mut widths: Vec<usize> =
            std::iter::once(rows.iter().map(|(l, _)| l.len()).max().unwrap_or(4))
                .chain(cols.iter().map(|c| c.len()))
                .collect();
        for (_, r) in rows {
            for (j, c) in cols.iter().enumerate() {
                widths[j + 1] = widths[j + 1].max(r.get(c).map(String::len).unwrap_or(1));
            }
        }
        crate::outln!();
        crate::outln!("{g}");
        let mut head = format!("{:<w$}", "node", w = widths[0]);
        for (j, c) in cols.iter().enumerate() {
            head.push_str(&format!("  {:>w$}", c, w = widths[j + 1]));
        }
        crate::outln!("{head}");
        for (label, r) in rows {
            let mut line = format!("{:<w$}", label, w = widths[0]);
            for (j, c) in cols.iter().enumerate() {
                line.push_str(&format!(
                    "  {:>w$}",
                    r.get(c).map(String::as_str).unwrap_or("-"),
                    w = widths[j + 1]
                ));
            }
            crate::outln!("{line}");
        }
    }
}

/// After a run: one table of the sample-quality metrics (FID / FDD) with, for each, the swept
/// variables, where the EDM's labels came from, how samples were conditioned, and — joined from
/// the clustering nodes and the `cluster/metrics` nodes that read them — C, C_u and
/// ACC/NMI/ANMI against the ground truth.
pub fn summary_table(
    plan: &cedm_engine::Plan,
    records: &[Option<cedm_cache::Record>],
    cache: &cedm_cache::Cache,
) {
    let rows = crate::results::rows(plan, records, cache);
    let paired = crate::results::paired_rows(plan, records, cache);
    if rows.is_empty() && paired.is_empty() {
        return;
    }
    if !rows.is_empty() {
        let (cols, cells) = summary_cells(&rows);
        crate::outln!();
        crate::outln!("Summary");
        print_aligned(&cols, &cells);
    }
    if !paired.is_empty() {
        let (cols, cells) = paired_cells(&paired);
        crate::outln!();
        crate::outln!(
            "Paired comparisons (A − B over seeds; negative: A is closer to the reference)"
        );
        print_aligned(&cols, &cells);
    }
    let mut reading = crate::results::reading(&rows);
    reading.extend(crate::results::paired_reading(&paired));
    if !reading.is_empty() {
        crate::outln!();
        crate::outln!("What it shows");
        for s in reading {
            crate::outln!("  - {s}");
        }
    }
    sample_grids(plan, records, cache);
}

/// Where each cached sample grid is (a PNG in the cache's object store, one row per cluster),
/// and the command that puts them all on one page.
fn sample_grids(
    plan: &cedm_engine::Plan,
    records: &[Option<cedm_cache::Record>],
    cache: &cedm_cache::Cache,
) {
    let cwd = std::env::current_dir().ok();
    let grids: Vec<(String, std::path::PathBuf)> = plan
        .instances
        .iter()
        .filter_map(|inst| {
            let o = records[inst.index].as_ref()?.outputs.get("grid.png")?;
            let path = cache.object_path(&o.digest);
            let path = cwd
                .as_deref()
                .and_then(|c| path.strip_prefix(c).ok())
                .map(std::path::Path::to_path_buf)
                .unwrap_or(path);
            Some((inst.label.clone(), path))
        })
        .collect();
    if grids.is_empty() {
        return;
    }
    let w = grids
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    crate::outln!();
    crate::outln!(
        "Sample grids (PNG, one row per cluster or class; `cedm report FILE` shows them all on one page)"
    );
    for (label, path) in grids {
        crate::outln!("  {label:<w$}  {}", path.display());
    }
}

/// Column names and rows, left-aligned first column, the others right-aligned.
fn print_aligned(cols: &[String], cells: &[Vec<String>]) {
    let widths: Vec<usize> = (0..cols.len())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].chars().count())
                .chain([cols[j].chars().count()])
                .max()
                .unwrap_or(1)
        })
        .collect();
    for r in std::iter::once(cols).chain(cells.iter().map(Vec::as_slice)) {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(j, (c, w))| {
                if j == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        crate::outln!("{}", line.join("  "));
    }
}

/// The per-model distances over seeds as column names and text cells (`cedm report`).
pub fn seed_group_cells(groups: &[crate::results::SeedGroup]) -> (Vec<String>, Vec<Vec<String>>) {
    let mean_std = |v: &[f64]| -> String {
        if v.is_empty() {
            return "-".into();
        }
        let m = v.iter().sum::<f64>() / v.len() as f64;
        format!(
            "{m:.2} ± {:.2}",
            cedm_nodes::algorithms::paired::sample_std(v)
        )
    };
    let cols = [
        "model",
        "metric",
        "seeds",
        "mean ± std",
        "per seed",
        "probe %",
        "ACC",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let cells = groups
        .iter()
        .map(|g| {
            vec![
                g.model.clone(),
                g.kind.clone(),
                g.values.len().to_string(),
                mean_std(&g.values),
                g.values
                    .iter()
                    .map(|v| format!("{v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if g.probes.is_empty() {
                    "-".into()
                } else {
                    let m = g.probes.iter().sum::<f64>() / g.probes.len() as f64;
                    format!("{m:.1}")
                },
                g.acc.map_or_else(|| "-".into(), |a| format!("{a:.1}")),
            ]
        })
        .collect();
    (cols, cells)
}

/// The paired comparisons as column names and text cells (also used by `cedm report`).
pub fn paired_cells(rows: &[crate::results::PairedRow]) -> (Vec<String>, Vec<Vec<String>>) {
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
    let level = rows.first().map_or(0.95, |r| r.m.confidence);
    let power = rows.first().map_or(0.8, |r| r.m.power);
    let cols = vec![
        "comparison".to_string(),
        "A".into(),
        "B".into(),
        "metric".into(),
        "seeds".into(),
        "A − B per seed".into(),
        "mean A − B".into(),
        format!("{:.0}% CI", level * 100.0),
        "SE".into(),
        format!("detectable ({:.0}% power)", power * 100.0),
        "verdict".into(),
    ];
    let cells = rows
        .iter()
        .map(|r| {
            let m = &r.m;
            vec![
                m.name.clone().unwrap_or_else(|| r.label.clone()),
                r.a.clone(),
                r.b.clone(),
                m.metric.clone(),
                m.seeds.to_string(),
                m.diffs
                    .iter()
                    .map(|d| format!("{d:.1}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                format!("{:.2}", m.delta),
                match (m.ci_low, m.ci_high) {
                    (Some(l), Some(h)) => format!("[{l:.2}, {h:.2}]"),
                    _ => "-".into(),
                },
                f(m.se),
                f(m.min_detectable),
                crate::results::paired_verdict(r),
            ]
        })
        .collect();
    (cols, cells)
}

/// The summary as column names and text cells (also used by `cedm report`).
pub fn summary_cells(rows: &[crate::results::Row]) -> (Vec<String>, Vec<Vec<String>>) {
    let f = |v: Option<f64>, d: usize| v.map_or_else(|| "-".to_string(), |x| format!("{x:.d$}"));
    let mut var_names: Vec<String> = Vec::new();
    for r in rows {
        for k in r.vars.keys() {
            if k != "C" && !var_names.contains(k) {
                var_names.push(k.clone());
            }
        }
    }
    let any = |p: &dyn Fn(&crate::results::Row) -> bool| rows.iter().any(p);
    let mut cols: Vec<String> = vec!["metric node".into()];
    cols.extend(var_names.iter().cloned());
    let mut getters: Vec<Box<dyn Fn(&crate::results::Row) -> String>> = vec![];
    cols.push("labels".into());
    getters.push(Box::new(|r| r.source.clone()));
    if any(&|r| r.sampling.is_some()) {
        cols.push("sampling".into());
        getters.push(Box::new(|r| {
            r.sampling.clone().unwrap_or_else(|| "-".into())
        }));
    }
    if any(&|r| r.c.is_some()) {
        cols.push("C".into());
        getters.push(Box::new(move |r| f(r.c, 0)));
        cols.push("C_u".into());
        getters.push(Box::new(move |r| f(r.c_u, 0)));
    }
    cols.push("metric".into());
    getters.push(Box::new(|r| r.kind.clone()));
    cols.push("value".into());
    getters.push(Box::new(move |r| {
        if r.runs > 1 {
            format!("{} ± {}", f(r.value, 2), f(r.std, 2))
        } else {
            f(r.value, 2)
        }
    }));
    if any(&|r| r.runs > 1) {
        cols.push("min".into());
        getters.push(Box::new(move |r| f(r.min, 2)));
    }
    if any(&|r| r.ci.is_some()) {
        cols.push("bootstrap CI".into());
        getters.push(Box::new(move |r| {
            r.ci.map_or_else(
                || "-".into(),
                |(lo, hi, level)| {
                    format!(
                        "{:.0}% [{}, {}]",
                        level * 100.0,
                        f(Some(lo), 2),
                        f(Some(hi), 2)
                    )
                },
            )
        }));
    }
    // A value with its bootstrap interval, when it has one.
    let with_ci = move |v: Option<f64>, ci: Option<(f64, f64)>, d: usize| match (v, ci) {
        (Some(_), Some((lo, hi))) => {
            format!("{} [{}, {}]", f(v, d), f(Some(lo), d), f(Some(hi), d))
        }
        _ => f(v, d),
    };
    if any(&|r| r.infinity.is_some()) {
        cols.push("FD∞".into());
        getters.push(Box::new(move |r| with_ci(r.infinity, r.infinity_ci, 2)));
    }
    if any(&|r| r.kid.is_some()) {
        cols.push("KID ×10³".into());
        getters.push(Box::new(move |r| {
            let k = r.kid.as_ref();
            with_ci(
                k.map(|k| k.kid * 1e3),
                k.and_then(|k| Some((k.ci_low? * 1e3, k.ci_high? * 1e3))),
                2,
            )
        }));
    }
    if any(&|r| r.prdc.is_some()) {
        cols.push("P / R / D / C".into());
        getters.push(Box::new(move |r| {
            r.prdc.as_ref().map_or_else(
                || "-".into(),
                |m| {
                    format!(
                        "{:.2} / {:.2} / {:.2} / {:.2}",
                        m.precision, m.recall, m.density, m.coverage
                    )
                },
            )
        }));
    }
    if any(&|r| r.probe.is_some()) {
        cols.push("probe %".into());
        getters.push(Box::new(move |r| {
            if r.other_probes.is_empty() {
                return f(r.probe.as_ref().map(|m| m.accuracy), 1);
            }
            // Several probes of the same samples: each named.
            r.probe
                .iter()
                .chain(&r.other_probes)
                .map(|m| format!("{:.1} ({})", m.accuracy, m.probe))
                .collect::<Vec<_>>()
                .join("; ")
        }));
    }
    if any(&|r| r.per_cluster.is_some()) {
        cols.push("per-cluster".into());
        getters.push(Box::new(move |r| {
            with_ci(r.per_cluster, r.per_cluster_ci, 2)
        }));
    }
    if any(&|r| r.acc.is_some()) {
        for (name, g) in [("ACC", 0), ("NMI", 1), ("ANMI", 2)] {
            cols.push(name.into());
            getters.push(Box::new(move |r| f([r.acc, r.nmi, r.anmi][g], 1)));
        }
    }
    let cells = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.label.clone()];
            c.extend(
                var_names
                    .iter()
                    .map(|v| r.vars.get(v).cloned().unwrap_or_else(|| "-".into())),
            );
            c.extend(getters.iter().map(|g| g(r)));
            c
        })
        .collect();
    (cols, cells)
}
