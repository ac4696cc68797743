//! What an experiment's cached results say, joined across nodes: for every FID/FDD node, the
//! sweep point, where the EDM's labels came from, how samples were conditioned, and the
//! clustering's statistics and scores. Used by the summary table after a run and by
//! `cedm report`.

use std::collections::{BTreeMap, VecDeque};

use cedm_cache::{Cache, Digest, Record};
use cedm_engine::{Kind, Plan};
use cedm_nodes::artifacts::clusters::ClusterStats;
use cedm_nodes::artifacts::metrics::ProbeMetrics;
use cedm_nodes::artifacts::metrics::{ClusterScores, Distance, DistanceMetrics, FdMetrics};
use cedm_nodes::kinds::cluster::kmeans::ClusterKmeans;
use cedm_nodes::kinds::cluster::metrics::ClusterMetrics;
use cedm_nodes::kinds::cluster::temi::ClusterTemi;
use cedm_nodes::kinds::edm::sample::EdmSample;
use cedm_nodes::kinds::edm::train::EdmTrain;
use cedm_nodes::kinds::labels::clip::LabelsClip;
use cedm_nodes::kinds::metrics::cnn_probe::MetricsCnnProbe;
use cedm_nodes::kinds::metrics::fd::MetricsFd;
use cedm_nodes::kinds::metrics::fdd::Fdd;
use cedm_nodes::kinds::metrics::fid::Fid;
use cedm_nodes::kinds::metrics::kid::{KidMetrics, MetricsKid};
use cedm_nodes::kinds::metrics::paired::{MetricsPaired, PairedMetrics};
use cedm_nodes::kinds::metrics::prdc::{MetricsPrdc, PrdcMetrics};
use cedm_nodes::kinds::metrics::probe::MetricsProbe;
use serde::de::DeserializeOwned;

/// One sample-quality measurement with its context.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The metric node's instance index.
    pub metric: usize,
    /// Its label (`fid_temi[C=10,seed=1]`).
    pub label: String,
    /// The distance's name: `FID`, `FDD` (metrics/fid, metrics/fdd), or metrics/fd's (`FID`,
    /// `FD_DINOv2`, `FD_MobileNetV2`, …).
    pub kind: String,
    /// Swept variables of the metric node.
    pub vars: BTreeMap<String, String>,
    /// `TEMI`, `k-means`, `ground truth`, `unconditional`, or a node id.
    pub source: String,
    /// `q`, `uniform`, `class k`; none for unconditional models.
    pub sampling: Option<String>,
    /// C of the clustering (requested clusters).
    pub c: Option<f64>,
    /// C_u (used clusters).
    pub c_u: Option<f64>,
    /// KL(U‖p) of the cluster sizes.
    pub kl: Option<f64>,
    /// Mean over runs.
    pub value: Option<f64>,
    /// Standard deviation over runs.
    pub std: Option<f64>,
    /// Minimum over runs.
    pub min: Option<f64>,
    /// Runs.
    pub runs: usize,
    /// Bootstrap interval of `value` (metrics/fd): low, high, level.
    pub ci: Option<(f64, f64, f64)>,
    /// FD∞ (metrics/fd with `infinity_points`).
    pub infinity: Option<f64>,
    /// Bootstrap interval of FD∞: low, high.
    pub infinity_ci: Option<(f64, f64)>,
    /// Mean per-cluster distance (metrics/fd with `conditions` and `labels`).
    pub per_cluster: Option<f64>,
    /// Bootstrap interval of the mean per-cluster distance: low, high.
    pub per_cluster_ci: Option<(f64, f64)>,
    /// metrics/kid on the same sample features (and reference) as the distance.
    pub kid: Option<KidMetrics>,
    /// metrics/prdc on the same sample features (and reference).
    pub prdc: Option<PrdcMetrics>,
    /// The metrics/probe of the same samples: the share classified as their condition (or
    /// cluster majority), its target, chance and accuracy on real held-out images.
    pub probe: Option<ProbeMetrics>,
    /// Further probes of the same samples (another classifier), after `probe`.
    pub other_probes: Vec<ProbeMetrics>,
    /// ACC/NMI/ANMI ×100 of the clustering against ground truth.
    pub acc: Option<f64>,
    /// NMI.
    pub nmi: Option<f64>,
    /// ANMI.
    pub anmi: Option<f64>,
    /// The instances upstream: edm/sample, edm/train, the label source.
    pub sample: Option<usize>,
    /// edm/train.
    pub train: Option<usize>,
    /// The label-source instance.
    pub labels: Option<usize>,
    /// Training length of the network (edm/train's `duration_kimg`).
    pub kimg: Option<f64>,
}

/// Records of the plan's instances that are in the cache.
pub fn cached_records(plan: &Plan, cache: &Cache) -> Vec<Option<Record>> {
    cedm_engine::status(plan, cache, &[])
        .into_iter()
        .map(|s| match s {
            cedm_engine::Status::Cached { key } => cache.record(&key).ok().flatten(),
            _ => None,
        })
        .collect()
}

/// A JSON output of a record, as a typed artifact (None when absent or of another shape).
pub fn json_output<T: DeserializeOwned>(
    cache: &Cache,
    r: Option<&Record>,
    name: &str,
) -> Option<T> {
    let o = r?.outputs.get(name)?;
    serde_json::from_slice(&cache.read_object(&o.digest).ok()?).ok()
}

/// Where an EDM's conditioning labels came from.
pub fn label_source(plan: &Plan, train: usize) -> (String, Option<usize>) {
    match plan.instances[train].inputs.get("labels") {
        None => ("unconditional".into(), None),
        Some(&l) => {
            let name = match plan.instances[l].kind.kind() {
                ClusterTemi::KIND => "TEMI".to_string(),
                ClusterKmeans::KIND => "k-means".to_string(),
                LabelsClip::KIND => "CLIP".to_string(),
                k if k.starts_with("data/") => "ground truth".to_string(),
                _ => plan.instances[l].node.clone(),
            };
            (name, Some(l))
        }
    }
}

/// The first instance of `kind` upstream of `from` (breadth-first).
pub fn upstream(plan: &Plan, from: usize, kind: &str) -> Option<usize> {
    let mut queue = VecDeque::from([from]);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(i) = queue.pop_front() {
        if !seen.insert(i) {
            continue;
        }
        if i != from && plan.instances[i].kind.kind() == kind {
            return Some(i);
        }
        queue.extend(plan.instances[i].inputs.values().copied());
    }
    None
}

/// Scores of a clustering instance: from its own metrics.json (C, C_u, KL) and a
/// `cluster/metrics` node reading it (ACC/NMI/ANMI).
pub fn cluster_stats(
    plan: &Plan,
    records: &[Option<Record>],
    cache: &Cache,
    l: usize,
) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    if let Some(m) = json_output::<ClusterStats>(cache, records[l].as_ref(), "metrics.json") {
        out.insert("C", m.clusters as f64);
        out.insert("C_u", m.used_clusters as f64);
        out.insert("KL", m.kl_uniform);
    }
    let scorer = plan
        .instances
        .iter()
        .find(|s| s.kind.kind() == ClusterMetrics::KIND && s.inputs.get("clusters") == Some(&l));
    if let Some(sm) = scorer.and_then(|s| {
        json_output::<ClusterScores>(cache, records[s.index].as_ref(), "metrics.json")
    }) {
        out.insert("ACC", sm.acc);
        out.insert("NMI", sm.nmi);
        out.insert("ANMI", sm.anmi);
        out.insert("ARI", sm.ari);
    }
    out
}

/// The model behind `from` (a metric or features instance), joined onto `row`: the edm/sample
/// upstream, its probe, the edm/train and its length, the label source, the sampling rule and
/// the clustering's statistics and scores.
fn fill_model(plan: &Plan, records: &[Option<Record>], cache: &Cache, from: usize, row: &mut Row) {
    if let Some(sample) = upstream(plan, from, EdmSample::KIND) {
        row.sample = Some(sample);
        // Every probe of these samples; the CNN probe (the strongest judge) leads.
        let mut probes: Vec<ProbeMetrics> = plan
            .instances
            .iter()
            .filter(|s| {
                (s.kind.kind() == MetricsProbe::KIND && s.inputs.get("conditions") == Some(&sample))
                    || (s.kind.kind() == MetricsCnnProbe::KIND
                        && s.inputs.get("samples") == Some(&sample))
            })
            .filter_map(|s| {
                json_output::<ProbeMetrics>(cache, records[s.index].as_ref(), "metrics.json")
            })
            .collect();
        probes.sort_by_key(|p| p.probe != "cnn");
        let mut probes = probes.into_iter();
        row.probe = probes.next();
        row.other_probes = probes.collect();
        if let Some(train) = upstream(plan, sample, EdmTrain::KIND) {
            row.train = Some(train);
            row.kimg = plan.instances[train]
                .params
                .get("duration_kimg")
                .and_then(serde_json::Value::as_f64);
            let (source, labels) = label_source(plan, train);
            if source != "unconditional" {
                let p = &plan.instances[sample].params;
                row.sampling = Some(match p.get("class").and_then(serde_json::Value::as_u64) {
                    Some(k) => format!("class {k}"),
                    None => p
                        .get("condition")
                        .and_then(|v| v.as_str())
                        .unwrap_or("q")
                        .to_string(),
                });
            }
            row.source = source;
            row.labels = labels;
            if let Some(l) = labels {
                let s = cluster_stats(plan, records, cache, l);
                row.c = s.get("C").copied();
                row.c_u = s.get("C_u").copied();
                row.kl = s.get("KL").copied();
                row.acc = s.get("ACC").copied();
                row.nmi = s.get("NMI").copied();
                row.anmi = s.get("ANMI").copied();
            }
        }
    }
}

/// The metrics.json of a `kind` node computed from the same `samples` features as the metric
/// instance `from` (and the same `reference`, where both have one).
fn on_same_features<T: DeserializeOwned>(
    plan: &Plan,
    records: &[Option<Record>],
    cache: &Cache,
    from: usize,
    kind: &str,
) -> Option<T> {
    let inputs = &plan.instances[from].inputs;
    let samples = inputs.get("samples")?;
    plan.instances
        .iter()
        .filter(|s| s.kind.kind() == kind && s.inputs.get("samples") == Some(samples))
        .filter(
            |s| match (s.inputs.get("reference"), inputs.get("reference")) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            },
        )
        .find_map(|s| json_output::<T>(cache, records[s.index].as_ref(), "metrics.json"))
}

/// Every FID/FDD measurement in the cache, with its context.
pub fn rows(plan: &Plan, records: &[Option<Record>], cache: &Cache) -> Vec<Row> {
    let mut out = Vec::new();
    for inst in &plan.instances {
        let record = records[inst.index].as_ref();
        let (name, m, extra) = match inst.kind.kind() {
            Fid::KIND | Fdd::KIND => {
                let distance = if inst.kind.kind() == Fid::KIND {
                    Distance::Fid
                } else {
                    Distance::Fdd
                };
                let Some(m) = json_output::<serde_json::Value>(cache, record, "metrics.json")
                    .and_then(|v| DistanceMetrics::from_json(&v, distance))
                else {
                    continue;
                };
                (distance.name().to_uppercase(), m, None)
            }
            MetricsFd::KIND => {
                let Some(f) = json_output::<FdMetrics>(cache, record, "metrics.json") else {
                    continue;
                };
                let m =
                    DistanceMetrics::from_runs(Distance::Fd, f.fd_runs.clone(), f.samples_per_run);
                (f.metric.clone(), m, Some(f))
            }
            _ => continue,
        };
        let mut row = Row {
            metric: inst.index,
            label: inst.label.clone(),
            kind: name,
            vars: inst
                .vars
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect(),
            value: Some(m.mean),
            std: Some(m.std),
            min: Some(m.min),
            runs: m.runs.len(),
            ci: extra.as_ref().and_then(|f| {
                f.ci_low
                    .zip(f.ci_high)
                    .map(|(lo, hi)| (lo, hi, f.confidence))
            }),
            infinity: extra.as_ref().and_then(|f| f.fd_infinity),
            infinity_ci: extra.as_ref().and_then(|f| f.fd_infinity_ci),
            per_cluster: extra.as_ref().and_then(|f| f.fd_per_cluster),
            per_cluster_ci: extra.as_ref().and_then(|f| f.fd_per_cluster_ci),
            source: "?".into(),
            ..Row::default()
        };
        if extra.is_some() {
            row.kid = on_same_features(plan, records, cache, inst.index, MetricsKid::KIND);
            row.prdc = on_same_features(plan, records, cache, inst.index, MetricsPrdc::KIND);
        }
        fill_model(plan, records, cache, inst.index, &mut row);
        out.push(row);
    }
    out
}

/// One model's distance over the values of a swept `seed`: mean and sample standard deviation
/// of the per-seed values, and the mean probe share where measured.
#[derive(Clone, Debug)]
pub struct SeedGroup {
    /// The model in words, without the seed (`TEMI C=10`).
    pub model: String,
    /// The distance (`FD_MobileNetV2`).
    pub kind: String,
    /// Per-seed values, in row order.
    pub values: Vec<f64>,
    /// Per-seed probe shares.
    pub probes: Vec<f64>,
    /// Mean ACC of the label source over seeds.
    pub acc: Option<f64>,
}

/// Rows of a sweep with a `seed` variable grouped by model and distance (every other variable
/// kept), in first-seen order; empty when no row has a seed.
pub fn seed_groups(rows: &[Row]) -> Vec<SeedGroup> {
    if !rows.iter().any(|r| r.vars.contains_key("seed")) {
        return Vec::new();
    }
    let mut out: Vec<SeedGroup> = Vec::new();
    let mut accs: Vec<Vec<f64>> = Vec::new();
    for r in rows {
        let Some(v) = r.value else { continue };
        let mut without = r.clone();
        without.vars.remove("seed");
        let model = model_name(&without);
        let i = match out
            .iter()
            .position(|g| g.model == model && g.kind == r.kind)
        {
            Some(i) => i,
            None => {
                out.push(SeedGroup {
                    model,
                    kind: r.kind.clone(),
                    values: Vec::new(),
                    probes: Vec::new(),
                    acc: None,
                });
                accs.push(Vec::new());
                out.len() - 1
            }
        };
        out[i].values.push(v);
        if let Some(p) = &r.probe {
            out[i].probes.push(p.accuracy);
        }
        if let Some(a) = r.acc {
            accs[i].push(a);
        }
    }
    for (g, a) in out.iter_mut().zip(accs) {
        g.acc = (!a.is_empty()).then(|| a.iter().sum::<f64>() / a.len() as f64);
    }
    out
}

/// One `metrics/paired` comparison with the models it compares, in words.
#[derive(Clone, Debug)]
pub struct PairedRow {
    /// The node's label (`cmp_uncond[C=10]`).
    pub label: String,
    /// Model A (`TEMI C=10`), from its first seed's samples.
    pub a: String,
    /// Model B.
    pub b: String,
    /// What the node measured.
    pub m: PairedMetrics,
}

/// A sample set's model in words (`TEMI C=10`, `TEMI (uniform) C=10`), from the edm/sample
/// instance upstream of `from` (a features node), as [`model_name`] words a row; the node's id
/// without one.
pub fn model_of(plan: &Plan, records: &[Option<Record>], cache: &Cache, from: usize) -> String {
    let mut row = Row {
        label: plan.instances[from].node.clone(),
        source: plan.instances[from].node.clone(),
        ..Row::default()
    };
    fill_model(plan, records, cache, from, &mut row);
    model_name(&row)
}

/// Every cached `metrics/paired` result, in plan order.
pub fn paired_rows(plan: &Plan, records: &[Option<Record>], cache: &Cache) -> Vec<PairedRow> {
    let first = |inst: &cedm_engine::Instance, slot: &str| {
        inst.inputs
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{slot}#")))
            .map(|(_, &i)| i)
    };
    plan.instances
        .iter()
        .filter(|i| i.kind.kind() == MetricsPaired::KIND)
        .filter_map(|inst| {
            let m: PairedMetrics =
                json_output(cache, records[inst.index].as_ref(), "metrics.json")?;
            let name = |slot| {
                first(inst, slot).map_or_else(
                    || slot.to_uppercase(),
                    |i| model_of(plan, records, cache, i),
                )
            };
            Some(PairedRow {
                label: inst.label.clone(),
                a: name("a"),
                b: name("b"),
                m,
            })
        })
        .collect()
}

/// A paired comparison's verdict in words: which model is closer, or that none was detected.
pub fn paired_verdict(r: &PairedRow) -> String {
    match r.m.verdict.as_str() {
        "A lower" => format!("{} lower", r.a),
        "B lower" => format!("{} lower", r.b),
        v => v.to_string(),
    }
}

/// One sentence per paired comparison for the summary's reading.
pub fn paired_reading(rows: &[PairedRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            let m = &r.m;
            let ci = match (m.ci_low, m.ci_high) {
                (Some(l), Some(h)) => {
                    format!(", {:.0}% interval [{l:.2}, {h:.2}]", m.confidence * 100.0)
                }
                _ => String::new(),
            };
            let power = m.min_detectable.map_or_else(String::new, |d| {
                format!(
                    "; this design detects a true difference of {d:.2} or more {:.0}% of the time",
                    m.power * 100.0
                )
            });
            format!(
                "{} − {}: {} differs by {:.2} on average over {} seeds{ci} — {}{power}.",
                r.a,
                r.b,
                m.metric,
                m.delta,
                m.seeds,
                paired_verdict(r)
            )
        })
        .collect()
}

/// The key of an instance's record, if cached.
pub fn key(records: &[Option<Record>], i: usize) -> Option<Digest> {
    records.get(i).and_then(|r| r.as_ref()).map(|r| r.key)
}

/// The distances the rows measure (`FID`, `FD_MobileNetV2`, …), in first-seen order.
pub fn distance_names(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if !v.contains(&r.kind) {
            v.push(r.kind.clone());
        }
    }
    v
}

/// Series name of a row: label source and, for conditional models, the sampling rule.
pub fn series_name(r: &Row) -> String {
    match &r.sampling {
        Some(s) if s != "q" => format!("{} ({s})", r.source),
        _ => r.source.clone(),
    }
}

/// A row's model in words: `TEMI C=10`, `TEMI (uniform) C=10`, `ground truth`.
pub fn model_name(r: &Row) -> String {
    if r.sample.is_none() {
        // Not from a model (features of any image set): the metric node names it.
        return r.label.clone();
    }
    let mut s = series_name(r);
    if let Some(c) = r.c {
        s.push_str(&format!(" C={c:.0}"));
    }
    for (k, v) in &r.vars {
        if k != "C" {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// What the summary's numbers mean, in sentences a newcomer can read: whether the samples are
/// recognisable (metrics/probe against its accuracy on real images), and for each distance which
/// model is best and which others are within its bootstrap interval (within noise) or clear of it.
/// Derived from the rows alone, so it says what this run measured, at whatever budget.
pub fn reading(rows: &[Row]) -> Vec<String> {
    if rows.iter().any(|r| r.vars.contains_key("seed")) {
        return seeded_reading(rows);
    }
    let mut out = Vec::new();
    // Probe: the ground-truth model's samples (classified as their condition), and C-EDM's
    // (as their cluster's majority class).
    let mut seen_probe = std::collections::BTreeSet::new();
    for r in rows {
        let (Some(m), Some(sample)) = (&r.probe, r.sample) else {
            continue;
        };
        if !seen_probe.insert(sample) {
            continue;
        }
        let (p, chance) = (m.accuracy, m.chance);
        let real = m
            .test_accuracy
            .map(|t| format!(", against {t:.1}% for real test images"))
            .unwrap_or_default();
        // What the probe checked the samples against (its own `target`).
        let what = if m.target == "condition" {
            "classified as the class they were conditioned on"
        } else {
            "classified as their cluster's majority class"
        };
        let verdict = if p < chance * 1.5 {
            " — near chance: at this budget the model barely uses its condition"
        } else {
            ""
        };
        out.push(format!(
            "{}: {p:.1}% of samples {what} by the probe (chance {chance:.0}%{real}){verdict}.",
            model_name(r)
        ));
    }
    out.extend(budget_sentence(rows));
    // Distances: the best model of each, and who is within its interval.
    for kind in distance_names(rows) {
        let group: Vec<&Row> = rows
            .iter()
            .filter(|r| r.kind == kind && r.value.is_some())
            .collect();
        if group.len() < 2 {
            continue;
        }
        let best = group
            .iter()
            .min_by(|a, b| {
                a.value
                    .partial_cmp(&b.value)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .copied()
            .expect("two rows");
        let v = best.value.unwrap_or_default();
        // An interval per row: the bootstrap interval, else ±1 std over runs when there are
        // several; without either nothing can be said about noise.
        let interval = |r: &Row| -> Option<(f64, f64)> {
            r.ci.map(|(lo, hi, _)| (lo, hi)).or_else(|| {
                (r.runs > 1).then(|| {
                    let (m, s) = (r.value.unwrap_or_default(), r.std.unwrap_or_default());
                    (m - s, m + s)
                })
            })
        };
        let Some((blo, bhi)) = interval(best) else {
            out.push(format!(
                "{kind}: lowest for {} ({v:.2}); no interval was measured, so differences between models cannot be told from noise.",
                model_name(best)
            ));
            continue;
        };
        let (mut within, mut clear) = (Vec::new(), Vec::new());
        for r in group.iter().filter(|r| r.metric != best.metric) {
            match interval(r) {
                Some((lo, hi)) if lo <= bhi && hi >= blo => within.push(model_name(r)),
                Some(_) => clear.push(model_name(r)),
                None => within.push(format!("{} (no interval)", model_name(r))),
            }
        }
        let mut s = format!(
            "{kind}: lowest for {} ({v:.2}, interval [{blo:.2}, {bhi:.2}])",
            model_name(best)
        );
        if !within.is_empty() {
            s.push_str(&format!(
                "; within noise of it (intervals overlap): {}",
                within.join(", ")
            ));
        }
        if !clear.is_empty() {
            s.push_str(&format!("; clearly worse: {}", clear.join(", ")));
        }
        s.push('.');
        out.push(s);
    }
    out
}

/// What the budget means, when the ground-truth-conditional model's probe share (mean over its
/// rows) is far below the probe's accuracy on real images: one sentence, or none.
fn budget_sentence(rows: &[Row]) -> Option<String> {
    let gt: Vec<(&Row, &ProbeMetrics)> = rows
        .iter()
        .filter_map(|r| Some((r, r.probe.as_ref().filter(|m| m.target == "condition")?)))
        .collect();
    let (r, m) = *gt.first()?;
    let t = m.test_accuracy?;
    let share = gt.iter().map(|(_, m)| m.accuracy).sum::<f64>() / gt.len() as f64;
    if share >= 0.75 * t {
        return None;
    }
    let kimg = r
        .kimg
        .map(|k| format!(" after {k} kimg of training"))
        .unwrap_or_default();
    Some(format!(
        "At this budget the models are far from trained: even with the true labels, {share:.1}% of samples are recognised as their class{kimg}, against {t:.1}% of real images, so the differences between label sources here are those of half-trained models (docs/results.md measures longer training)."
    ))
}

/// The reading of a sweep over seeds: a sentence per model over its seeds (the probe's mean
/// share with the per-seed shares) and per distance the lowest mean over seeds — one seed's
/// interval says nothing about a method, so the decisions are left to `metrics/paired`.
fn seeded_reading(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    // Probes, grouped by model without the seed, each sample set once.
    let mut groups: Vec<(String, Vec<&ProbeMetrics>)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in rows {
        let (Some(m), Some(sample)) = (&r.probe, r.sample) else {
            continue;
        };
        if !seen.insert(sample) {
            continue;
        }
        let mut without = r.clone();
        without.vars.remove("seed");
        let model = model_name(&without);
        match groups.iter_mut().find(|(g, _)| *g == model) {
            Some((_, v)) => v.push(m),
            None => groups.push((model, vec![m])),
        }
    }
    for (model, ms) in groups {
        let n = ms.len() as f64;
        let mean = ms.iter().map(|m| m.accuracy).sum::<f64>() / n;
        let per: Vec<String> = ms.iter().map(|m| format!("{:.1}", m.accuracy)).collect();
        let what = if ms[0].target == "condition" {
            "classified as the class they were conditioned on"
        } else {
            "classified as their cluster's majority class"
        };
        let real = ms[0]
            .test_accuracy
            .map(|t| format!(", against {t:.1}% for real test images"))
            .unwrap_or_default();
        out.push(format!(
            "{model}, {} seeds: {mean:.1}% of samples {what} by the probe (per seed {}; chance {:.0}%{real}).",
            ms.len(),
            per.join(", "),
            ms[0].chance
        ));
    }
    out.extend(budget_sentence(rows));
    let groups = seed_groups(rows);
    for kind in distance_names(rows) {
        let g: Vec<&SeedGroup> = groups.iter().filter(|g| g.kind == kind).collect();
        let mean = |g: &SeedGroup| g.values.iter().sum::<f64>() / g.values.len().max(1) as f64;
        let Some(best) = g
            .iter()
            .min_by(|a, b| mean(a).total_cmp(&mean(b)))
            .filter(|_| g.len() >= 2)
        else {
            continue;
        };
        out.push(format!(
            "{kind}: lowest mean over seeds for {} ({:.2} ± {:.2}, {} seeds). Whether a difference between models is real is what the paired comparisons (metrics/paired) decide, not the per-seed intervals.",
            best.model,
            mean(best),
            cedm_nodes::algorithms::paired::sample_std(&best.values),
            best.values.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metric: usize, source: &str, c: Option<f64>, value: f64, ci: (f64, f64)) -> Row {
        Row {
            metric,
            label: format!("m{metric}"),
            kind: "FD_MobileNetV2".into(),
            source: source.into(),
            c,
            value: Some(value),
            runs: 1,
            ci: Some((ci.0, ci.1, 0.95)),
            sample: Some(100 + metric),
            ..Row::default()
        }
    }

    #[test]
    fn reading_names_the_best_model_and_separates_noise_from_clear_differences() {
        let probe = |accuracy: f64, target: &str, test_accuracy: Option<f64>| ProbeMetrics {
            probe: "knn".into(),
            k: 5,
            c: 0.0,
            classes: 10,
            target: target.into(),
            accuracy,
            samples: 256,
            chance: 10.0,
            test_accuracy,
            test_items: 1000,
            per_class: vec![],
        };
        let mut gt = row(0, "ground truth", None, 20.0, (18.0, 22.0));
        gt.probe = Some(probe(72.5, "condition", Some(81.1)));
        let mut temi = row(1, "TEMI", Some(10.0), 21.0, (19.5, 23.0));
        temi.probe = Some(probe(12.0, "cluster majority", None));
        let uncond = row(2, "unconditional", None, 30.0, (28.0, 33.0));
        let text = reading(&[gt, temi, uncond]).join("\n");
        assert!(
            text.contains("ground truth: 72.5% of samples classified as the class they were conditioned on by the probe (chance 10%, against 81.1% for real test images)."),
            "{text}"
        );
        assert!(text.contains("TEMI C=10: 12.0% of samples classified as their cluster's majority class by the probe (chance 10%) — near chance"), "{text}");
        assert!(
            text.contains("FD_MobileNetV2: lowest for ground truth (20.00, interval [18.00, 22.00]); within noise of it (intervals overlap): TEMI C=10; clearly worse: unconditional."),
            "{text}"
        );
        // 72.5% against 81.1%: trained enough that no budget warning is given.
        assert!(!text.contains("far from trained"), "{text}");
        let mut young = row(0, "ground truth", None, 20.0, (18.0, 22.0));
        young.probe = Some(probe(19.1, "condition", Some(81.1)));
        young.kimg = Some(6.0);
        let text = reading(&[young]).join("\n");
        assert!(text.contains("At this budget the models are far from trained: even with the true labels, 19.1% of samples are recognised as their class after 6 kimg of training, against 81.1% of real images"), "{text}");
    }

    #[test]
    fn a_sweep_over_seeds_is_read_per_model_over_its_seeds() {
        let probe = |accuracy: f64| ProbeMetrics {
            probe: "knn".into(),
            k: 5,
            c: 0.0,
            classes: 10,
            target: "condition".into(),
            accuracy,
            samples: 256,
            chance: 10.0,
            test_accuracy: Some(81.1),
            test_items: 1000,
            per_class: vec![],
        };
        let seeded = |metric: usize, source: &str, seed: &str, value: f64, p: Option<f64>| {
            let mut r = row(metric, source, None, value, (value - 5.0, value + 5.0));
            r.vars.insert("seed".into(), seed.into());
            r.probe = p.map(probe);
            r
        };
        let rows = [
            seeded(0, "ground truth", "0", 270.0, Some(40.0)),
            seeded(1, "ground truth", "1", 260.0, Some(50.0)),
            seeded(2, "unconditional", "0", 300.0, None),
            seeded(3, "unconditional", "1", 310.0, None),
        ];
        let text = reading(&rows).join("\n");
        assert!(text.contains("ground truth, 2 seeds: 45.0% of samples classified as the class they were conditioned on by the probe (per seed 40.0, 50.0; chance 10%, against 81.1% for real test images)."), "{text}");
        assert!(
            text.contains(
                "FD_MobileNetV2: lowest mean over seeds for ground truth (265.00 ± 7.07, 2 seeds)."
            ),
            "{text}"
        );
        assert!(!text.contains("seed=0"), "{text}");
    }

    #[test]
    fn reading_without_intervals_says_differences_cannot_be_told_from_noise() {
        let mut a = row(0, "TEMI", Some(10.0), 5.0, (0.0, 0.0));
        let mut b = row(1, "k-means", Some(10.0), 6.0, (0.0, 0.0));
        a.ci = None;
        b.ci = None;
        let text = reading(&[a, b]).join("\n");
        assert!(text.contains("no interval was measured"), "{text}");
    }
}
