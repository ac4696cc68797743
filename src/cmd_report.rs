//! `cedm report FILE [-o DIR]`: a static HTML page of an experiment's cached results — FID/FDD
//! against C per label source, cluster statistics against C, training curves, sample grids, the
//! same noise across C, training images grouped by cluster — each figure with the cache keys it
//! came from. Plots are inline SVG drawn here; images are PNG files next to the page; nothing is
//! fetched when the page is viewed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cedm_cache::{Cache, Record};
use cedm_engine::Plan;
use cedm_nodes::artifacts::grid::write_grid_rows;
use cedm_nodes::artifacts::images::ImageSet;

use crate::cli::{Cli, ReportArgs};
use cedm_engine::Kind;
use cedm_nodes::artifacts::network::TrainingLog;
use cedm_nodes::kinds::cluster::kmeans::ClusterKmeans;
use cedm_nodes::kinds::cluster::temi::ClusterTemi;
use cedm_nodes::kinds::edm::sample::EdmSample;
use cedm_nodes::kinds::edm::train::EdmTrain;
use cedm_nodes::kinds::figures::confidence::{Confidence, FiguresConfidence};
use cedm_nodes::kinds::figures::gallery::{FiguresGallery, Gallery};
use cedm_nodes::kinds::figures::granularity::{FiguresGranularity, Granularity};
use cedm_nodes::kinds::figures::same_noise::{FiguresSameNoise, SameNoise};

use crate::results::{self, Row, cached_records, distance_names, json_output, series_name};
use crate::svg::{Series, Style, plot};

use crate::{CliError, registry};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Mean and sample standard deviation (None for one value).
fn mean_std(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, None);
    }
    (
        m,
        Some((v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()),
    )
}

/// Mean and error bar of the rows at one point: ±1 std over several rows (seeds), else half
/// of the single row's bootstrap interval (the flag says the interval was used).
fn spread(rows: &[&Row]) -> (f64, Option<f64>, bool) {
    let vals: Vec<f64> = rows.iter().filter_map(|r| r.value).collect();
    let (m, s) = mean_std(&vals);
    match (s, rows) {
        (None, [r]) => match r.ci {
            Some((lo, hi, _)) => (m, Some((hi - lo) / 2.0), true),
            None => (m, None, false),
        },
        _ => (m, s, false),
    }
}

struct Page {
    body: String,
    figures: usize,
}

impl Page {
    fn section(&mut self, title: &str, intro: &str) {
        let _ = write!(self.body, "<h2>{}</h2>", esc(title));
        if !intro.is_empty() {
            let _ = write!(self.body, "<p class=\"intro\">{}</p>", esc(intro));
        }
    }

    /// A figure with its content (HTML), caption and the keys it came from.
    fn figure(&mut self, content: &str, caption: &str, keys: &[(String, String)]) {
        self.figures += 1;
        let _ = write!(
            self.body,
            "<figure id=\"fig{}\">{content}<figcaption><b>Figure {}.</b> {}",
            self.figures,
            self.figures,
            esc(caption)
        );
        if !keys.is_empty() {
            let _ = write!(
                self.body,
                "<details><summary>cache keys ({})</summary><ul class=\"keys\">",
                keys.len()
            );
            for (label, key) in keys {
                let _ = write!(
                    self.body,
                    "<li><code>{}</code> {}</li>",
                    esc(key),
                    esc(label)
                );
            }
            self.body.push_str("</ul></details>");
        }
        self.body.push_str("</figcaption></figure>");
    }
}

fn keys_of(
    plan: &Plan,
    records: &[Option<Record>],
    idx: impl IntoIterator<Item = usize>,
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = idx
        .into_iter()
        .filter_map(|i| {
            results::key(records, i).map(|k| (plan.instances[i].label.clone(), k.to_string()))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Seed Fig. 7: FID/FDD against the training length, one line per label source and C, where the
/// experiment measures several lengths (a sweep over `duration_kimg`, whose runs resume from
/// each other as one trajectory).
fn length_figures(page: &mut Page, plan: &Plan, records: &[Option<Record>], rows: &[Row]) {
    for kind in &distance_names(rows) {
        let rs: Vec<&Row> = rows
            .iter()
            .filter(|r| &r.kind == kind && r.value.is_some() && r.kimg.is_some())
            .collect();
        let lengths: std::collections::BTreeSet<u64> =
            rs.iter().filter_map(|r| r.kimg).map(f64::to_bits).collect();
        if lengths.len() < 2 {
            continue;
        }
        let mut groups: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
        for r in &rs {
            let name = match r.c {
                Some(c) => format!("{} C={c}", series_name(r)),
                None => series_name(r),
            };
            groups
                .entry(name)
                .or_default()
                .entry(r.kimg.unwrap_or(0.0).to_bits())
                .or_default()
                .push(r.value.unwrap_or(f64::NAN));
        }
        let series: Vec<Series> = groups
            .into_iter()
            .map(|(name, by)| {
                let mut points: Vec<(f64, f64, Option<f64>)> = by
                    .iter()
                    .map(|(k, v)| {
                        let (m, s) = mean_std(v);
                        (f64::from_bits(*k) / 1000.0, m, s)
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let style = if points.len() > 1 {
                    Style::Line
                } else {
                    Style::Points
                };
                Series {
                    name,
                    points,
                    style,
                }
            })
            .collect();
        let label = kind.clone();
        let svg = plot(
            &format!("{label} against training length"),
            "Mimg (million training images seen)",
            &label,
            &series,
            false,
        );
        let caption = format!(
            "{label} of each model against its training length (seed Fig. 7): the lengths are one training each, resumed from the shorter one's snapshot; points are means over seeds with ±1 std. Lower is better."
        );
        let mut idx: Vec<usize> = rs.iter().map(|r| r.metric).collect();
        idx.extend(rs.iter().filter_map(|r| r.train));
        page.figure(&svg, &caption, &keys_of(plan, records, idx));
    }
}

fn metric_figures(page: &mut Page, plan: &Plan, records: &[Option<Record>], rows: &[Row]) {
    for kind in &distance_names(rows) {
        // With several training lengths, the C plot shows the longest (the others are in the
        // training-length figure).
        let longest = rows
            .iter()
            .filter(|r| &r.kind == kind)
            .filter_map(|r| r.kimg)
            .fold(f64::NEG_INFINITY, f64::max);
        let rs: Vec<&Row> = rows
            .iter()
            .filter(|r| &r.kind == kind && r.value.is_some())
            .filter(|r| r.kimg.is_none_or(|k| k == longest))
            .collect();
        if rs.is_empty() {
            continue;
        }
        let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for r in &rs {
            groups.entry(series_name(r)).or_default().push(r);
        }
        let mut series = Vec::new();
        let mut cs: Vec<f64> = Vec::new();
        let mut with_ci = false;
        for (name, g) in &groups {
            let with_c: Vec<&Row> = g.iter().filter(|r| r.c.is_some()).copied().collect();
            if with_c.is_empty() {
                let (m, s, ci) = spread(g);
                with_ci |= ci;
                series.push(Series {
                    name: format!("{name} (n={})", g.len()),
                    points: vec![(0.0, m, s)],
                    style: Style::Baseline,
                });
                continue;
            }
            let mut by_c: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
            for r in with_c {
                by_c.entry(r.c.unwrap_or(0.0) as i64).or_default().push(r);
            }
            let points: Vec<(f64, f64, Option<f64>)> = by_c
                .iter()
                .map(|(c, v)| {
                    let (m, s, ci) = spread(v);
                    with_ci |= ci;
                    cs.push(*c as f64);
                    (*c as f64, m, s)
                })
                .collect();
            let style = if points.len() > 1 {
                Style::Line
            } else {
                Style::Points
            };
            series.push(Series {
                name: name.clone(),
                points,
                style,
            });
        }
        let lo = cs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = cs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_x = lo > 0.0 && hi / lo >= 20.0;
        let label = kind.clone();
        let svg = plot(
            &format!("{label} against the number of clusters C"),
            "C (clusters requested)",
            &label,
            &series,
            log_x,
        );
        let seeds = rs
            .iter()
            .map(|r| r.vars.get("seed").cloned().unwrap_or_default())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let bars = if with_ci {
            "±1 std over seeds, or for a single run half its bootstrap interval"
        } else {
            "±1 std"
        };
        let caption = format!(
            "{label} of each label source against C; points are means over {seeds} seed(s) with {bars}, dashed lines the models without clusters (band: the same). Lower is better."
        );
        let mut idx: Vec<usize> = rs.iter().map(|r| r.metric).collect();
        idx.extend(rs.iter().filter_map(|r| r.labels));
        page.figure(&svg, &caption, &keys_of(plan, records, idx));
    }
}

fn cluster_figures(page: &mut Page, plan: &Plan, records: &[Option<Record>], cache: &Cache) {
    // (node id) → C → stats over seeds.
    let mut by_node: BTreeMap<String, BTreeMap<i64, Vec<BTreeMap<&'static str, f64>>>> =
        BTreeMap::new();
    let mut idx = Vec::new();
    for inst in &plan.instances {
        if !matches!(inst.kind.kind(), ClusterTemi::KIND | ClusterKmeans::KIND)
            || records[inst.index].is_none()
        {
            continue;
        }
        let s = results::cluster_stats(plan, records, cache, inst.index);
        let Some(c) = s.get("C").copied() else {
            continue;
        };
        idx.push(inst.index);
        by_node
            .entry(inst.node.clone())
            .or_default()
            .entry(c as i64)
            .or_default()
            .push(s);
    }
    if by_node.is_empty() {
        return;
    }
    let all_c: Vec<f64> = by_node
        .values()
        .flat_map(|m| m.keys().map(|c| *c as f64))
        .collect();
    let lo = all_c.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all_c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_x = lo > 0.0 && hi / lo >= 20.0;
    let series_for = |stat: &str, suffix: bool| -> Vec<Series> {
        by_node
            .iter()
            .filter_map(|(name, cs)| {
                let points: Vec<(f64, f64, Option<f64>)> = cs
                    .iter()
                    .filter_map(|(c, runs)| {
                        let v: Vec<f64> =
                            runs.iter().filter_map(|s| s.get(stat).copied()).collect();
                        if v.is_empty() {
                            return None;
                        }
                        let (m, s) = mean_std(&v);
                        Some((*c as f64, m, s))
                    })
                    .collect();
                (!points.is_empty()).then(|| Series {
                    name: if suffix {
                        format!("{name} {stat}")
                    } else {
                        name.clone()
                    },
                    style: if points.len() > 1 {
                        Style::Line
                    } else {
                        Style::Points
                    },
                    points,
                })
            })
            .collect()
    };
    let keys = keys_of(plan, records, idx.clone());
    let mut content = String::from("<div class=\"row\">");
    content.push_str(&plot(
        "Used clusters C_u against C",
        "C",
        "C_u",
        &series_for("C_u", false),
        log_x,
    ));
    content.push_str(&plot(
        "Cluster imbalance KL(U‖p) against C",
        "C",
        "KL(U‖p)",
        &series_for("KL", false),
        log_x,
    ));
    content.push_str("</div>");
    page.figure(&content, "Cluster statistics against C (means over seeds, ±1 std): C_u, the number of non-empty clusters, and KL(U‖p) of the cluster sizes.", &keys);
    let mut scores = Vec::new();
    for stat in ["ACC", "NMI", "ANMI"] {
        scores.extend(series_for(stat, true));
    }
    if !scores.is_empty() {
        let svg = plot(
            "Clustering against the ground truth",
            "C",
            "score ×100",
            &scores,
            log_x,
        );
        page.figure(&svg, "ACC (Hungarian matching, majority for extra clusters), NMI and adjusted NMI of each clustering against the ground-truth labels, ×100.", &keys);
    }
}

fn training_figure(page: &mut Page, plan: &Plan, records: &[Option<Record>], cache: &Cache) {
    let mut series = Vec::new();
    let mut idx = Vec::new();
    for inst in plan
        .instances
        .iter()
        .filter(|i| i.kind.kind() == EdmTrain::KIND)
    {
        let Some(t) =
            json_output::<TrainingLog>(cache, records[inst.index].as_ref(), "training.json")
        else {
            continue;
        };
        let points: Vec<(f64, f64, Option<f64>)> =
            t.loss.iter().map(|p| (p.kimg, p.loss, None)).collect();
        if points.is_empty() {
            continue;
        }
        idx.push(inst.index);
        series.push(Series {
            name: inst.label.clone(),
            points,
            style: Style::Line,
        });
    }
    if series.is_empty() {
        return;
    }
    let svg = plot(
        "EDM training loss",
        "kimg (training images seen, thousands)",
        "loss (per pixel)",
        &series,
        false,
    );
    page.figure(&svg, "Training loss of every EDM (EDM's weighted denoising loss, averaged over each logging interval).", &keys_of(plan, records, idx));
}

/// Write one strip of images (a single grid row) and return its file name.
fn strip(
    dir: &Path,
    name: &str,
    set: &ImageSet,
    idx: &[usize],
    cols: usize,
) -> Result<String, CliError> {
    let file = format!("img/{name}.png");
    let row: Vec<Option<usize>> = idx.iter().map(|&i| Some(i)).collect();
    write_grid_rows(&dir.join(&file), set, &[row], cols)
        .map_err(|e| CliError::Other(e.to_string()))?;
    Ok(file)
}

fn images_of(cache: &Cache, r: &Record) -> Option<ImageSet> {
    let o = r.outputs.get("images.safetensors")?;
    let mut set = ImageSet::read_file(&cache.object_path(&o.digest)).ok()?;
    if let Some(l) = r.outputs.get("labels.safetensors")
        && let Ok(t) =
            cedm_nodes::artifacts::safetensors::Tensors::open(&cache.object_path(&l.digest))
    {
        set.labels = t.i64("labels").ok().map(|t| t.data);
    }
    Some(set)
}

/// The rows of a sample grid in words: for each row its label id, the training images carrying
/// it, and their majority ground-truth class (named for known datasets) with its share; and how
/// many of the model's labels the grid shows.
fn grid_rows_html(plan: &Plan, records: &[Option<Record>], cache: &Cache, sample: usize) -> String {
    use cedm_nodes::artifacts::labels::LabelInfo;
    use cedm_nodes::artifacts::safetensors::Tensors;
    let Some(train) = results::upstream(plan, sample, EdmTrain::KIND) else {
        return String::new();
    };
    let Some(info) = json_output::<LabelInfo>(cache, records[train].as_ref(), "labels.json") else {
        return String::new();
    };
    let p = &plan.instances[sample].params;
    let grid_rows = p.get("grid_rows").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    if info.dim == 0 {
        return format!("<div class=\"rows\">unconditional: {grid_rows} rows of seeds</div>");
    }
    let rows = grid_rows.min(info.dim);
    // Ground truth of the training images, and their per-image label ids.
    let tensor_of = |i: usize, file: &str, name: &str| -> Option<Vec<i64>> {
        let o = records[i].as_ref()?.outputs.get(file)?;
        Tensors::open(&cache.object_path(&o.digest))
            .ok()?
            .i64(name)
            .ok()
            .map(|t| t.data)
    };
    let images = plan.instances[train].inputs.get("images").copied();
    let truth = images.and_then(|d| tensor_of(d, "labels.safetensors", "labels"));
    let names = images.and_then(|d| {
        let inst = &plan.instances[d];
        cedm_nodes::datasets::class_names(inst.kind.kind(), &inst.params)
    });
    let (_, labels) = results::label_source(plan, train);
    let ids = labels.and_then(|l| {
        tensor_of(l, "clusters.safetensors", "labels").or_else(|| {
            // Ground truth as the condition: ids are the sorted distinct classes.
            let t = tensor_of(l, "labels.safetensors", "labels")?;
            let mut u = t.clone();
            u.sort_unstable();
            u.dedup();
            Some(
                t.iter()
                    .map(|c| u.binary_search(c).unwrap_or(0) as i64)
                    .collect(),
            )
        })
    });
    let class = |c: i64| -> String {
        names
            .and_then(|n| usize::try_from(c).ok().and_then(|c| n.get(c)))
            .map_or_else(|| format!("class {c}"), |s| (*s).to_string())
    };
    let mut out = format!(
        "<table class=\"rows\"><caption>{rows} of {} labels shown</caption><tr><th>row</th><th>label</th><th>images</th><th>majority class</th></tr>",
        info.dim
    );
    for r in 0..rows {
        let majority = match (&ids, &truth) {
            (Some(ids), Some(truth)) if ids.len() == truth.len() => {
                let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
                for (&id, &t) in ids.iter().zip(truth) {
                    if id == r as i64 {
                        *counts.entry(t).or_default() += 1;
                    }
                }
                let total: usize = counts.values().sum();
                counts
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map_or("-".into(), |(&c, &n)| {
                        format!(
                            "{} ({:.0}%)",
                            esc(&class(c)),
                            100.0 * n as f64 / total as f64
                        )
                    })
            }
            _ => "-".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{r}</td><td>{}</td><td>{majority}</td></tr>",
            r + 1,
            info.counts.get(r).copied().unwrap_or(0)
        );
    }
    out.push_str("</table>");
    out
}

fn file_slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn sample_figures(
    page: &mut Page,
    plan: &Plan,
    records: &[Option<Record>],
    cache: &Cache,
    dir: &Path,
) -> Result<(), CliError> {
    let samples: Vec<usize> = plan
        .instances
        .iter()
        .filter(|i| i.kind.kind() == EdmSample::KIND && records[i.index].is_some())
        .map(|i| i.index)
        .collect();
    if samples.is_empty() {
        return Ok(());
    }
    // Grids: one row per cluster, as edm/sample drew them.
    let mut html = String::from("<div class=\"grids\">");
    for &i in &samples {
        let Some(r) = records[i].as_ref() else {
            continue;
        };
        let Some(g) = r.outputs.get("grid.png") else {
            continue;
        };
        let file = format!("img/grid_{}.png", file_slug(&plan.instances[i].label));
        std::fs::copy(cache.object_path(&g.digest), dir.join(&file))
            .map_err(|e| CliError::Other(format!("copying a grid: {e}")))?;
        let _ = write!(
            html,
            "<div class=\"grid\"><img src=\"{file}\" alt=\"{0}\"><div>{0}</div>{1}</div>",
            esc(&plan.instances[i].label),
            grid_rows_html(plan, records, cache, i)
        );
    }
    html.push_str("</div>");
    page.figure(&html, "Samples of every sampling node: one row per label id (condition fixed per row; the first `grid_rows` ids, as the table under each grid says), columns are different seeds. Under each grid, per row: the label id, how many training images carry it, and the ground-truth class most of them belong to.", &keys_of(plan, records, samples.clone()));

    // The same noise across C: sample nodes with the same seeds, grouped by the other sweep
    // variables; one strip of the first samples per node.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in &samples {
        let inst = &plan.instances[i];
        let seeds = format!(
            "{}:{}",
            inst.params
                .get("first_seed")
                .map(ToString::to_string)
                .unwrap_or_default(),
            inst.params
                .get("steps")
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        let others: Vec<String> = inst
            .vars
            .iter()
            .filter(|(k, _)| k.as_str() != "C")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        groups
            .entry(format!("{seeds}|{}", others.join(",")))
            .or_default()
            .push(i);
    }
    for (g, members) in groups {
        if members.len() < 2 {
            continue;
        }
        let mut table = String::from("<table class=\"strips\">");
        for &i in &members {
            let Some(set) = records[i].as_ref().and_then(|r| images_of(cache, r)) else {
                continue;
            };
            let n = set.n.min(12);
            let file = strip(
                dir,
                &format!("noise_{}", file_slug(&plan.instances[i].label)),
                &set,
                &(0..n).collect::<Vec<_>>(),
                n,
            )?;
            let _ = write!(
                table,
                "<tr><th>{}</th><td><img src=\"{file}\" alt=\"{0}\"></td></tr>",
                esc(&plan.instances[i].label)
            );
        }
        table.push_str("</table>");
        let others = g.split('|').nth(1).unwrap_or("");
        page.figure(
            &table,
            &format!("The same noise (seeds of the first samples) through every model{}: each row is one model, each column one seed (a quick view; the paper's Fig. 3/4 is a figures/granularity node).", if others.is_empty() { String::new() } else { format!(" at {others}") }),
            &keys_of(plan, records, members.clone()),
        );
    }
    Ok(())
}

/// Training images grouped by cluster, for each clustering in the cache.
fn cluster_image_figures(
    page: &mut Page,
    plan: &Plan,
    records: &[Option<Record>],
    cache: &Cache,
    dir: &Path,
) -> Result<(), CliError> {
    let mut first = true;
    for inst in plan
        .instances
        .iter()
        .filter(|i| matches!(i.kind.kind(), ClusterTemi::KIND | ClusterKmeans::KIND))
    {
        let Some(r) = records[inst.index].as_ref() else {
            continue;
        };
        let Some(c) = r.outputs.get("clusters.safetensors") else {
            continue;
        };
        let Ok(t) =
            cedm_nodes::artifacts::safetensors::Tensors::open(&cache.object_path(&c.digest))
        else {
            continue;
        };
        let (Ok(labels), Ok(counts)) = (t.i64("labels"), t.i64("counts")) else {
            continue;
        };
        // The images the features came from.
        let Some(data) = results::upstream(plan, inst.index, "features/mobilenet_v2")
            .or_else(|| results::upstream(plan, inst.index, "features/vit"))
            .and_then(|f| plan.instances[f].inputs.get("images").copied())
        else {
            continue;
        };
        let Some(set) = records[data].as_ref().and_then(|r| images_of(cache, r)) else {
            continue;
        };
        if set.n != labels.data.len() {
            continue;
        }
        let mut order: Vec<usize> = (0..counts.data.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(counts.data[k]));
        let mut table = String::from("<table class=\"strips\">");
        for &k in order.iter().take(8) {
            let members: Vec<usize> = labels
                .data
                .iter()
                .enumerate()
                .filter(|(_, l)| **l == k as i64)
                .map(|(i, _)| i)
                .take(12)
                .collect();
            let file = strip(
                dir,
                &format!("cluster_{}_{k}", file_slug(&inst.label)),
                &set,
                &members,
                12,
            )?;
            let truth = set.labels.as_ref().map(|l| {
                let mut h: BTreeMap<i64, usize> = BTreeMap::new();
                labels
                    .data
                    .iter()
                    .zip(l)
                    .filter(|(c, _)| **c == k as i64)
                    .for_each(|(_, t)| *h.entry(*t).or_default() += 1);
                let (top, n) = h
                    .iter()
                    .max_by_key(|(_, n)| **n)
                    .map(|(t, n)| (*t, *n))
                    .unwrap_or((0, 0));
                format!(
                    ", {:.0}% class {top}",
                    100.0 * n as f64 / counts.data[k].max(1) as f64
                )
            });
            let _ = write!(
                table,
                "<tr><th>cluster {k}<br><small>{} images{}</small></th><td><img src=\"{file}\" alt=\"cluster {k}\"></td></tr>",
                counts.data[k],
                truth.unwrap_or_default()
            );
        }
        table.push_str("</table>");
        let content = format!(
            "<details{}><summary>{}</summary>{table}</details>",
            if first { " open" } else { "" },
            esc(&inst.label)
        );
        first = false;
        page.figure(&content, &format!("Training images grouped by the clusters of {} (the 8 largest clusters, the first 12 members each; the paper's Fig. 5, with random members, is a figures/gallery node).", inst.label), &keys_of(plan, records, [inst.index, data]));
    }
    Ok(())
}

/// Copy an output PNG of a record next to the page; its file name.
fn copy_png(cache: &Cache, r: &Record, name: &str, dir: &Path, stem: &str) -> Option<String> {
    let o = r.outputs.get(name)?;
    let file = format!("img/{}.png", file_slug(stem));
    std::fs::copy(cache.object_path(&o.digest), dir.join(&file)).ok()?;
    Some(file)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// The paper's qualitative figures (`figures/*` nodes): each node's figure.png with a caption
/// from the numbers in its figure.json.
fn paper_figures(
    page: &mut Page,
    plan: &Plan,
    records: &[Option<Record>],
    cache: &Cache,
    dir: &Path,
) -> Result<(), CliError> {
    let order = [
        FiguresSameNoise::KIND,
        FiguresGranularity::KIND,
        FiguresGallery::KIND,
        FiguresConfidence::KIND,
    ];
    for kind in order {
        for inst in plan.instances.iter().filter(|i| i.kind.kind() == kind) {
            let Some(r) = records[inst.index].as_ref() else {
                continue;
            };
            let stem = format!("fig_{}", inst.label);
            let Some(png) = copy_png(cache, r, "figure.png", dir, &stem) else {
                continue;
            };
            let mut content = format!(
                "<img class=\"fig\" src=\"{png}\" alt=\"{}\">",
                esc(&inst.label)
            );
            let label = &inst.label;
            let caption = match kind {
                k if k == FiguresSameNoise::KIND => {
                    let f: Option<SameNoise> = json_output(cache, Some(r), "figure.json");
                    let nums = f.map(|f| {
                        let distance = match (f.paired_rms, f.unpaired_rms) {
                            (Some(a), Some(b)) => format!(" RMS pixel distance between the two models' images: {a:.1} from the same noise, {b:.1} from different noise of the same class."),
                            _ => String::new(),
                        };
                        let missing = f.columns.iter().filter(|c| c.cluster.is_none()).count();
                        format!(
                            " The one-to-one map agrees with {} of the training items{}.{distance}",
                            pct(f.mapping_agreement),
                            if missing > 0 { format!("; {missing} classes have no cluster (empty cells)") } else { String::new() }
                        )
                    }).unwrap_or_default();
                    format!(
                        "Seed Fig. 2 ({label}): the C-EDM (rows c-edm) and the ground-truth-conditional EDM (rows gt) from the same noise; column k is class k, the C-EDM conditioned on the cluster the Hungarian map assigns to it; each row pair shares one seed across all columns.{nums}"
                    )
                }
                k if k == FiguresGranularity::KIND => {
                    let f: Option<Granularity> = json_output(cache, Some(r), "figure.json");
                    let nums = f.map(|f| {
                        let d: Vec<String> = f.columns.iter().filter_map(|c| c.rms_to_unconditional.map(|v| format!("{} {v:.1}", c.label))).collect();
                        if d.is_empty() { String::new() } else { format!(" Mean RMS pixel distance to the unconditional sample of the same noise: {}.", d.join(", ")) }
                    }).unwrap_or_default();
                    format!(
                        "Seed Fig. 3/4 ({label}): the same noise (one seed per row) through the unconditional EDM and the C-EDM of every C, conditions drawn from each model's q(c).{nums}"
                    )
                }
                k if k == FiguresGallery::KIND => {
                    let f: Option<Gallery> = json_output(cache, Some(r), "figure.json");
                    let nums = f
                        .map(|f| {
                            let shares: Vec<String> = f
                                .rows
                                .iter()
                                .filter_map(|r| r.majority_share.map(pct))
                                .collect();
                            if shares.is_empty() {
                                String::new()
                            } else {
                                format!(" Majority-class share per row: {}.", shares.join(", "))
                            }
                        })
                        .unwrap_or_default();
                    format!(
                        "Seed Fig. 5 ({label}): training images by cluster, clusters and members drawn at random (seeded); rows are labelled cluster id, size, majority class.{nums}"
                    )
                }
                _ => {
                    let f: Option<Confidence> = json_output(cache, Some(r), "figure.json");
                    if let Some(h) =
                        copy_png(cache, r, "histogram.png", dir, &format!("{stem}_hist"))
                    {
                        let _ = write!(
                            content,
                            "<img class=\"fig\" src=\"{h}\" alt=\"MSP histogram\">"
                        );
                    }
                    let nums = f.map(|f| {
                        format!(
                            " Mean MSP (T = {}) of the {} samples {:.3}{}{}.",
                            f.temperature,
                            f.samples.n,
                            f.samples.mean,
                            f.reference.map(|r| format!(", of {} real images {:.3}", r.n, r.mean)).unwrap_or_default(),
                            f.condition_agreement.map(|a| format!("; the head picks the cluster a sample was conditioned on for {}", pct(a))).unwrap_or_default()
                        )
                    }).unwrap_or_default();
                    format!(
                        "Seed Fig. 6 ({label}): samples scored by the TEMI head (maximum softmax probability, under each image); the lowest- and highest-confidence samples, each under the unconditional sample from the same noise (rows uncond), and the histogram.{nums}"
                    )
                }
            };
            page.figure(&content, &caption, &keys_of(plan, records, [inst.index]));
        }
    }
    Ok(())
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}.meta{color:#666}table.summary{border-collapse:collapse;font-size:13px}
table.summary td,table.summary th{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.summary td:first-child,table.summary th:first-child{text-align:left}
figure{margin:1.5em 0;padding:1em;border:1px solid #e4e4e4;border-radius:6px}
figcaption{font-size:13px;color:#444;margin-top:.5em}.row{display:flex;flex-wrap:wrap;gap:1em}
.grids{display:flex;flex-wrap:wrap;gap:1em}.grid{text-align:center;font-size:12px}table.rows{font-size:11px;margin:4px auto}table.rows td,table.rows th{padding:0 6px}
img{image-rendering:pixelated}.grid img{width:260px}table.strips th{text-align:right;font-size:12px;padding-right:8px}
table.strips img{height:64px}img.fig{max-width:100%;margin-right:1em;vertical-align:top}ul.keys{font-size:12px}code{font-size:11px}";

const CHECK: &str = "<script>
// Self-check read by tests (and handy in a browser console): images loaded, plot points drawn.
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var b = document.body;
  b.setAttribute('data-images', imgs.length);
  b.setAttribute('data-broken', broken);
  b.setAttribute('data-points', document.querySelectorAll('circle.pt').length);
  b.setAttribute('data-ready', '1');
});
</script>";

/// A Markdown table (cells escaped for `|`).
fn md_table(cols: &[String], rows: &[Vec<String>]) -> String {
    let cell = |c: &str| c.replace('|', "\\|");
    let mut s = format!(
        "| {} |\n",
        cols.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
    );
    s.push_str(&format!(
        "|{}\n",
        (0..cols.len())
            .map(|j| if j == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    ));
    for r in rows {
        s.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    s
}

/// `cedm report --format markdown`: the experiment's results tables from the cache alone —
/// sample quality (the run's summary and its reading) and every clustering's scores, one row
/// per cached instance, with the node's measured time from its record.
fn markdown(plan: &Plan, records: &[Option<Record>], cache: &Cache, file: &Path) -> String {
    let f = |v: Option<&f64>, d: usize| v.map_or_else(|| "–".to_string(), |x| format!("{x:.d$}"));
    let cached = records.iter().filter(|r| r.is_some()).count();
    let mut s = format!(
        "<!-- generated by `cedm report {} --format markdown` from the cache ({cached}/{} nodes cached); do not edit -->\n",
        file.display(),
        plan.instances.len()
    );
    let rows = results::rows(plan, records, cache);
    if !rows.is_empty() {
        let (cols, cells) = crate::render::summary_cells(&rows);
        s.push_str("\n**Sample quality**\n\n");
        s.push_str(&md_table(&cols, &cells));
        let reading = results::reading(&rows);
        if !reading.is_empty() {
            s.push('\n');
            for r in reading {
                s.push_str(&format!("- {r}\n"));
            }
        }
    }
    let groups = results::seed_groups(&rows);
    if !groups.is_empty() {
        let (cols, cells) = crate::render::seed_group_cells(&groups);
        s.push_str("\n**Over seeds** (each model's distance: mean ± sample std over the seeds, the per-seed values, the mean probe share and the label source's mean ACC)\n\n");
        s.push_str(&md_table(&cols, &cells));
    }
    let paired = results::paired_rows(plan, records, cache);
    if !paired.is_empty() {
        let (cols, cells) = crate::render::paired_cells(&paired);
        s.push_str("\n**Paired comparisons** (A − B over seeds, the same latents for both; negative: A is closer to the reference)\n\n");
        s.push_str(&md_table(&cols, &cells));
        s.push('\n');
        for r in results::paired_reading(&paired) {
            s.push_str(&format!("- {r}\n"));
        }
    }
    let mut cells = Vec::new();
    for inst in &plan.instances {
        if !matches!(inst.kind.kind(), ClusterTemi::KIND | ClusterKmeans::KIND) {
            continue;
        }
        let Some(r) = records[inst.index].as_ref() else {
            continue;
        };
        let st = results::cluster_stats(plan, records, cache, inst.index);
        let method = if inst.kind.kind() == ClusterTemi::KIND {
            "TEMI"
        } else {
            "k-means"
        };
        cells.push(vec![
            inst.label.clone(),
            method.to_string(),
            f(st.get("C"), 0),
            f(st.get("ACC"), 1),
            f(st.get("NMI"), 1),
            f(st.get("ANMI"), 1),
            f(st.get("ARI"), 1),
            f(st.get("C_u"), 0),
            f(st.get("KL"), 3),
            crate::render::secs(r.meta.seconds),
        ]);
    }
    if !cells.is_empty() {
        let cols: Vec<String> = [
            "node",
            "method",
            "C",
            "ACC",
            "NMI",
            "ANMI",
            "ARI",
            "C_u",
            "KL(U‖p)",
            "time",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        s.push_str("\n**Clustering** (scores ×100 against the ground truth; time as recorded by the node's run)\n\n");
        s.push_str(&md_table(&cols, &cells));
    }
    s
}

/// A plain table of text cells, escaped.
fn html_table(body: &mut String, cols: &[String], cells: &[Vec<String>]) {
    body.push_str("<table class=\"summary\"><tr>");
    for c in cols {
        let _ = write!(body, "<th>{}</th>", esc(c));
    }
    body.push_str("</tr>");
    for r in cells {
        body.push_str("<tr>");
        for c in r {
            let _ = write!(body, "<td>{}</td>", esc(c));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
}

/// `cedm report`.
pub fn report(cli: &Cli, a: &ReportArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = crate::load_plan_with(&a.file, &a.overrides, &reg)?;
    let cache = crate::cache_view(cli.cache.as_deref(), Some(&a.file))?;
    if a.format == crate::cli::ReportFormat::Markdown {
        let records = cached_records(&plan, &cache);
        crate::out(&markdown(&plan, &records, &cache, &a.file));
        return Ok(ExitCode::SUCCESS);
    }
    let dir: PathBuf = a.output.clone().unwrap_or_else(|| {
        let parent = a
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        parent.join(format!("report-{}", plan.experiment.name))
    });
    std::fs::create_dir_all(dir.join("img"))
        .map_err(|e| CliError::Other(format!("creating {}: {e}", dir.display())))?;
    let records = cached_records(&plan, &cache);
    let cached = records.iter().filter(|r| r.is_some()).count();
    let rows = results::rows(&plan, &records, &cache);
    let mut page = Page {
        body: String::new(),
        figures: 0,
    };

    page.section(
        "Summary",
        "Every FID/FDD in the cache with its sweep point, label source and clustering scores.",
    );
    if rows.is_empty() {
        page.body
            .push_str("<p>No FID or FDD result is cached yet (run the experiment first).</p>");
    } else {
        let (cols, cells) = crate::render::summary_cells(&rows);
        html_table(&mut page.body, &cols, &cells);
    }
    let paired = results::paired_rows(&plan, &records, &cache);
    if !paired.is_empty() {
        page.body.push_str(
            "<p>Paired comparisons (A − B over seeds, the same latents for both; negative: A is closer to the reference; metrics/paired):</p>",
        );
        let (cols, cells) = crate::render::paired_cells(&paired);
        html_table(&mut page.body, &cols, &cells);
    }
    page.section("Sample quality", "");
    metric_figures(&mut page, &plan, &records, &rows);
    length_figures(&mut page, &plan, &records, &rows);
    page.section("Clusters", "");
    cluster_figures(&mut page, &plan, &records, &cache);
    cluster_image_figures(&mut page, &plan, &records, &cache, &dir)?;
    page.section("Training", "");
    training_figure(&mut page, &plan, &records, &cache);
    page.section("Samples", "");
    sample_figures(&mut page, &plan, &records, &cache, &dir)?;
    if plan
        .instances
        .iter()
        .any(|i| i.kind.kind().starts_with("figures/"))
    {
        page.section(
            "The paper's figures",
            "The figures/* nodes: each figure is the node's figure.png, its numbers from figure.json.",
        );
        paper_figures(&mut page, &plan, &records, &cache, &dir)?;
    }

    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>cedm report: {name}</title><style>{STYLE}</style></head><body><h1>{name}</h1><p class=\"meta\">{desc}<br>{file} · {cached}/{total} nodes cached · cache {cache_dir} · cedm {ver} · {time}</p>{body}{CHECK}</body></html>",
        name = esc(&plan.experiment.name),
        desc = esc(plan.experiment.description.as_deref().unwrap_or("")),
        file = esc(&a.file.display().to_string()),
        total = plan.instances.len(),
        cache_dir = esc(&cache.root().display().to_string()),
        ver = env!("CARGO_PKG_VERSION"),
        time = cedm_cache::rfc3339_now(),
        body = page.body,
    );
    let index = dir.join("index.html");
    std::fs::write(&index, html)
        .map_err(|e| CliError::Other(format!("writing {}: {e}", index.display())))?;
    crate::outln!("{}", index.display());
    eprintln!(
        "report: {} figures from {cached} cached nodes of {}",
        page.figures,
        plan.instances.len()
    );
    Ok(ExitCode::SUCCESS)
}
