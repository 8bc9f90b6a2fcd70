//! `distill`: the offline teacher → student distillation job. All logic is in
//! `distilrec::train`; this only parses the configuration and sets up logging.

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    distilrec::logging::init(false, distilrec::logging::Stream::Stderr);
    let config = distilrec::train::Config::parse();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Still single-threaded here, so setting the environment is sound.
        std::env::set_var("RAYON_NUM_THREADS", config.threads.to_string());
    }
    let data = config.data.clone();
    let outcome = distilrec::train::run(config)
        .with_context(|| format!("distillation on {} failed", data.display()))?;
    for line in outcome.summary() {
        eprintln!("{line}");
    }
    Ok(())
}
