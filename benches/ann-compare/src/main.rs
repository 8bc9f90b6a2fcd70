//! ANN (HNSW) crate comparison for MIPS: hnsw_rs vs instant-distance vs usearch.
//!
//! Task: top-10 by `score = q·v + b` over a clustered synthetic catalogue.
//! See README.md for the commands and results.
//!
//! Usage:
//!   ann-compare --crate <hnsw_rs|hnsw_rs_ip|instant|instant_ip|usearch_ip|usearch_l2> [--n 100000] [--dim 64]
//!               [--nq 2000] [--efs 16,32,64,128,256] [--build-threads 1,2]
//!               [--m 16] [--efc 128] [--seed 42] [--build-only]

use std::time::{Duration, Instant};

use rand::prelude::*;
use rand_distr::{Distribution, LogNormal, Normal};
use rayon::prelude::*;

// rand 0.8's StdRng (ChaCha12) is deterministic for a given seed.
use rand::rngs::StdRng;

const K: usize = 10;
const FETCH: usize = 50; // over-fetch for re-rank

// ---------------------------------------------------------------- args
struct Args {
    krate: String,
    n: usize,
    dim: usize,
    nq: usize,
    efs: Vec<usize>,
    build_threads: Vec<usize>,
    m: usize,
    efc: usize,
    seed: u64,
    build_only: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        krate: "usearch_ip".into(),
        n: 100_000,
        dim: 64,
        nq: 2000,
        efs: vec![16, 32, 64, 128, 256],
        build_threads: vec![1, 2],
        m: 16,
        efc: 128,
        seed: 42,
        build_only: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let list = |s: &str| s.split(',').map(|x| x.parse().unwrap()).collect::<Vec<usize>>();
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--crate" => a.krate = val,
            "--n" => a.n = val.parse().unwrap(),
            "--dim" => a.dim = val.parse().unwrap(),
            "--nq" => a.nq = val.parse().unwrap(),
            "--efs" => a.efs = list(&val),
            "--build-threads" => a.build_threads = list(&val),
            "--m" => a.m = val.parse().unwrap(),
            "--efc" => a.efc = val.parse().unwrap(),
            "--seed" => a.seed = val.parse().unwrap(),
            "--build-only" => {
                a.build_only = true;
                i += 1;
                continue;
            }
            x => panic!("unknown arg {x}"),
        }
        i += 2;
    }
    a
}

// ---------------------------------------------------------------- utils
fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    for l in s.lines() {
        if let Some(rest) = l.strip_prefix(field) {
            return rest.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
    }
    0
}
fn rss_mib() -> f64 {
    rss_kib("VmRSS:") as f64 / 1024.0
}
fn hwm_mib() -> f64 {
    rss_kib("VmHWM:") as f64 / 1024.0
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[inline]
fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for j in 0..8 {
            let d = x[j] - y[j];
            acc[j] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// CPU time of the calling thread (robust to preemption by other processes)
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
/// CPU time of the whole process (all threads)
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

// ---------------------------------------------------------------- data
struct Data {
    n: usize,
    d: usize,
    items: Vec<f32>, // n*d
    bias: Vec<f32>,  // n
    queries: Vec<f32>, // nq*d
    nq: usize,
}

fn gen_data(n: usize, d: usize, nq: usize, seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let nc = 256;
    let std = Normal::new(0.0f32, 1.0).unwrap();
    let centres: Vec<f32> = (0..nc * d).map(|_| std.sample(&mut rng)).collect();
    // cluster popularity is skewed: some clusters much bigger than others
    let weights: Vec<f64> = (0..nc).map(|i| 1.0 / (1.0 + i as f64).powf(0.7)).collect();
    let wsum: f64 = weights.iter().sum();
    let cdf: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / wsum;
            Some(*acc)
        })
        .collect();
    let pick = |rng: &mut StdRng| {
        let u: f64 = rng.gen();
        cdf.partition_point(|&c| c < u).min(nc - 1)
    };
    let noise = Normal::new(0.0f32, 0.35).unwrap();
    let scale = LogNormal::new(0.0f32, 0.4).unwrap();
    let bnoise = Normal::new(0.0f32, 0.5).unwrap();
    let mut items = Vec::with_capacity(n * d);
    let mut bias = Vec::with_capacity(n);
    for _ in 0..n {
        let c = pick(&mut rng);
        let s: f32 = scale.sample(&mut rng);
        for j in 0..d {
            items.push(s * (centres[c * d + j] + noise.sample(&mut rng)));
        }
        bias.push(bnoise.sample(&mut rng));
    }
    let qnoise = Normal::new(0.0f32, 0.5).unwrap();
    let mut queries = Vec::with_capacity(nq * d);
    for _ in 0..nq {
        let c = pick(&mut rng);
        for j in 0..d {
            queries.push(centres[c * d + j] + qnoise.sample(&mut rng));
        }
    }
    Data { n, d, items, bias, queries, nq }
}

/// [v, b] (IP form, dim d+1) and [v, b, sqrt(M²-|v|²-b²)] (L2 form, dim d+2)
fn augment_items(data: &Data, l2: bool) -> (Vec<f32>, usize) {
    let d = data.d;
    let ad = if l2 { d + 2 } else { d + 1 };
    let norms2: Vec<f32> = (0..data.n)
        .map(|i| {
            let v = &data.items[i * d..(i + 1) * d];
            dot(v, v) + data.bias[i] * data.bias[i]
        })
        .collect();
    let m2 = norms2.iter().cloned().fold(0f32, f32::max);
    let mut out = Vec::with_capacity(data.n * ad);
    for i in 0..data.n {
        out.extend_from_slice(&data.items[i * d..(i + 1) * d]);
        out.push(data.bias[i]);
        if l2 {
            out.push((m2 - norms2[i]).max(0.0).sqrt());
        }
    }
    (out, ad)
}
fn augment_queries(data: &Data, l2: bool) -> (Vec<f32>, usize) {
    let d = data.d;
    let ad = if l2 { d + 2 } else { d + 1 };
    let mut out = Vec::with_capacity(data.nq * ad);
    for i in 0..data.nq {
        out.extend_from_slice(&data.queries[i * d..(i + 1) * d]);
        out.push(1.0);
        if l2 {
            out.push(0.0);
        }
    }
    (out, ad)
}

fn exact_score(data: &Data, qi: usize, id: usize) -> f32 {
    let d = data.d;
    dot(&data.queries[qi * d..(qi + 1) * d], &data.items[id * d..(id + 1) * d]) + data.bias[id]
}

fn ground_truth(data: &Data) -> Vec<Vec<u32>> {
    (0..data.nq)
        .into_par_iter()
        .map(|qi| {
            let d = data.d;
            let q = &data.queries[qi * d..(qi + 1) * d];
            // keep top-K in a small sorted vec (desc)
            let mut top: Vec<(f32, u32)> = Vec::with_capacity(K + 1);
            for id in 0..data.n {
                let s = dot(q, &data.items[id * d..(id + 1) * d]) + data.bias[id];
                if top.len() < K || s > top[K - 1].0 {
                    let pos = top.partition_point(|x| x.0 >= s);
                    top.insert(pos, (s, id as u32));
                    top.truncate(K);
                }
            }
            top.into_iter().map(|x| x.1).collect()
        })
        .collect()
}

fn recall(gt: &[u32], got: &[u32]) -> usize {
    got.iter().take(K).filter(|g| gt.contains(g)).count()
}

fn rerank(data: &Data, qi: usize, cands: &[u32]) -> Vec<u32> {
    let mut sc: Vec<(f32, u32)> = cands
        .iter()
        .map(|&id| (exact_score(data, qi, id as usize), id))
        .collect();
    sc.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    sc.into_iter().take(K).map(|x| x.1).collect()
}

// ---------------------------------------------------------------- index abstraction
trait Ann: Sync + Send {
    /// search with the given ef, return ids (best first)
    fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<u32>;
    /// called once before searching with `ef` (crates where ef is index state)
    fn set_ef(&mut self, _ef: usize) {}
}

// ---- hnsw_rs
mod hrs {
    use super::*;
    use hnsw_rs::prelude::*;
    /// Custom distance for native MIPS on the augmented [v,b]/[q,1] vectors.
    /// hnsw_rs requires distances >= 0 (search_layer asserts it, it negates distances
    /// for its min-heap), and its own DistDot computes 1-dot and asserts >= 0, i.e. it
    /// only works for L2-normalised vectors and panics on MIPS data. So we use a
    /// *shifted* inner product: dist = C - a·b with C >= every dot that can occur:
    /// item·item <= M², and queries are L2-normalised before search (ranking is
    /// invariant to query scale) so query·item <= M. C = max(M², M) * 1.001.
    #[derive(Default, Clone, Copy)]
    pub struct ShiftedDot(pub f32);
    impl Distance<f32> for ShiftedDot {
        fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
            (self.0 - dot(a, b)).max(0.0)
        }
    }
    pub fn shifted_dot_for(aug: &[f32], ad: usize) -> ShiftedDot {
        let m2 = aug.chunks_exact(ad).map(|v| dot(v, v)).fold(0f32, f32::max);
        ShiftedDot(m2.max(m2.sqrt()) * 1.001)
    }
    pub struct H<D: Distance<f32> + Send + Sync>(pub Hnsw<'static, f32, D>, pub bool /* normalise query */);
    impl<D: Distance<f32> + Send + Sync> Ann for H<D> {
        fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<u32> {
            if self.1 {
                let nq = dot(q, q).sqrt();
                let qn: Vec<f32> = q.iter().map(|x| x / nq).collect();
                return self.0.search(&qn, k, ef).iter().map(|n| n.d_id as u32).collect();
            }
            self.0.search(q, k, ef).iter().map(|n| n.d_id as u32).collect()
        }
    }
    pub fn build<D: Distance<f32> + Send + Sync>(aug: &[f32], ad: usize, m: usize, efc: usize, dist: D, norm_q: bool) -> H<D> {
        let n = aug.len() / ad;
        let h = Hnsw::<f32, D>::new(m, n, 16, efc, dist);
        let refs: Vec<(&[f32], usize)> = aug.chunks_exact(ad).zip(0..n).collect();
        // uses rayon; run inside a pool to control the thread count
        h.parallel_insert_slice(&refs);
        let mut h = h;
        h.set_searching_mode(true);
        H(h, norm_q)
    }
}

// ---- instant-distance
mod idist {
    use super::*;
    use instant_distance::{Builder, HnswMap, Search};
    use serde::{Deserialize, Serialize};
    use std::cell::RefCell;

    #[derive(Clone, Serialize, Deserialize)]
    pub struct P(pub Vec<f32>);
    impl instant_distance::Point for P {
        fn distance(&self, other: &Self) -> f32 {
            l2sq(&self.0, &other.0)
        }
    }
    /// native-MIPS variant: distance = -(a·b) on [v,b]/[q,1]
    #[derive(Clone, Serialize, Deserialize)]
    pub struct Pip(pub Vec<f32>);
    impl instant_distance::Point for Pip {
        fn distance(&self, other: &Self) -> f32 {
            -dot(&self.0, &other.0)
        }
    }
    pub trait Mk: instant_distance::Point + Serialize + for<'de> Deserialize<'de> + Send + Sync {
        fn mk(v: Vec<f32>) -> Self;
    }
    impl Mk for P { fn mk(v: Vec<f32>) -> Self { P(v) } }
    impl Mk for Pip { fn mk(v: Vec<f32>) -> Self { Pip(v) } }
    thread_local! { static SEARCH: RefCell<Search> = RefCell::new(Search::default()); }

    pub struct I<T: Mk> {
        pub map: HnswMap<T, u32>,
        ser: Option<Vec<u8>>,
    }
    impl<T: Mk> Ann for I<T> {
        fn search(&self, q: &[f32], k: usize, _ef: usize) -> Vec<u32> {
            let p = T::mk(q.to_vec());
            SEARCH.with(|s| {
                let mut s = s.borrow_mut();
                self.map.search(&p, &mut s).take(k).map(|it| *it.value).collect()
            })
        }
        /// instant-distance fixes ef_search at build time (Builder::ef_search) and offers
        /// no setter. To sweep ef on the *same graph* we serialize once with bincode and
        /// patch the first field (Hnsw::ef_search, a u64 in bincode's fixint encoding).
        fn set_ef(&mut self, ef: usize) {
            if self.ser.is_none() {
                self.ser = Some(bincode::serialize(&self.map).unwrap());
            }
            let mut bytes = self.ser.as_ref().unwrap().clone();
            bytes[0..8].copy_from_slice(&(ef as u64).to_le_bytes());
            self.map = bincode::deserialize(&bytes).unwrap();
        }
    }
    pub fn build<T: Mk>(aug: &[f32], ad: usize, efc: usize, ef_search: usize) -> I<T> {
        let pts: Vec<T> = aug.chunks_exact(ad).map(|c| T::mk(c.to_vec())).collect();
        let vals: Vec<u32> = (0..pts.len() as u32).collect();
        let map = Builder::default()
            .ef_construction(efc)
            .ef_search(ef_search)
            .seed(7)
            .build(pts, vals);
        I { map, ser: None }
    }
}

// ---- usearch
mod us {
    use super::*;
    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};
    pub struct U(pub Index);
    impl Ann for U {
        fn search(&self, q: &[f32], k: usize, _ef: usize) -> Vec<u32> {
            self.0.search(q, k).unwrap().keys.iter().map(|&k| k as u32).collect()
        }
        fn set_ef(&mut self, ef: usize) {
            self.0.change_expansion_search(ef);
        }
    }
    pub fn build(aug: &[f32], ad: usize, m: usize, efc: usize, ip: bool, threads: usize) -> U {
        let n = aug.len() / ad;
        let opts = IndexOptions {
            dimensions: ad,
            metric: if ip { MetricKind::IP } else { MetricKind::L2sq },
            quantization: ScalarKind::F32, // default is BF16!
            connectivity: m,
            expansion_add: efc,
            expansion_search: 64,
            multi: false,
        };
        let idx = Index::new(&opts).unwrap();
        idx.reserve_capacity_and_threads(n, threads).unwrap();
        aug.par_chunks_exact(ad)
            .enumerate()
            .for_each(|(i, v)| idx.add(i as u64, v).unwrap());
        let u = U(idx);
        println!("# {}", info(&u));
        u
    }
    pub fn info(u: &U) -> String {
        format!(
            "usearch {} accel={} mem_usage={:.1}MiB",
            usearch::version(),
            u.0.hardware_acceleration(),
            u.0.memory_usage() as f64 / 1048576.0
        )
    }
}

// ---------------------------------------------------------------- main
fn main() {
    let a = parse_args();
    let t0 = Instant::now();
    let data = gen_data(a.n, a.dim, a.nq, a.seed);
    // *_ip variants use the [v,b]/[q,1] inner-product form, the others the L2 reduction
    let l2 = !a.krate.ends_with("_ip");
    let (aug, ad) = augment_items(&data, l2);
    let (augq, _) = augment_queries(&data, l2);
    println!(
        "# crate={} n={} d={} (aug {}) nq={} M={} efc={} seed={} datagen={:.1}s",
        a.krate, a.n, a.dim, ad, a.nq, a.m, a.efc, a.seed,
        t0.elapsed().as_secs_f64()
    );

    let mut index: Option<Box<dyn Ann>> = None;
    let mut first_rss: Option<f64> = None;
    for &t in &a.build_threads {
        drop(index.take());
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        let r0 = rss_mib();
        let c0 = process_cpu();
        let tb = Instant::now();
        let idx: Box<dyn Ann> = pool.install(|| match a.krate.as_str() {
            "hnsw_rs" => Box::new(hrs::build(&aug, ad, a.m, a.efc, hnsw_rs::prelude::DistL2, false)) as Box<dyn Ann>,
            "hnsw_rs_ip" => Box::new(hrs::build(&aug, ad, a.m, a.efc, hrs::shifted_dot_for(&aug, ad), true)),
            "instant" => Box::new(idist::build::<idist::P>(&aug, ad, a.efc, 64)),
            "instant_ip" => Box::new(idist::build::<idist::Pip>(&aug, ad, a.efc, 64)),
            "usearch_ip" | "usearch_l2" => {
                Box::new(us::build(&aug, ad, a.m, a.efc, !l2, t))
            }
            x => panic!("unknown crate {x}"),
        });
        let bt = tb.elapsed().as_secs_f64();
        let bc = (process_cpu() - c0).as_secs_f64();
        let r1 = rss_mib();
        if first_rss.is_none() {
            first_rss = Some(r1 - r0);
        }
        println!(
            "BUILD threads={t} time={bt:.2}s cpu={bc:.2}s loadavg=[{}] rss_delta={:.1}MiB (rss={r1:.1}MiB hwm={:.1}MiB){}",
            loadavg(),
            r1 - r0,
            hwm_mib(),
            if first_rss == Some(r1 - r0) { "" } else { " [delta after a drop: allocator reuse, see first build]" }
        );
        index = Some(idx);
    }
    let mut index = index.unwrap();
    if a.build_only {
        return;
    }

    let tg = Instant::now();
    let gt = ground_truth(&data);
    println!("# ground truth (brute force, rayon) {:.1}s", tg.elapsed().as_secs_f64());

    let q = |qi: usize| &augq[qi * ad..(qi + 1) * ad];
    println!("# wall = Instant around the call; cpu = CLOCK_THREAD_CPUTIME_ID (excludes preemption). loadavg=[{}]", loadavg());
    println!("| ef | recall@10 | p50 µs | p99 µs | mean µs | cpu p50 µs | cpu p99 µs | recall@10 after top-{FETCH} re-rank (ef=max(ef,{FETCH})) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &ef in &a.efs {
        index.set_ef(ef);
        // warm-up
        for qi in 0..200.min(a.nq) {
            std::hint::black_box(index.search(q(qi), K, ef));
        }
        let mut lat = Vec::with_capacity(a.nq);
        let mut cpu = Vec::with_capacity(a.nq);
        let mut hits = 0;
        for qi in 0..a.nq {
            let c = thread_cpu();
            let t = Instant::now();
            let res = index.search(q(qi), K, ef);
            lat.push(t.elapsed());
            cpu.push(thread_cpu() - c);
            hits += recall(&gt[qi], &res);
        }
        lat.sort();
        cpu.sort();
        let mean = lat.iter().map(|d| d.as_secs_f64()).sum::<f64>() / lat.len() as f64 * 1e6;
        // re-rank
        let ef2 = ef.max(FETCH);
        index.set_ef(ef2);
        let mut hits2 = 0;
        for qi in 0..a.nq {
            let c = index.search(q(qi), FETCH, ef2);
            hits2 += recall(&gt[qi], &rerank(&data, qi, &c));
        }
        println!(
            "| {ef} | {:.4} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.4} |",
            hits as f64 / (a.nq * K) as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            mean,
            pct(&cpu, 0.5),
            pct(&cpu, 0.99),
            hits2 as f64 / (a.nq * K) as f64
        );
    }

    // concurrent &self search from 2 threads (thread-safety check + throughput)
    let ef = 64;
    index.set_ef(ef);
    let idx: &dyn Ann = &*index;
    let tq = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let augq = &augq;
            s.spawn(move || {
                for qi in (t..a.nq).step_by(2) {
                    std::hint::black_box(idx.search(&augq[qi * ad..(qi + 1) * ad], K, ef));
                }
            });
        }
    });
    println!(
        "# 2-thread concurrent search ef={ef}: {:.0} QPS",
        a.nq as f64 / tq.elapsed().as_secs_f64()
    );
}
