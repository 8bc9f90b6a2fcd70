//! `distilrec`: serve top-k recommendations from a model repository (see `--help`).

use clap::Parser;
use distilrec::logging::{self, Stream};
use distilrec::server::Config;

/// Requests are parsed on the tokio workers and their buffers freed on the inference threads;
/// glibc malloc spent ~12 % of the server's CPU on that cross-thread traffic under load
/// (measured with `perf record` at 1,682 items), mimalloc's per-thread free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `distilrec index`: builds the HNSW graph of a published two-tower bundle and saves it in the
/// bundle (`index.usearch` + `ann_index` in the manifest), so servers load it instead of
/// building it. The version directory is updated in place, index first, manifest last.
#[derive(Parser)]
#[command(name = "distilrec index")]
struct IndexCommand {
    /// A version directory: `<models>/<name>/<version>`.
    dir: std::path::PathBuf,
    /// HNSW links per node (default: the manifest's `serving.ann.m`, else 16).
    #[arg(long)]
    m: Option<usize>,
    /// Build candidate list (default: the manifest's `serving.ann.ef_construction`, else 128).
    #[arg(long)]
    ef_construction: Option<usize>,
    /// Build threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn index(cmd: IndexCommand) -> anyhow::Result<()> {
    use distilrec::bundle::{index::add_index, BundleLimits};
    let started = std::time::Instant::now();
    let overrides = |p: &mut distilrec::engine::ann::AnnParams| {
        p.m = cmd.m.unwrap_or(p.m);
        p.ef_construction = cmd.ef_construction.unwrap_or(p.ef_construction);
        p.build_threads = cmd.threads;
        // Asked explicitly: index whatever the catalogue size.
        p.full_scan_below = 0;
    };
    match add_index(&cmd.dir, overrides, &BundleLimits::default())? {
        Some(spec) => println!(
            "{}: {} ({} bytes, m {}, ef_construction {}) built in {:.1} s",
            cmd.dir.display(),
            spec.file,
            spec.bytes,
            spec.m,
            spec.ef_construction,
            started.elapsed().as_secs_f64()
        ),
        None => println!("{}: nothing to index", cmd.dir.display()),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).is_some_and(|a| a == "index") {
        logging::init(false, Stream::Stderr);
        let args = std::iter::once("distilrec index".into()).chain(std::env::args_os().skip(2));
        return index(IndexCommand::parse_from(args));
    }
    let config = Config::parse();
    logging::init(config.json_logs, Stream::Stdout);
    let workers = config.http_workers();
    tracing::info!(http_workers = workers, "async runtime");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(distilrec::server::run(config))
}
