//! The `cedm` command line. Only this crate prints; it renders what the engine reports and picks
//! exit codes (docs/cli.md):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (also when stdout is closed early, e.g. piped into `head`) |
//! | 1 | a node failed, or `cache verify` found problems |
//! | 2 | the experiment is invalid, a file it needs is missing, or the command line is wrong |
//! | 3 | the cache or the filesystem failed |
//! | 130 | interrupted (Ctrl-C, SIGTERM, SIGHUP, a scheduler's warning signal); finished nodes stay cached |

#![forbid(unsafe_code)]

mod bench;
mod cli;
mod cmd_bench;
mod cmd_cache;
mod cmd_eval;
mod cmd_exp;
mod cmd_kinds;
mod cmd_remote;
mod cmd_report;
mod cmd_run;
mod cmd_watch;
mod render;
mod results;
mod svg;
mod tensorboard;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Large freed blocks are kept for reuse: training frees and allocates the same tensor sizes every
/// step, and the system allocator would map them afresh each time (see `cedm_kernels::alloc`).
#[global_allocator]
static ALLOC: cedm_nodes::kernels::alloc::Caching = cedm_nodes::kernels::alloc::Caching;

/// Errors that end a command, each with its exit code.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CliError {
    /// The experiment is invalid or unreadable (exit 2).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Engine(#[from] cedm_engine::EngineError),
    /// A spec error found while running (missing files; exit 2).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(#[from] cedm_engine::SpecError),
    /// The cache failed (exit 3).
    #[error(transparent)]
    #[diagnostic(code(cedm::cache))]
    Cache(#[from] cedm_cache::CacheError),
    /// Wrong usage that clap cannot see (exit 2).
    #[error("{0}")]
    #[diagnostic(code(cedm::usage))]
    Usage(String),
    /// An input file given on the command line is missing, unreadable or malformed (exit 2).
    #[error("{0}")]
    #[diagnostic(code(cedm::input))]
    Input(String),
    /// Something else failed (exit 3).
    #[error("{0}")]
    #[diagnostic(code(cedm::error))]
    Other(String),
    /// Wrong usage with a suggested fix (exit 2).
    #[error("{message}")]
    #[diagnostic(code(cedm::usage))]
    Hint {
        /// What is wrong.
        message: String,
        /// How to fix it.
        #[help]
        help: String,
    },
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Engine(cedm_engine::EngineError::Cache(_)) => 3,
            CliError::Engine(_)
            | CliError::Spec(_)
            | CliError::Usage(_)
            | CliError::Input(_)
            | CliError::Hint { .. } => 2,
            CliError::Cache(_) | CliError::Other(_) => 3,
        }
    }
}

/// Write to stdout; a closed pipe ends the program successfully (like `cedm cache ls | head`).
pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// [`out`] with a newline.
#[macro_export]
macro_rules! outln {
    () => { $crate::out("\n") };
    ($($arg:tt)*) => { $crate::out(&format!("{}\n", format!($($arg)*))) };
}

/// The node kinds this binary knows (toy kinds for the engine's end-to-end tests on request).
pub fn registry() -> cedm_engine::Registry {
    let mut r = cedm_nodes::registry();
    if std::env::var_os("CEDM_TOY_KINDS").is_some_and(|v| v == "1") {
        cedm_engine::toy::register(&mut r);
    }
    r
}

/// Load an experiment with its command-line overrides.
pub fn load_plan_with(
    file: &Path,
    overrides: &crate::cli::OverrideArgs,
    reg: &cedm_engine::Registry,
) -> Result<cedm_engine::Plan, CliError> {
    let ovs = overrides.parsed().map_err(CliError::Usage)?;
    Ok(cedm_engine::load_plan_with(file, &ovs, reg)?)
}

/// The cache directory for an experiment file: `--cache`/`CEDM_CACHE`, else `.cedm/` beside
/// the file, else `./.cedm`.
pub fn cache_dir(cli_cache: Option<&Path>, file: Option<&Path>) -> PathBuf {
    match (cli_cache, file) {
        (Some(c), _) => c.to_path_buf(),
        (None, Some(f)) => f
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .join(".cedm"),
        (None, None) => PathBuf::from(".cedm"),
    }
}

/// The cache for an experiment file, created if needed (`run`, `exec`: commands that compute).
pub fn cache_for(
    cli_cache: Option<&Path>,
    file: Option<&Path>,
) -> Result<cedm_cache::Cache, CliError> {
    Ok(cedm_cache::Cache::open(cache_dir(cli_cache, file))?)
}

/// The cache for a command that only looks (`status`, `report`): a read-only view that creates
/// nothing; where there is no cache yet, an empty view (everything will run).
pub fn cache_view(
    cli_cache: Option<&Path>,
    file: Option<&Path>,
) -> Result<cedm_cache::Cache, CliError> {
    let dir = cache_dir(cli_cache, file);
    Ok(cedm_cache::Cache::open_existing(&dir)?.unwrap_or_else(|| cedm_cache::Cache::absent(&dir)))
}

/// The cache of a `cedm cache` command: it must exist (nothing is created); when it does not,
/// the error says where caches are and how to name one. `writable` opens it for maintenance
/// (`verify` quarantines, `gc` deletes), else as a read-only view.
pub fn existing_cache(
    cli_cache: Option<&Path>,
    file: Option<&Path>,
    writable: bool,
) -> Result<cedm_cache::Cache, CliError> {
    let dir = cache_dir(cli_cache, file);
    match cedm_cache::Cache::open_existing(&dir)? {
        Some(c) if writable => Ok(cedm_cache::Cache::open(c.root())?),
        Some(c) => Ok(c),
        None => Err(CliError::Hint {
            message: format!("there is no cedm cache at {}", dir.display()),
            help: match (cli_cache, file) {
                (None, Some(f)) => format!(
                    "nothing of {} has been computed yet: `cedm run {}` fills it",
                    f.display(),
                    f.display()
                ),
                _ => where_caches_are(),
            },
        }),
    }
}

/// Where the caches below the current directory are, and how to name one (the hint of a
/// cache command that found none, or no such key, here).
pub fn where_caches_are() -> String {
    let found = find_caches(Path::new("."));
    let how = "a cache sits beside its experiment file (`.cedm/` in the file's folder): name the \
               experiment (`cedm cache ls experiments/quickstart.yaml`) or the cache (`--cache DIR`, \
               `CEDM_CACHE`)";
    if found.is_empty() {
        format!("{how}; none found below this directory")
    } else {
        let list: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        format!("{how}; found: {}", list.join(", "))
    }
}

/// Caches in `dir`'s folders, two levels down (hidden folders other than `.cedm`, and `target`,
/// skipped), at most eight.
fn find_caches(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for d in &level {
            let c = d.join(".cedm");
            if c.join("cedm-cache.json").is_file() && out.len() < 8 {
                out.push(c.strip_prefix("./").map(Path::to_path_buf).unwrap_or(c));
            }
            let Ok(entries) = std::fs::read_dir(d) else {
                continue;
            };
            let mut subs: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && n != "target"
                })
                .map(|e| e.path())
                .collect();
            subs.sort();
            next.extend(subs.into_iter().take(64));
        }
        level = next;
    }
    out
}

fn main() -> ExitCode {
    // A panic inside a node is that node's failure: its backtrace goes to the node's log.
    cedm_engine::panics::install();
    // The allocator's cache of free blocks, in MiB (docs/performance.md).
    if let Some(mib) = std::env::var("CEDM_ALLOC_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        cedm_nodes::kernels::alloc::set_limit(mib.saturating_mul(1 << 20));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(ref a) => cmd_run::run(&cli, a),
        Command::Status(ref a) => cmd_run::status(&cli, a),
        Command::Dag(ref a) => cmd_run::dag(a),
        Command::Watch(ref a) => cmd_watch::watch(&cli, a),
        Command::Cache(ref c) => cmd_cache::cache(&cli, c),
        Command::Exp(ref c) => cmd_exp::exp(&cli, c),
        Command::Kinds(ref a) => cmd_kinds::kinds(a),
        Command::Exec(ref a) => cmd_run::exec(&cli, a),
        Command::Features(ref a) => cmd_bench::features(a),
        Command::Bench(ref b) => cmd_bench::bench(b),
        Command::Fid(ref a) => cmd_bench::fid(a),
        Command::Eval(ref a) => cmd_eval::eval(a),
        Command::Report(ref a) => cmd_report::report(&cli, a),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "cedm",
                &mut script,
            );
            out(&String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(code)
        }
    }
}
