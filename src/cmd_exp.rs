//! `cedm exp show | diff`: experiment tables from the cache, and why two instances differ.

use std::collections::BTreeSet;
use std::process::ExitCode;

use cedm_engine::{Plan, Status};

use crate::cli::{Cli, ExpCommand, ExpFormat, ExpShowArgs};
use crate::results::{Row, cached_records, distance_names, series_name};
use crate::{CliError, cache_view, load_plan_with, outln, registry};

/// Dispatch.
pub fn exp(cli: &Cli, c: &ExpCommand) -> Result<ExitCode, CliError> {
    match c {
        ExpCommand::Show(a) => show(cli, a),
        ExpCommand::Diff {
            file,
            a,
            b,
            to,
            overrides,
        } => diff(file, a, b, to.as_deref(), overrides),
    }
}

/// A table cell: a number (None: not available) or text.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// A number, or n/a.
    Num(Option<f64>),
    /// Text.
    Text(String),
}

impl Cell {
    /// For people: `46.2`, not `46.2000`; `10`, not `10.0`; `n/a` for nothing.
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(None) => "n/a".into(),
            Cell::Num(Some(x)) => human(*x),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Num(v) => v
                .and_then(serde_json::Number::from_f64)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
        }
    }
}

/// Decimals for a number of this size: one from 10 up, two from 1, three significant digits
/// below 1.
fn decimals(a: f64) -> usize {
    if a >= 10.0 || a == 0.0 || !a.is_finite() {
        1
    } else if a >= 1.0 {
        2
    } else {
        (2 - a.log10().floor() as i32).clamp(0, 12) as usize
    }
}

/// A number for people: integers as integers, else [`decimals`] for its size.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let d = decimals(x.abs());
    format!("{x:.d$}")
}

/// The table's cells as text, one number format per column: integers where every value is one,
/// else the decimals of the column's largest value (`46.2`, `7.8`, not `46.2000`), n/a for none.
fn column_texts(t: &Table) -> Vec<Vec<String>> {
    let formats: Vec<Option<usize>> = (0..t.columns.len())
        .map(|j| {
            let nums: Vec<f64> = t
                .rows
                .iter()
                .filter_map(|r| match r[j] {
                    Cell::Num(Some(x)) if x.is_finite() => Some(x),
                    _ => None,
                })
                .collect();
            if nums.iter().all(|x| x.fract() == 0.0) {
                None
            } else {
                Some(decimals(nums.iter().fold(0.0_f64, |m, x| m.max(x.abs()))))
            }
        })
        .collect();
    t.rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&formats)
                .map(|(c, f)| match (c, f) {
                    (Cell::Num(Some(x)), Some(d)) if x.is_finite() => format!("{x:.d$}"),
                    _ => c.text(),
                })
                .collect()
        })
        .collect()
}

/// One experiment table: column names and rows of cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Cell>>,
}

/// The models of one experiment as rows: one per sampled model (or per metric node of an
/// image set that is not a model's samples), its sweep point, and every metric measured on it.
fn table_of(name: &str, rows: &[Row], with_experiment: bool) -> Table {
    // Group the metric rows by the samples they measure.
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let id = match r.sample {
            Some(s) => format!("#{s}"),
            None => r.label.clone(),
        };
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, v)) => v.push(r),
            None => groups.push((id, vec![r])),
        }
    }
    let mut vars: Vec<String> = Vec::new();
    for r in rows {
        for k in r.vars.keys() {
            if k != "C" && !vars.contains(k) {
                vars.push(k.clone());
            }
        }
    }
    let any = |p: &dyn Fn(&Row) -> bool| rows.iter().any(p);
    let mut columns: Vec<String> = Vec::new();
    if with_experiment {
        columns.push("experiment".into());
    }
    columns.push("model".into());
    let has_c = any(&|r| r.c.is_some());
    if has_c {
        columns.push("C".into());
    }
    columns.extend(vars.iter().cloned());
    let has_kimg = any(&|r| r.kimg.is_some());
    if has_kimg {
        columns.push("kimg".into());
    }
    let distances = distance_names(rows);
    for d in &distances {
        columns.push(d.clone());
        columns.push(format!("{d} ±"));
    }
    let has_kid = any(&|r| r.kid.is_some());
    if has_kid {
        columns.push("KID".into());
        columns.push("KID ±".into());
    }
    let has_prdc = any(&|r| r.prdc.is_some());
    if has_prdc {
        for c in ["precision", "recall", "density", "coverage"] {
            columns.push(c.into());
        }
    }
    let has_probe = any(&|r| r.probe.is_some());
    if has_probe {
        columns.push("probe %".into());
    }
    let has_clusters = any(&|r| r.acc.is_some() || r.c_u.is_some());
    if has_clusters {
        for c in ["C_u", "ACC", "NMI", "ANMI"] {
            columns.push(c.into());
        }
    }
    let mut out = Table {
        columns,
        rows: Vec::new(),
    };
    for (_, group) in &groups {
        let first = group[0];
        let mut cells: Vec<Cell> = Vec::new();
        if with_experiment {
            cells.push(Cell::Text(name.to_string()));
        }
        cells.push(Cell::Text(if first.sample.is_some() {
            series_name(first)
        } else {
            first.label.clone()
        }));
        if has_c {
            cells.push(Cell::Num(first.c));
        }
        for v in &vars {
            cells.push(
                first
                    .vars
                    .get(v)
                    .map_or(Cell::Num(None), |s| match s.parse::<f64>() {
                        Ok(x) => Cell::Num(Some(x)),
                        Err(_) => Cell::Text(s.clone()),
                    }),
            );
        }
        if has_kimg {
            cells.push(Cell::Num(first.kimg));
        }
        for d in &distances {
            let r = group.iter().find(|r| &r.kind == d);
            cells.push(Cell::Num(r.and_then(|r| r.value)));
            // The spread: half the bootstrap interval, else the std over runs; none of one run.
            cells.push(Cell::Num(r.and_then(|r| match r.ci {
                Some((lo, hi, _)) => Some((hi - lo) / 2.0),
                None if r.runs > 1 => r.std,
                None => None,
            })));
        }
        if has_kid {
            let k = group.iter().find_map(|r| r.kid.as_ref());
            cells.push(Cell::Num(k.map(|k| k.kid)));
            // Half the bootstrap interval, else the std over subsets.
            cells.push(Cell::Num(k.map(|k| match (k.ci_low, k.ci_high) {
                (Some(lo), Some(hi)) => (hi - lo) / 2.0,
                _ => k.kid_std,
            })));
        }
        if has_prdc {
            let m = group.iter().find_map(|r| r.prdc.as_ref());
            for v in [
                m.map(|m| m.precision),
                m.map(|m| m.recall),
                m.map(|m| m.density),
                m.map(|m| m.coverage),
            ] {
                cells.push(Cell::Num(v));
            }
        }
        if has_probe {
            cells.push(Cell::Num(
                group
                    .iter()
                    .find_map(|r| r.probe.as_ref())
                    .map(|p| p.accuracy),
            ));
        }
        if has_clusters {
            for v in [first.c_u, first.acc, first.nmi, first.anmi] {
                cells.push(Cell::Num(v));
            }
        }
        out.rows.push(cells);
    }
    out
}

/// A `--where` test on one column.
struct Filter {
    column: String,
    op: char,
    value: String,
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    let at = s.find(['=', '<', '>']).ok_or_else(|| {
        format!("`--where {s}`: write COLUMN=VALUE, COLUMN<NUMBER or COLUMN>NUMBER")
    })?;
    let op = s[at..].chars().next().unwrap_or('=');
    Ok(Filter {
        column: s[..at].trim().to_string(),
        op,
        value: s[at + 1..].trim().to_string(),
    })
}

fn column_index(t: &Table, name: &str) -> Result<usize, String> {
    t.columns
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!(
                "no column `{name}`; the columns are: {}",
                t.columns.join(", ")
            )
        })
}

impl Filter {
    fn keeps(&self, cell: &Cell) -> Result<bool, String> {
        match self.op {
            '=' => Ok(cell.text().eq_ignore_ascii_case(&self.value)
                || matches!((cell, self.value.parse::<f64>()), (Cell::Num(Some(x)), Ok(v)) if *x == v)),
            op => {
                let v: f64 = self.value.parse().map_err(|_| {
                    format!(
                        "`--where {}{op}{}`: `{}` is not a number",
                        self.column, self.value, self.value
                    )
                })?;
                Ok(match cell {
                    Cell::Num(Some(x)) => {
                        if op == '<' {
                            *x < v
                        } else {
                            *x > v
                        }
                    }
                    _ => false,
                })
            }
        }
    }
}

/// Apply `--where` and `--sort` to a table.
pub fn select(mut t: Table, filters: &[String], sort: Option<&str>) -> Result<Table, String> {
    for f in filters {
        let f = parse_filter(f)?;
        let j = column_index(&t, &f.column)?;
        let mut kept = Vec::new();
        for r in t.rows {
            if f.keeps(&r[j])? {
                kept.push(r);
            }
        }
        t.rows = kept;
    }
    if let Some(s) = sort {
        let (desc, name) = match s.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, s),
        };
        let j = column_index(&t, name)?;
        // Numbers in order, n/a last whichever the direction; text by its letters.
        t.rows.sort_by(|a, b| {
            use std::cmp::Ordering;
            let o = match (&a[j], &b[j]) {
                (Cell::Num(Some(x)), Cell::Num(Some(y))) => x.total_cmp(y),
                (Cell::Num(None), Cell::Num(None)) => Ordering::Equal,
                (Cell::Num(None), _) => return Ordering::Greater,
                (_, Cell::Num(None)) => return Ordering::Less,
                (x, y) => x.text().cmp(&y.text()),
            };
            if desc { o.reverse() } else { o }
        });
    }
    Ok(t)
}

/// The table in a format.
pub fn render(t: &Table, format: ExpFormat) -> String {
    let text = column_texts(t);
    match format {
        ExpFormat::Json => {
            let rows: Vec<serde_json::Value> = t
                .rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        t.columns
                            .iter()
                            .zip(r)
                            .map(|(c, v)| (c.clone(), v.json()))
                            .collect(),
                    )
                })
                .collect();
            serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
        }
        ExpFormat::Csv => {
            let quote = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            let mut out = String::new();
            let line =
                |cells: Vec<String>| cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
            out.push_str(&line(t.columns.clone()));
            out.push('\n');
            for (r, cells) in t.rows.iter().zip(&text) {
                // Numbers at full precision for scripts, n/a as an empty field.
                let raw = r
                    .iter()
                    .zip(cells)
                    .map(|(c, s)| match c {
                        Cell::Num(Some(x)) => x.to_string(),
                        Cell::Num(None) => String::new(),
                        Cell::Text(_) => s.clone(),
                    })
                    .collect();
                out.push_str(&line(raw));
                out.push('\n');
            }
            out
        }
        ExpFormat::Md => {
            let esc = |s: &str| s.replace('|', "\\|");
            let mut out = format!(
                "| {} |\n|{}|\n",
                t.columns
                    .iter()
                    .map(|c| esc(c))
                    .collect::<Vec<_>>()
                    .join(" | "),
                t.columns
                    .iter()
                    .enumerate()
                    .map(|(j, _)| if j == 0 { "---" } else { "---:" })
                    .collect::<Vec<_>>()
                    .join("|")
            );
            for r in &text {
                out.push_str(&format!(
                    "| {} |\n",
                    r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
                ));
            }
            out
        }
        ExpFormat::Table => {
            let widths: Vec<usize> = t
                .columns
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    text.iter()
                        .map(|r| r[j].chars().count())
                        .chain([c.chars().count()])
                        .max()
                        .unwrap_or(1)
                })
                .collect();
            let fmt = |cells: &[String], numeric: &dyn Fn(usize) -> bool| {
                cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(j, (c, w))| {
                        if numeric(j) {
                            format!("{c:>w$}")
                        } else {
                            format!("{c:<w$}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            let is_num = |j: usize| t.rows.iter().all(|r| matches!(r[j], Cell::Num(_)));
            let mut out = fmt(&t.columns, &is_num) + "\n";
            for r in &text {
                out.push_str(&fmt(r, &is_num));
                out.push('\n');
            }
            out
        }
    }
}

fn show(cli: &Cli, a: &ExpShowArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let several = a.files.len() > 1;
    let mut table = Table::default();
    for f in &a.files {
        let plan = load_plan_with(f, &a.overrides, &reg)?;
        let cache = cache_view(cli.cache.as_deref(), Some(f))?;
        let records = cached_records(&plan, &cache);
        let rows = crate::results::rows(&plan, &records, &cache);
        let t = table_of(&plan.experiment.name, &rows, several);
        merge(&mut table, t);
    }
    let table = select(table, &a.filter, a.sort.as_deref()).map_err(CliError::Usage)?;
    if table.rows.is_empty() && a.format == ExpFormat::Table {
        outln!(
            "no measured models yet: `cedm run FILE` computes them, `cedm status FILE` says what is missing"
        );
        return Ok(ExitCode::SUCCESS);
    }
    crate::out(&render(&table, a.format));
    Ok(ExitCode::SUCCESS)
}

/// Append `t`'s rows to `into`, taking the union of the columns (n/a where a table lacks one).
fn merge(into: &mut Table, t: Table) {
    for c in &t.columns {
        if !into.columns.contains(c) {
            into.columns.push(c.clone());
            for r in &mut into.rows {
                r.push(Cell::Num(None));
            }
        }
    }
    for r in t.rows {
        let mut row = vec![Cell::Num(None); into.columns.len()];
        for (c, v) in t.columns.iter().zip(r) {
            if let Some(j) = into.columns.iter().position(|x| x == c) {
                row[j] = v;
            }
        }
        into.rows.push(row);
    }
}

/// Differences between two JSON values, as `path: a → b` lines.
fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => json_diff(&p, u, v, out),
                    (Some(u), None) => out.push(format!("{p}: {u} → (absent)")),
                    (None, Some(v)) => out.push(format!("{p}: (absent) → {v}")),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(format!("{path}: {a} → {b}")),
        _ => {}
    }
}

/// Why instance `a` of `pa` and `b` of `pb` have different keys: their own differences, then,
/// for each input that differs, why (recursively, each pair once).
fn explain(
    pa: &Plan,
    a: usize,
    pb: &Plan,
    b: usize,
    depth: usize,
    seen: &mut BTreeSet<(usize, usize)>,
    out: &mut Vec<String>,
) {
    if !seen.insert((a, b)) || depth > 12 {
        return;
    }
    let (x, y) = (&pa.instances[a], &pb.instances[b]);
    let pad = "  ".repeat(depth);
    if x.kind.kind() != y.kind.kind() || x.kind.version() != y.kind.version() {
        out.push(format!(
            "{pad}kind: {} v{} → {} v{}",
            x.kind.kind(),
            x.kind.version(),
            y.kind.kind(),
            y.kind.version()
        ));
    }
    let mut params = Vec::new();
    json_diff("", &x.key_params, &y.key_params, &mut params);
    for p in params {
        out.push(format!("{pad}param {p}"));
    }
    let files = |i: &cedm_engine::Instance| -> Vec<(String, String)> {
        i.files
            .iter()
            .map(|f| (f.param.clone(), f.path.display().to_string()))
            .collect()
    };
    let (fx, fy) = (files(x), files(y));
    for (param, path) in &fx {
        match fy.iter().find(|(p, _)| p == param) {
            Some((_, other)) if other != path => {
                out.push(format!("{pad}file {param}: {path} → {other}"))
            }
            None => out.push(format!("{pad}file {param}: {path} → (absent)")),
            _ => {}
        }
    }
    let slots: BTreeSet<&String> = x.inputs.keys().chain(y.inputs.keys()).collect();
    for s in slots {
        match (x.inputs.get(s), y.inputs.get(s)) {
            (Some(&u), Some(&v)) => {
                let (lu, lv) = (&pa.instances[u].label, &pb.instances[v].label);
                let same_plan = std::ptr::eq(pa, pb);
                if same_plan && u == v {
                    continue;
                }
                let mut inner = Vec::new();
                explain(pa, u, pb, v, depth + 1, seen, &mut inner);
                if !inner.is_empty() {
                    out.push(format!("{pad}input {s}: {lu} → {lv}, which differ in"));
                    out.extend(inner);
                } else if lu != lv {
                    out.push(format!("{pad}input {s}: {lu} → {lv} (the same spec)"));
                }
            }
            (Some(&u), None) => out.push(format!(
                "{pad}input {s}: {} → (none)",
                pa.instances[u].label
            )),
            (None, Some(&v)) => out.push(format!(
                "{pad}input {s}: (none) → {}",
                pb.instances[v].label
            )),
            (None, None) => {}
        }
    }
}

fn key_text(st: &Status) -> String {
    match st {
        Status::Cached { key } => format!("{} (cached)", key.short()),
        Status::WillRun { key, .. } => format!("{} (not cached)", key.short()),
        _ => "not known until its inputs are computed".into(),
    }
}

fn diff(
    file: &std::path::Path,
    a: &str,
    b: &str,
    to: Option<&std::path::Path>,
    overrides: &crate::cli::OverrideArgs,
) -> Result<ExitCode, CliError> {
    let reg = registry();
    let pa = load_plan_with(file, overrides, &reg)?;
    let pb_owned = match to {
        Some(f) => Some(load_plan_with(f, overrides, &reg)?),
        None => None,
    };
    let pb = pb_owned.as_ref().unwrap_or(&pa);
    let one = |p: &Plan, name: &str, f: &std::path::Path| -> Result<usize, CliError> {
        match p.find(name).as_slice() {
            [i] => Ok(*i),
            [] => Err(CliError::Usage(format!(
                "`{name}` is not a node or label of {}; `cedm status {}` lists them",
                f.display(),
                f.display()
            ))),
            many => Err(CliError::Usage(format!(
                "`{name}` names {} instances of {}: {}",
                many.len(),
                f.display(),
                many.iter()
                    .map(|&i| p.instances[i].label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    };
    let ia = one(&pa, a, file)?;
    let ib = one(pb, b, to.unwrap_or(file))?;
    let ca = cache_view(None, Some(file))?;
    let sa = cedm_engine::status(&pa, &ca, &[]);
    let sb = match to {
        Some(f) => cedm_engine::status(pb, &cache_view(None, Some(f))?, &[]),
        None => sa.clone(),
    };
    outln!("{}  key {}", pa.instances[ia].label, key_text(&sa[ia]));
    outln!("{}  key {}", pb.instances[ib].label, key_text(&sb[ib]));
    let mut lines = Vec::new();
    explain(&pa, ia, pb, ib, 0, &mut BTreeSet::new(), &mut lines);
    let same_key = matches!(
        (&sa[ia], &sb[ib]),
        (Status::Cached { key: x } | Status::WillRun { key: x, .. },
         Status::Cached { key: y } | Status::WillRun { key: y, .. }) if x == y
    );
    if lines.is_empty() || same_key {
        outln!("the same spec: one key, computed once");
    } else {
        outln!("they differ in:");
        for l in lines {
            outln!("  {l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(human(46.2), "46.2");
        assert_eq!(human(46.20001), "46.2");
        assert_eq!(human(10.0), "10");
        assert_eq!(human(1.23456), "1.23");
        assert_eq!(human(0.0331), "0.0331");
        assert_eq!(human(0.5), "0.500");
        // One format per column: the largest value's.
        let t = Table {
            columns: vec!["ACC".into()],
            rows: vec![vec![Cell::Num(Some(27.0))], vec![Cell::Num(Some(7.75))]],
        };
        assert_eq!(column_texts(&t), [["27.0"], ["7.8"]]);
        assert_eq!(Cell::Num(None).text(), "n/a");
    }

    fn t() -> Table {
        Table {
            columns: vec!["model".into(), "C".into(), "FID".into()],
            rows: vec![
                vec![
                    Cell::Text("TEMI".into()),
                    Cell::Num(Some(10.0)),
                    Cell::Num(Some(50.0)),
                ],
                vec![
                    Cell::Text("TEMI".into()),
                    Cell::Num(Some(20.0)),
                    Cell::Num(Some(40.0)),
                ],
                vec![
                    Cell::Text("k-means".into()),
                    Cell::Num(None),
                    Cell::Num(Some(45.0)),
                ],
            ],
        }
    }

    #[test]
    fn filters_and_sorting() {
        let s = select(t(), &["model=temi".into()], Some("FID")).unwrap();
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0][1], Cell::Num(Some(20.0)));
        let s = select(t(), &["fid<48".into()], Some("-C")).unwrap();
        assert_eq!(s.rows.len(), 2);
        // n/a last, also descending.
        assert_eq!(s.rows[1][0], Cell::Text("k-means".into()));
        assert!(select(t(), &["nope=1".into()], None).is_err());
        assert!(select(t(), &["C>x".into()], None).is_err());
    }

    #[test]
    fn formats() {
        let tab = render(&t(), ExpFormat::Table);
        assert!(
            tab.lines().nth(3).unwrap().starts_with("k-means  n/a"),
            "{tab}"
        );
        let csv = render(&t(), ExpFormat::Csv);
        assert_eq!(csv.lines().nth(3).unwrap(), "k-means,,45");
        let md = render(&t(), ExpFormat::Md);
        assert!(
            md.starts_with("| model | C | FID |\n|---|---:|---:|\n"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::from_str(&render(&t(), ExpFormat::Json)).unwrap();
        assert_eq!(json[2]["C"], serde_json::Value::Null);
        assert_eq!(json[1]["FID"], 40.0);
    }
}
