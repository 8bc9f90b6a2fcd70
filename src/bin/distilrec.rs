//! `distilrec`: serve top-k recommendations from a model repository (see `--help`).

use clap::Parser;
use distilrec::server::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.json_logs);
    distilrec::server::run(config).await
}

/// `RUST_LOG` overrides the default `info` level.
fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        builder.with_ansi(ansi).init();
    }
}
