//! `distilrec`: serve top-k recommendations from a model repository (see `--help`).

use clap::Parser;
use distilrec::logging::{self, Stream};
use distilrec::server::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    logging::init(config.json_logs, Stream::Stdout);
    distilrec::server::run(config).await
}
