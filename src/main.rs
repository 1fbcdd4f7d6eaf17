//! The `singletable` binary: parse the arguments, run, map the outcome to an
//! exit code (0 success, 1 verification found differences, 2 failure).

use clap::Parser as _;

/// mimalloc: the hot path allocates many small values (attribute maps,
/// strings); see BENCHMARKS.md for what it saves.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = singletable::cli::Cli::parse();
    logs(cli.verbose, cli.quiet());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("singletable: cannot start the async runtime: {e}");
            std::process::exit(singletable::app::EXIT_FAILED);
        }
    };
    let code = match runtime.block_on(singletable::app::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("singletable: error: {e:#}");
            singletable::app::EXIT_FAILED
        }
    };
    drop(runtime);
    std::process::exit(code);
}

/// Logs to stderr: warnings by default, -v info, -vv debug, --quiet errors
/// only; RUST_LOG, when set, decides instead.
fn logs(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("singletable={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
