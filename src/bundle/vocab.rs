//! `items.tsv` (vocabulary rows) and `users.tsv` (known users' recent histories).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher as _;
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
    ((entry + 1) * 16).div_ceil(7)
}

/// What a file's tables cost whatever their rows: a small table's minimum of 4 or 8 buckets
/// and 16 more control bytes, and the headers of the vectors and tables.
const FILE_BASE: u64 = 1024;

/// Upper estimate of the memory the text of `items.tsv` or `users.tsv` decodes to (64-bit),
/// counted on the text without allocating: the bundle caps bound this rather than the file
/// size, since a short row can cost several times more parsed than on disk. It bounds the peak
/// of parsing too (parsing sizes every buffer once), under glibc and mimalloc alike
/// (`tests/bundle_memory.rs` measures it). Each non-empty line but the header is a row;
/// `FILE_BASE` is added once.
///
/// - `items.tsv`: per row, 28 bytes (the ends of its id and title, 8 each, and its slot in the
///   id → row table: `table_slot` of a 4-byte row number) and the bytes of its id and title,
///   held once each in two shared buffers (`alloc_size` of each buffer's total).
/// - `users.tsv`, per row: 112 bytes (the user's slot: `table_slot` of a 48-byte
///   `(String, Vec<u32>)`) + an allocation of the user id + one of 4 bytes per history row
///   kept. History rows are the commas + 1 (empty ones are skipped when parsed, so this may
///   count more), at most `max_history`; a repeated user id is counted once per line.
pub fn decoded_size(file: TableFile, text: &str) -> u64 {
    let rows = text.lines().skip(1).filter(|l| !l.is_empty());
    match file {
        TableFile::Items => {
            let (mut fixed, mut ids, mut titles) = (FILE_BASE, 0u64, 0u64);
            for line in rows {
                let mut cols = line.splitn(3, '\t').skip(1);
                ids = ids.saturating_add(cols.next().unwrap_or("").len() as u64);
                titles = titles.saturating_add(cols.next().unwrap_or("").len() as u64);
                fixed = fixed.saturating_add(2 * 8 + table_slot(4));
            }
            fixed
                .saturating_add(alloc_size(ids))
                .saturating_add(alloc_size(titles))
        }
        TableFile::Users { max_history } => rows
            .map(|line| {
                let (user, history) = line.split_once('\t').unwrap_or((line, ""));
                let rows = history.bytes().filter(|&b| b == b',').count() + 1;
                let kept = rows.min(max_history) as u64;
                table_slot(48) + alloc_size(user.len() as u64) + alloc_size(4 * kept)
            })
            .fold(FILE_BASE, u64::saturating_add),
    }
}

/// Vocabulary: row index ↔ external item id (+ optional title). Row 0 is padding.
///
/// Ids and titles live in one buffer each, found by their end offsets, and the id → row index
/// stores row numbers only (the key is read back from the buffer): at most 28 bytes per row
/// beyond the text itself. A `String` per id, title and index key cost several times that: the
/// server on a 1M-item catalogue held 99 MB more (`loadtest/engine-memory.sh`, `exact`).
#[derive(Clone)]
pub struct ItemVocab {
    id_text: String,
    /// End of row r's id in `id_text` (its start is the previous row's end).
    id_ends: Vec<usize>,
    title_text: String,
    /// End of row r's title in `title_text`; an empty title is no title.
    title_ends: Vec<usize>,
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for ItemVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemVocab")
            .field("n_rows", &self.n_rows())
            .finish_non_exhaustive()
    }
}

impl PartialEq for ItemVocab {
    fn eq(&self, other: &Self) -> bool {
        self.n_rows() == other.n_rows()
            && (0..self.n_rows())
                .all(|r| self.id(r) == other.id(r) && self.title(r) == other.title(r))
    }
}

/// Rows and text bytes of a vocabulary, to size its buffers once.
#[derive(Default)]
struct VocabSize {
    rows: usize,
    id_bytes: usize,
    title_bytes: usize,
}

impl ItemVocab {
    /// Builds a vocabulary from the items of rows 1..; row 0 (`[PAD]`) is added here. An id
    /// given twice maps to its last row.
    pub fn new(items: Vec<(String, Option<String>)>) -> Self {
        let size = VocabSize {
            rows: items.len() + 1,
            id_bytes: PAD_TOKEN.len() + items.iter().map(|(id, _)| id.len()).sum::<usize>(),
            title_bytes: items
                .iter()
                .map(|(_, t)| t.as_deref().map_or(0, str::len))
                .sum(),
        };
        let mut vocab = ItemVocab::with_size(&size);
        for (id, title) in &items {
            vocab.push(id, title.as_deref().unwrap_or(""));
        }
        vocab
    }

    /// The padding row alone, with room for `size`.
    fn with_size(size: &VocabSize) -> Self {
        let mut vocab = ItemVocab {
            id_text: String::with_capacity(size.id_bytes),
            id_ends: Vec::with_capacity(size.rows),
            title_text: String::with_capacity(size.title_bytes),
            title_ends: Vec::with_capacity(size.rows),
            index: hashbrown::HashTable::with_capacity(size.rows.saturating_sub(1)),
            hasher: Default::default(),
        };
        vocab.id_text.push_str(PAD_TOKEN);
        vocab.id_ends.push(vocab.id_text.len());
        vocab.title_ends.push(0);
        vocab
    }

    /// Appends a row; returns whether its id was new (a repeated id now maps to this row).
    fn push(&mut self, id: &str, title: &str) -> bool {
        let row = self.id_ends.len() as u32;
        self.id_text.push_str(id);
        self.id_ends.push(self.id_text.len());
        self.title_text.push_str(title);
        self.title_ends.push(self.title_text.len());
        let hash = self.hasher.hash_one(id);
        let (id_text, id_ends, hasher) = (&self.id_text, &self.id_ends, &self.hasher);
        let key = |r: u32| &id_text[span(id_ends, r as usize)];
        match self
            .index
            .entry(hash, |&r| key(r) == id, |&r| hasher.hash_one(key(r)))
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                *e.get_mut() = row;
                false
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(row);
                true
            }
        }
    }

    /// Rows including the padding row.
    pub fn n_rows(&self) -> usize {
        self.id_ends.len()
    }

    /// Vocabulary row of an external item id; `None` for unknown ids and for `[PAD]`.
    pub fn row(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&r| self.id(r as usize) == id)
            .copied()
    }

    pub fn id(&self, row: usize) -> &str {
        &self.id_text[span(&self.id_ends, row)]
    }

    pub fn title(&self, row: usize) -> Option<&str> {
        Some(&self.title_text[span(&self.title_ends, row)]).filter(|t| !t.is_empty())
    }

    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses the text of `items.tsv` (`path` names it in errors). Checks every row first, so
    /// the buffers are allocated once at their final size.
    pub fn parse(path: &Path, text: &str) -> Result<Self, BundleError> {
        let mut size = VocabSize::default();
        Self::for_each_row(path, text, |_, id, title| {
            size.rows += 1;
            size.id_bytes += id.len();
            size.title_bytes += title.len();
        })?;
        let mut vocab = ItemVocab::with_size(&size);
        let mut duplicate = None;
        Self::for_each_row(path, text, |lineno, id, title| {
            if lineno > 0 && !vocab.push(id, title) && duplicate.is_none() {
                duplicate = Some((lineno, id.to_string()));
            }
        })?;
        if let Some((lineno, id)) = duplicate {
            return Err(BundleError::parse(
                path,
                lineno,
                format!("duplicate item id `{id}`"),
            ));
        }
        Ok(vocab)
    }

    /// Calls `f(line number, id, title)` for each row, in order, after checking it; the
    /// padding row comes with line number 0. Stops at the first malformed row.
    fn for_each_row(
        path: &Path,
        text: &str,
        mut f: impl FnMut(usize, &str, &str),
    ) -> Result<(), BundleError> {
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
        let mut expected = 0usize;
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
            let title = cols.next().unwrap_or("");
            if row != expected {
                return Err(BundleError::parse(
                    path,
                    lineno,
                    format!("row {row} out of order (expected {expected})"),
                ));
            }
            if row == 0 && id != PAD_TOKEN {
                return Err(BundleError::parse(
                    path,
                    lineno,
                    format!("row 0 must be {PAD_TOKEN}"),
                ));
            }
            if row > u32::MAX as usize {
                return Err(BundleError::parse(path, lineno, "too many rows".into()));
            }
            f(if row == 0 { 0 } else { lineno }, id, title);
            expected += 1;
        }
        if expected == 0 {
            return Err(BundleError::parse(path, 1, "no rows".into()));
        }
        Ok(())
    }

    pub fn to_tsv(&self) -> String {
        let mut out = String::with_capacity(self.n_rows() * 16);
        out.push_str(ITEMS_HEADER);
        out.push('\n');
        for row in 0..self.n_rows() {
            let title = self.title(row).unwrap_or("");
            let _ = writeln!(out, "{row}\t{}\t{}", clean(self.id(row)), clean(title));
        }
        out
    }
}

/// Byte range of entry `i` of a buffer whose entries end at `ends`.
fn span(ends: &[usize], i: usize) -> std::ops::Range<usize> {
    i.checked_sub(1).map_or(0, |p| ends[p])..ends[i]
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
    fn items_reject_a_repeated_id_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("items.tsv");
        let text = "row\titem_id\ttitle\n0\t[PAD]\t\n1\tx\t\n2\ty\tY\n3\tx\t\n";
        std::fs::write(&p, text).unwrap();
        let err = ItemVocab::read(&p).unwrap_err().to_string();
        assert!(err.contains("line 5") && err.contains("`x`"), "{err}");
        // Built in code, a repeated id maps to its last row, as a map insert would.
        let v = ItemVocab::new(vec![("x".into(), None), ("x".into(), Some("X".into()))]);
        assert_eq!(
            (v.n_rows(), v.row("x"), v.title(2)),
            (3, Some(2), Some("X"))
        );
        assert_eq!((v.id(0), v.id(1), v.row("")), (PAD_TOKEN, "x", None));
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
