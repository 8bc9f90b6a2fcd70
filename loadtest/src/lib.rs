//! `loadtest`: open/closed-loop HTTP load harness for the distilrec server.
//!
//! The binary is a thin wrapper around [`run`]; the library exists so tests elsewhere in the
//! workspace can drive the harness in-process against a real server.

mod app;
mod bodies;
mod cli;
mod http;
mod plot;
mod report;
mod run;
mod schedule;
mod soak;
mod stats;
mod swap;
mod sweep;

use anyhow::Context;

pub use cli::Cli;

/// Validates `cli` and runs it to completion on its own tokio runtime (one thread with
/// `--threads 1`), exactly as the `loadtest` binary does. Must not be called from inside a
/// tokio runtime.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    cli.validate()?;
    let runtime = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    }
    .context("starting the tokio runtime")?;
    runtime.block_on(app::run(cli))
}
