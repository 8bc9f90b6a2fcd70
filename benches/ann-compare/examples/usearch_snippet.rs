//! Minimal usearch 2.26.6 MIPS usage (the snippet quoted in README.md).
//! cargo run --release --example usearch_snippet
use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

fn main() {
    let (n, d) = (20_000usize, 64usize);
    // item i = [v_i (d floats), b_i] ; query = [q, 1.0]  ->  IP = q·v + b
    let items: Vec<f32> = (0..n * (d + 1)).map(|i| ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5).collect();

    let opts = IndexOptions {
        dimensions: d + 1,
        metric: MetricKind::IP,        // usearch distance = 1 - dot (smaller is better)
        quantization: ScalarKind::F32, // IndexOptions::default() is BF16 + Cos!
        connectivity: 16,              // M
        expansion_add: 128,            // ef_construction
        expansion_search: 64,          // ef_search (index-wide, change with change_expansion_search)
        multi: false,
    };
    let index = Index::new(&opts).expect("index");
    let threads = rayon::current_num_threads();
    // must reserve before add(), and tell it how many threads will call add()/search()
    index.reserve_capacity_and_threads(n, threads).expect("reserve");
    items.par_chunks_exact(d + 1).enumerate().for_each(|(i, v)| {
        index.add(i as u64, v).expect("add"); // &self, thread-safe; copies the vector
    });

    index.change_expansion_search(64); // ef for subsequent searches (not per call)
    let index = &index;
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                let mut q = vec![0.1f32; d + 1];
                q[d] = 1.0; // bias slot
                q[t] = 1.0;
                let m = index.search(&q, 10).expect("search"); // &self from many threads
                // m.keys: Vec<u64>, m.distances: Vec<f32> (1 - score), best first
                let excluded = [m.keys[0]];
                let f = index
                    .filtered_search(&q, 10, |key| !excluded.contains(&key)) // predicate during traversal
                    .expect("filtered");
                println!("thread {t}: top1={} score={:.3}; filtered top1={}", m.keys[0], 1.0 - m.distances[0], f.keys[0]);
            });
        }
    });
}
