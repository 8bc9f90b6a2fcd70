//! `loadtest`: open/closed-loop HTTP load harness for the distilrec server (see the library).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    loadtest::run(loadtest::Cli::parse())
}
