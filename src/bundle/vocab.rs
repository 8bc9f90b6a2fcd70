//! `items.tsv` (vocabulary rows) and `users.tsv` (known users' recent histories).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use super::error::BundleError;

/// Id → row maps are looked up ~50 times per request with client-sent ids; foldhash (seeded per
/// process) costs a fraction of std's SipHash there. Only the bundle's own ids are inserted, so
/// hash flooding by clients is not possible.
type IdMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Token of vocabulary row 0, the padding row.
pub const PAD_TOKEN: &str = "[PAD]";
const ITEMS_HEADER: &str = "row\titem_id\ttitle";
const USERS_HEADER: &str = "user_id\thistory_rows";

/// Vocabulary row of item index `item` (training data numbers items from 0; row 0 is the
/// padding row, so item i is row i + 1). The one place that offset is written.
pub const fn item_row(item: u32) -> u32 {
    item + 1
}

/// Item index of vocabulary row `row` (≥ 1): the inverse of [`item_row`].
pub const fn row_item(row: u32) -> u32 {
    row - 1
}

/// Item indices → vocabulary rows.
pub fn item_rows(items: &[u32]) -> Vec<u32> {
    items.iter().map(|&i| item_row(i)).collect()
}

/// A table file of a bundle, for [`decoded_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFile {
    /// `items.tsv`, parsed into an [`ItemVocab`].
    Items,
    /// `users.tsv`, parsed into [`UserHistories`] keeping `max_history` rows per user.
    Users { max_history: usize },
}

/// What a heap allocation of `len` bytes may take: mimalloc's size classes are at most 25 %
/// apart, and glibc's smallest chunk is 32 bytes (a 1-byte id costs 32).
const fn alloc_size(len: u64) -> u64 {
    len + len.div_ceil(4) + 32
}

/// Bytes per entry of a hashbrown table of `entry`-byte entries: a table fills at most 7/8 of
/// its buckets, a power of two, so it may hold 16/7 buckets per entry, each an entry and a
/// control byte.
const fn table_slot(entry: u64) -> u64 {
    (entry + 1) * 16 / 7
}

/// What a file's tables cost whatever their rows: a small table's minimum of 4 or 8 buckets
/// and 16 more control bytes, and the headers of the vectors and tables.
const FILE_BASE: u64 = 1024;

/// Upper estimate of the memory the text of `items.tsv` or `users.tsv` decodes to (64-bit),
/// counted on the text without allocating: the bundle caps bound this rather than the file
/// size, since a short row costs over 10× more parsed than on disk. It bounds the peak of parsing
/// too (the temporaries of [`ItemVocab::parse`] are smaller than the index built after them),
/// under glibc and mimalloc alike (`tests/bundle_memory.rs` measures it). Each non-empty line
/// but the header is a row; `FILE_BASE` is added once.
///
/// - `items.tsv`, per row: 123 bytes + 2 allocations of the id + one of the title (if any),
///   each `alloc_size`. The 123 are the row's `String` in `ids` (24), its `Option<String>`
///   in `titles` (24) and its slot in the id → row table (`table_slot` of a 32-byte
///   `(String, u32)`: 75); the id is held twice, as row and as key.
/// - `users.tsv`, per row: 112 bytes (the user's slot: `table_slot` of a 48-byte
///   `(String, Vec<u32>)`) + an allocation of the user id + one of 4 bytes per history row
///   kept. History rows are the commas + 1 (empty ones are skipped when parsed, so this may
///   count more), at most `max_history`; a repeated user id is counted once per line.
pub fn decoded_size(file: TableFile, text: &str) -> u64 {
    let per_row = |line: &str| -> u64 {
        match file {
            TableFile::Items => {
                let mut cols = line.splitn(3, '\t').skip(1);
                let id = cols.next().unwrap_or("").len() as u64;
                let title = cols.next().unwrap_or("").len() as u64;
                let title = if title == 0 { 0 } else { alloc_size(title) };
                2 * 24 + table_slot(32) + 2 * alloc_size(id) + title
            }
            TableFile::Users { max_history } => {
                let (user, history) = line.split_once('\t').unwrap_or((line, ""));
                let rows = history.bytes().filter(|&b| b == b',').count() + 1;
                let kept = rows.min(max_history) as u64;
                table_slot(48) + alloc_size(user.len() as u64) + alloc_size(4 * kept)
            }
        }
    };
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(per_row)
        .fold(FILE_BASE, u64::saturating_add)
}

/// Vocabulary: row index ↔ external item id (+ optional title). Row 0 is padding.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemVocab {
    ids: Vec<String>,
    titles: Vec<Option<String>>,
    index: IdMap<u32>,
}

impl ItemVocab {
    /// Builds a vocabulary from the items of rows 1..; row 0 (`[PAD]`) is added here.
    pub fn new(items: Vec<(String, Option<String>)>) -> Self {
        let mut ids = Vec::with_capacity(items.len() + 1);
        let mut titles = Vec::with_capacity(items.len() + 1);
        ids.push(PAD_TOKEN.to_string());
        titles.push(None);
        for (id, title) in items {
            ids.push(id);
            titles.push(title);
        }
        let index = ids
            .iter()
            .enumerate()
            .skip(1)
            .map(|(row, id)| (id.clone(), row as u32))
            .collect();
        ItemVocab { ids, titles, index }
    }

    /// Rows including the padding row.
    pub fn n_rows(&self) -> usize {
        self.ids.len()
    }

    /// Vocabulary row of an external item id; `None` for unknown ids and for `[PAD]`.
    pub fn row(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn id(&self, row: usize) -> &str {
        &self.ids[row]
    }

    pub fn title(&self, row: usize) -> Option<&str> {
        self.titles[row].as_deref()
    }

    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses the text of `items.tsv` (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, BundleError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim_end() == ITEMS_HEADER => {}
            _ => {
                return Err(BundleError::parse(
                    path,
                    1,
                    format!("expected header `{ITEMS_HEADER}`"),
                ))
            }
        }
        let mut items = Vec::new();
        for (i, line) in lines {
            let lineno = i + 1;
            if line.is_empty() {
                continue;
            }
            let mut cols = line.splitn(3, '\t');
            let row: usize = cols.next().and_then(|r| r.parse().ok()).ok_or_else(|| {
                BundleError::parse(path, lineno, "row index is not a number".into())
            })?;
            let id = cols
                .next()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| BundleError::parse(path, lineno, "missing item id".into()))?;
            let title = cols.next().filter(|t| !t.is_empty()).map(str::to_string);
            if row != items.len() {
                return Err(BundleError::parse(
                    path,
                    lineno,
                    format!("row {row} out of order (expected {})", items.len()),
                ));
            }
            if row == 0 && id != PAD_TOKEN {
                return Err(BundleError::parse(
                    path,
                    lineno,
                    format!("row 0 must be {PAD_TOKEN}"),
                ));
            }
            items.push((id.to_string(), title));
        }
        if items.is_empty() {
            return Err(BundleError::parse(path, 1, "no rows".into()));
        }
        let vocab = ItemVocab::new(items.into_iter().skip(1).collect());
        if vocab.index.len() + 1 != vocab.ids.len() {
            return Err(BundleError::parse(path, 0, "duplicate item ids".into()));
        }
        Ok(vocab)
    }

    pub fn to_tsv(&self) -> String {
        let mut out = String::with_capacity(self.ids.len() * 16);
        out.push_str(ITEMS_HEADER);
        out.push('\n');
        for (row, (id, title)) in self.ids.iter().zip(&self.titles).enumerate() {
            let title = title.as_deref().unwrap_or("");
            let _ = writeln!(out, "{row}\t{}\t{}", clean(id), clean(title));
        }
        out
    }
}

/// Known users → their most recent history rows (oldest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserHistories {
    map: IdMap<Vec<u32>>,
}

impl UserHistories {
    pub fn new(map: HashMap<String, Vec<u32>>) -> Self {
        UserHistories {
            map: map.into_iter().collect(),
        }
    }

    pub fn get(&self, user: &str) -> Option<&[u32]> {
        self.map.get(user).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Reads `users.tsv`, checking every row against `n_rows`.
    pub fn read(path: &Path, n_rows: usize) -> Result<Self, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io(path, e))?;
        Self::parse(path, &text, n_rows, usize::MAX)
    }

    /// Parses the text of `users.tsv`, checking every row against `n_rows` and keeping only the
    /// `max_history` most recent rows of each user (what a request may send as a history).
    pub fn parse(
        path: &Path,
        text: &str,
        n_rows: usize,
        max_history: usize,
    ) -> Result<Self, BundleError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim_end() == USERS_HEADER => {}
            _ => {
                return Err(BundleError::parse(
                    path,
                    1,
                    format!("expected header `{USERS_HEADER}`"),
                ))
            }
        }
        // Sized once from the line count: growing would hold the old and the new table at
        // once, more than `decoded_size` counts.
        let users = text.lines().skip(1).filter(|l| !l.is_empty()).count();
        let mut map = IdMap::with_capacity_and_hasher(users, Default::default());
        for (i, line) in lines {
            let lineno = i + 1;
            if line.is_empty() {
                continue;
            }
            let (user, rows) = line.split_once('\t').ok_or_else(|| {
                BundleError::parse(path, lineno, "expected 2 tab-separated columns".into())
            })?;
            let rows = rows
                .split(',')
                .filter(|r| !r.is_empty())
                .map(|r| match r.parse::<u32>() {
                    Ok(v) if (v as usize) < n_rows && v > 0 => Ok(v),
                    _ => Err(BundleError::parse(
                        path,
                        lineno,
                        format!("bad history row `{r}`"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut rows = rows;
            rows.drain(..rows.len().saturating_sub(max_history));
            // The capacity of the rows read (up to twice their number, from growing) would
            // outlive the rows cut and is not what `decoded_size` counts.
            rows.shrink_to_fit();
            map.insert(user.to_string(), rows);
        }
        Ok(UserHistories { map })
    }

    pub fn to_tsv(&self) -> String {
        let mut users: Vec<_> = self.map.iter().collect();
        users.sort();
        let mut out = String::new();
        out.push_str(USERS_HEADER);
        out.push('\n');
        for (user, rows) in users {
            let rows: Vec<String> = rows.iter().map(u32::to_string).collect();
            let _ = writeln!(out, "{}\t{}", clean(user), rows.join(","));
        }
        out
    }
}

/// Tabs and newlines would break the TSV framing.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_lookup() {
        let v = ItemVocab::new(vec![
            ("a".into(), Some("Alpha\tA".into())),
            ("b".into(), None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("items.tsv");
        std::fs::write(&p, v.to_tsv()).unwrap();
        let back = ItemVocab::read(&p).unwrap();
        assert_eq!(back.n_rows(), 3);
        assert_eq!(back.row("b"), Some(2));
        assert_eq!(back.row(PAD_TOKEN), None);
        assert_eq!(back.title(1), Some("Alpha A"));
        assert_eq!(back.title(2), None);
    }

    #[test]
    fn items_reject_out_of_order_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("items.tsv");
        std::fs::write(&p, "row\titem_id\ttitle\n0\t[PAD]\t\n2\tx\t\n").unwrap();
        let err = ItemVocab::read(&p).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn users_reject_rows_outside_vocab() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.tsv");
        std::fs::write(&p, "user_id\thistory_rows\nu1\t1,2\nu2\t1,9\n").unwrap();
        let err = UserHistories::read(&p, 3).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains('9'), "{err}");
        std::fs::write(&p, "user_id\thistory_rows\nu1\t1,2\n").unwrap();
        assert_eq!(
            UserHistories::read(&p, 3).unwrap().get("u1"),
            Some(&[1u32, 2][..])
        );
        let capped = UserHistories::parse(&p, "user_id\thistory_rows\nu1\t1,2,1,2\n", 3, 3);
        assert_eq!(capped.unwrap().get("u1"), Some(&[2u32, 1, 2][..]));
    }
}
