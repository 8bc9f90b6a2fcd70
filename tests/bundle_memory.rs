//! `bundle::decoded_size` is what the `items.tsv` / `users.tsv` caps compare with, so it must
//! not undercount: the peak memory of parsing each file, measured here with a counting
//! allocator that charges every allocation what glibc's malloc takes for it, stays under it for
//! adversarial (many short rows) and realistic files alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use distilrec::bundle::{decoded_size, ItemVocab, TableFile, UserHistories};

struct Counting;

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

/// glibc's chunk for a request: 8 bytes of header, rounded up to 16, at least 32.
fn chunk(size: usize) -> u64 {
    ((size as u64 + 8 + 15) & !15).max(32)
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(chunk(layout.size()), Ordering::Relaxed) + chunk(layout.size());
        PEAK.fetch_max(live, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak bytes `f` allocates over what was live before it, including what it returns.
fn peak_of<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (PEAK.load(Ordering::Relaxed) - before, out)
}

fn items_tsv(n: usize, id: impl Fn(usize) -> String, title: impl Fn(usize) -> String) -> String {
    let mut t = String::from("row\titem_id\ttitle\n0\t[PAD]\t\n");
    for i in 1..=n {
        t.push_str(&format!("{i}\t{}\t{}\n", id(i), title(i)));
    }
    t
}

fn users_tsv(n: usize, history: impl Fn(usize) -> String) -> String {
    let mut t = String::from("user_id\thistory_rows\n");
    for u in 0..n {
        t.push_str(&format!("u{u}\t{}\n", history(u)));
    }
    t
}

/// One test: the counters are global, so nothing else may allocate while it measures.
#[test]
fn decoded_size_bounds_the_peak_of_parsing() {
    let path = Path::new("t.tsv");
    let items = [
        // 7/8 of 2^17, + 1: the id table has its most buckets per entry (2^18).
        (
            "short rows",
            items_tsv(114_689, |i| i.to_string(), |_| String::new()),
        ),
        // 2^17 + 1 rows with the padding row: the rows read have their most spare capacity.
        (
            "short rows",
            items_tsv(131_072, |i| i.to_string(), |_| String::new()),
        ),
        (
            "titles",
            items_tsv(
                100_000,
                |i| format!("item_{i}"),
                |i| format!("A Title of Some Length, Part {i} (1995)"),
            ),
        ),
        (
            "one item",
            items_tsv(1, |i| i.to_string(), |_| String::new()),
        ),
        (
            "1000 items",
            items_tsv(1000, |i| i.to_string(), |_| String::new()),
        ),
    ];
    for (what, text) in &items {
        let estimate = decoded_size(TableFile::Items, text);
        let (peak, vocab) = peak_of(|| ItemVocab::parse(path, text).unwrap());
        eprintln!(
            "items, {what}: file {} B, peak {peak} B, estimate {estimate} B",
            text.len()
        );
        assert!(peak <= estimate, "items, {what}: {peak} > {estimate}");
        // The vocabulary is compact: past its text, a few dozen bytes per row (offsets and an
        // index slot), not a string allocation per id, title and index key.
        let rows = vocab.n_rows() as u64;
        assert!(
            peak <= text.len() as u64 + 40 * rows + 4096,
            "items, {what}: {peak} B for {rows} rows of {} B of text",
            text.len()
        );
        drop(vocab);
    }
    let history = |n: usize| {
        move |u: usize| {
            (0..n)
                .map(|i| ((u + i) % 1600 + 1).to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let users = [
        ("one row each", users_tsv(114_689, history(1)), usize::MAX),
        ("long histories", users_tsv(5_000, history(300)), usize::MAX),
        ("cut histories", users_tsv(5_000, history(300)), 50),
        ("one user", users_tsv(1, history(3)), usize::MAX),
        (
            "blank lines",
            format!("user_id\thistory_rows\n{}", "\n".repeat(100_000)),
            10,
        ),
    ];
    for (what, text, max_history) in &users {
        let estimate = decoded_size(
            TableFile::Users {
                max_history: *max_history,
            },
            text,
        );
        let (peak, histories) =
            peak_of(|| UserHistories::parse(path, text, 1700, *max_history).unwrap());
        eprintln!(
            "users, {what}: file {} B, peak {peak} B, estimate {estimate} B",
            text.len()
        );
        assert!(peak <= estimate, "users, {what}: {peak} > {estimate}");
        drop(histories);
    }
}
