//! `loadtest`: open/closed-loop HTTP load harness for the distilrec server.

mod app;
mod bodies;
mod cli;
mod http;
mod plot;
mod report;
mod run;
mod schedule;
mod stats;
mod swap;
mod sweep;

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
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
