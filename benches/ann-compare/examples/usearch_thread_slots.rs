//! Shows usearch's thread-slot limit: reserve for 1 thread, search from 4 threads at once.
//! cargo run --release --example usearch_thread_slots
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};
fn main() {
    let d = 16;
    let opts = IndexOptions { dimensions: d, metric: MetricKind::IP, quantization: ScalarKind::F32,
        connectivity: 16, expansion_add: 64, expansion_search: 64, multi: false };
    let idx = Index::new(&opts).unwrap();
    idx.reserve_capacity_and_threads(5000, 1).unwrap();
    for i in 0..5000u64 {
        let v: Vec<f32> = (0..d).map(|j| ((i as usize * 31 + j * 7) % 97) as f32 / 97.0).collect();
        idx.add(i, &v).unwrap();
    }
    let idx = &idx;
    let errs = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| for _ in 0..20000 {
                if let Err(e) = idx.search(&vec![0.5f32; d], 10) {
                    if errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 { println!("first error: {e}"); }
                }
            });
        }
    });
    println!("errors: {} of 80000 searches", errs.into_inner());
}
