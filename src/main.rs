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
mod cmd_kinds;
mod cmd_report;
mod cmd_run;
mod render;
mod results;
mod svg;

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
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Engine(cedm_engine::EngineError::Cache(_)) => 3,
            CliError::Engine(_) | CliError::Spec(_) | CliError::Usage(_) | CliError::Input(_) => 2,
            CliError::Cache(_) | CliError::Other(_) => 3,
        }
    }
}

/// Write to stdout; a closed pipe ends the program successfully (like `cedm cache ls | head`).
pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
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

/// The cache for an experiment file: `--cache`/`CEDM_CACHE`, else `.cedm/` beside the file.
pub fn cache_for(
    cli_cache: Option<&Path>,
    file: Option<&Path>,
) -> Result<cedm_cache::Cache, CliError> {
    let dir: PathBuf = match (cli_cache, file) {
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
    };
    Ok(cedm_cache::Cache::open(dir)?)
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
        Command::Cache(ref c) => cmd_cache::cache(&cli, c),
        Command::Kinds(ref a) => cmd_kinds::kinds(a),
        Command::Exec(ref a) => cmd_run::exec(&cli, a),
        Command::Features(ref a) => cmd_bench::features(a),
        Command::Bench(ref b) => cmd_bench::bench(b),
        Command::Fid(ref a) => cmd_bench::fid(a),
        Command::Eval(ref a) => cmd_eval::eval(a),
        Command::Report(ref a) => cmd_report::report(&cli, a),
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
