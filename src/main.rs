//! The `singletable` binary: parse the arguments, run, map the outcome to an
//! exit code (0 success, 1 verification found differences, 2 failure).

use clap::Parser as _;

fn main() {
    let cli = singletable::cli::Cli::parse();
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
