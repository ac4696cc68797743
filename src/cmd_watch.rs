//! `cedm watch`: live curves of the running nodes of an experiment, from their scalar streams.

use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::ExitCode;

use cedm_engine::Status;
use cedm_engine::node::{SCALARS_FILE, ScalarLine};

use crate::cli::{Cli, WatchArgs};
use crate::{CliError, cache_view, load_plan_with, registry};

/// The most of a stream read (its end): enough for thousands of points.
const TAIL_BYTES: u64 = 4 << 20;

/// The lines of a stream (its last [`TAIL_BYTES`]); a symlink or anything but a regular file is
/// not read, a line that does not parse is skipped.
pub fn read_stream(path: &Path) -> Vec<ScalarLine> {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return Vec::new();
    };
    if !m.file_type().is_file() {
        return Vec::new();
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let skip = m.len().saturating_sub(TAIL_BYTES);
    if f.seek(SeekFrom::Start(skip)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if f.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    if skip > 0 {
        // The first line is cut.
        lines.next();
    }
    lines
        .filter_map(|l| serde_json::from_str::<ScalarLine>(l).ok())
        .collect()
}

/// A sparkline of the values (the last `width`, or evenly thinned to `width`).
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if vals.is_empty() || width == 0 {
        return String::new();
    }
    let picked: Vec<f64> = if vals.len() <= width {
        vals
    } else {
        (0..width)
            .map(|i| vals[i * (vals.len() - 1) / (width - 1).max(1)])
            .collect()
    };
    let (lo, hi) = picked
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    picked
        .iter()
        .map(|v| {
            if hi > lo {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize]
            } else {
                BARS[3]
            }
        })
        .collect()
}

/// The text of one look: every instance that is not cached and has a stream, its curves.
fn look(
    plan: &cedm_engine::Plan,
    cache: &cedm_cache::Cache,
    width: usize,
    mut mirror: Option<&mut crate::tensorboard::Mirror>,
) -> Result<(String, usize, usize), CliError> {
    let statuses = cedm_engine::status(plan, cache, &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = String::new();
    let (mut live, mut pending) = (0, 0);
    for (inst, st) in plan.instances.iter().zip(&statuses) {
        let key = match st {
            Status::Cached { .. } => continue,
            Status::WillRun { key, .. } => *key,
            _ => {
                pending += 1;
                continue;
            }
        };
        pending += 1;
        let lines = read_stream(&cache.work_dir(&key).join(SCALARS_FILE));
        let Some(last) = lines.last() else {
            continue;
        };
        if let Some(m) = mirror.as_deref_mut() {
            m.update(&inst.label, &key.to_hex(), &lines)
                .map_err(|e| CliError::Input(format!("writing TensorBoard events: {e}")))?;
        }
        live += 1;
        out.push_str(&format!(
            "{}  {} {}  ({} points, last {} ago)\n",
            inst.label,
            crate::cmd_exp::human(last.step),
            last.unit,
            lines.len(),
            crate::render::secs((now - last.t).max(0.0))
        ));
        let mut names: Vec<&String> = Vec::new();
        for l in &lines {
            for k in l.values.keys() {
                if !names.contains(&k) {
                    names.push(k);
                }
            }
        }
        let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for name in names {
            let series: Vec<f64> = lines
                .iter()
                .filter_map(|l| l.values.get(name).copied().flatten())
                .collect();
            let (lo, hi) = series
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                    (l.min(*v), h.max(*v))
                });
            let latest = series
                .last()
                .map_or("n/a".to_string(), |v| crate::cmd_exp::human(*v));
            out.push_str(&format!(
                "  {name:<w$}  {}  {latest}  [{} … {}]\n",
                sparkline(&series, width),
                crate::cmd_exp::human(lo),
                crate::cmd_exp::human(hi)
            ));
        }
    }
    Ok((out, live, pending))
}

/// `cedm watch`.
pub fn watch(cli: &Cli, a: &WatchArgs) -> Result<ExitCode, CliError> {
    let reg = registry();
    let plan = load_plan_with(&a.file, &a.overrides, &reg)?;
    let tty = std::io::stdout().is_terminal();
    let mut mirror = a
        .tensorboard
        .as_deref()
        .map(crate::tensorboard::Mirror::new);
    loop {
        // Re-opened each look: the cache may appear once the run starts.
        let cache = cache_view(cli.cache.as_deref(), Some(&a.file))?;
        let (text, live, pending) = look(&plan, &cache, a.width, mirror.as_mut())?;
        if tty && !a.once {
            crate::out("\x1b[2J\x1b[H");
        }
        if live == 0 {
            if pending == 0 {
                crate::outln!(
                    "all {} nodes of {} are cached; nothing runs",
                    plan.instances.len(),
                    a.file.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            crate::outln!(
                "{pending} nodes not cached, none reporting yet (`cedm run {}` computes them)",
                a.file.display()
            );
        } else {
            crate::out(&text);
        }
        if a.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs_f64(a.interval.max(0.2)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_span_the_range() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0], 10), "▁▅█");
        assert_eq!(sparkline(&[5.0, 5.0], 10), "▄▄");
        assert_eq!(
            sparkline(&(0..100).map(f64::from).collect::<Vec<_>>(), 8)
                .chars()
                .count(),
            8
        );
        assert_eq!(sparkline(&[], 8), "");
    }
}
