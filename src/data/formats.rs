//! The interaction-log formats: MovieLens `u.data` and `ratings.dat`, CSV with a header, and
//! RecBole atomic `.inter` files; plus their sibling title files.

use std::collections::HashMap;
use std::path::Path;

use super::records::{DataError, RawRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Decide by file name: `*.inter`, `*.dat`, `*.csv`, otherwise `u.data`-style.
    Auto,
    /// MovieLens-100K `u.data`: tab-separated user, item, rating, timestamp; no header.
    MovielensUData,
    /// MovieLens-1M/10M `ratings.dat`: `user::item::rating::timestamp`.
    MovielensRatingsDat,
    /// CSV with a header naming the columns (userId/user_id/user, movieId/item_id/item, rating, timestamp).
    Csv,
    /// RecBole atomic file: tab-separated with a `name:type` header (`user_id:token` ...).
    RecboleInter,
    /// Apache Parquet with flat columns named as in CSV (user/item ids as integers, strings or
    /// UTF-8 bytes, rating and timestamp optional); uncompressed, snappy or gzip. Errors count
    /// rows from 1.
    Parquet,
}

impl Format {
    pub(crate) fn resolve(self, path: &Path) -> Format {
        if self != Format::Auto {
            return self;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("inter") => Format::RecboleInter,
            Some("dat") => Format::MovielensRatingsDat,
            Some("csv") => Format::Csv,
            Some("parquet") => Format::Parquet,
            _ => Format::MovielensUData,
        }
    }
}

pub(crate) fn dataset_name(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
    // `ml-100k/u.data` and `ml-1m/ratings.dat` are named after their folder.
    if matches!(stem, "u" | "ratings") {
        if let Some(dir) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|s| s.to_str())
        {
            return dir.to_string();
        }
    }
    stem.to_string()
}

fn perr(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Text of a data file, borrowed when it is UTF-8; MovieLens' older files are Latin-1, which
/// maps byte-for-char.
fn decode(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// Where parsed records go, one at a time (the reader interns ids as it goes, so no
/// per-record strings are kept).
pub(crate) type Sink<'s> = dyn FnMut(RawRecord<'_>) -> Result<(), DataError> + 's;

fn field_rating(path: &Path, line: usize, s: &str) -> Result<f32, DataError> {
    s.trim()
        .parse::<f32>()
        .ok()
        .filter(|r| r.is_finite())
        .ok_or_else(|| perr(path, line, format!("rating `{s}` is not a number")))
}

fn field_timestamp(path: &Path, line: usize, s: &str) -> Result<i64, DataError> {
    let s = s.trim();
    s.parse::<i64>()
        .ok()
        .or_else(|| {
            s.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .map(|t| t as i64)
        })
        .ok_or_else(|| perr(path, line, format!("timestamp `{s}` is not a number")))
}

fn field_id<'a>(path: &Path, line: usize, what: &str, s: &'a str) -> Result<&'a str, DataError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(perr(path, line, format!("empty {what} id")));
    }
    Ok(s)
}

/// Parses `bytes` as `format`, handing each record to `sink` in file order.
pub(crate) fn parse(
    path: &Path,
    bytes: &[u8],
    format: Format,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    match format {
        Format::Auto => unreachable!("Format::resolve never returns Auto"),
        Format::MovielensUData => parse_separated(path, bytes, "\t", sink),
        Format::MovielensRatingsDat => parse_separated(path, bytes, "::", sink),
        Format::RecboleInter => parse_inter(path, bytes, sink),
        Format::Csv => parse_csv(path, bytes, sink),
        Format::Parquet => parse_parquet(path, bytes, sink),
    }
}

/// Headerless files with the fixed column order user, item, rating, timestamp.
fn parse_separated(
    path: &Path,
    bytes: &[u8],
    sep: &str,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    let text = decode(bytes);
    let idx = [0, 1, 2, 3];
    let width = 4;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(sep).collect();
        if fields.len() < width {
            return Err(perr(
                path,
                lineno,
                format!(
                    "expected at least {width} `{}`-separated fields, found {}",
                    sep.escape_default(),
                    fields.len()
                ),
            ));
        }
        sink(RawRecord {
            line: lineno,
            user: field_id(path, lineno, "user", fields[idx[0]])?,
            item: field_id(path, lineno, "item", fields[idx[1]])?,
            rating: field_rating(path, lineno, fields[idx[2]])?,
            timestamp: field_timestamp(path, lineno, fields[idx[3]])?,
        })?;
    }
    Ok(())
}

fn parse_inter(path: &Path, bytes: &[u8], sink: &mut Sink<'_>) -> Result<(), DataError> {
    let text = decode(bytes);
    let header = text
        .lines()
        .next()
        .ok_or_else(|| perr(path, 1, "empty file"))?;
    let names: Vec<&str> = header
        .split('\t')
        .map(|h| h.split(':').next().unwrap_or("").trim())
        .collect();
    let find = |candidates: &[&str]| names.iter().position(|n| candidates.contains(n));
    let user =
        find(&["user_id"]).ok_or_else(|| perr(path, 1, "header has no `user_id:token` column"))?;
    let item =
        find(&["item_id"]).ok_or_else(|| perr(path, 1, "header has no `item_id:token` column"))?;
    let rating = find(&["rating"]);
    let timestamp = find(&["timestamp"]);
    parse_with_optional(
        path,
        &text,
        '\t',
        Columns {
            user,
            item,
            rating,
            timestamp,
        },
        sink,
    )
}

fn parse_csv(path: &Path, bytes: &[u8], sink: &mut Sink<'_>) -> Result<(), DataError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| perr(path, 1, format!("cannot read the CSV header: {e}")))?
        .clone();
    let names: Vec<&str> = headers.iter().collect();
    let cols = columns_by_name(&names).map_err(|m| perr(path, 1, format!("CSV header {m}")))?;
    // One record buffer reused for every line.
    let mut rec = csv::StringRecord::new();
    loop {
        // The physical line where the record starts (quoted fields may span lines).
        let mut lineno = reader.position().line() as usize;
        match reader.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(perr(path, lineno, format!("malformed CSV: {e}"))),
        }
        if let Some(p) = rec.position() {
            lineno = p.line() as usize;
        }
        let get = |col: usize, what: &str| {
            rec.get(col)
                .ok_or_else(|| perr(path, lineno, format!("missing {what} field")))
        };
        sink(record(path, lineno, &cols, get)?)?;
    }
    Ok(())
}

/// Columns of a headed file (CSV header, Parquet schema) by name, case, `_` and spaces ignored.
fn columns_by_name(names: &[&str]) -> Result<Columns, String> {
    let norm: Vec<String> = names
        .iter()
        .map(|h| h.trim().to_ascii_lowercase().replace(['_', ' '], ""))
        .collect();
    let find = |candidates: &[&str]| norm.iter().position(|n| candidates.contains(&n.as_str()));
    Ok(Columns {
        user: find(&["userid", "user", "uid"])
            .ok_or("has no user column (userId, user_id, user)")?,
        item: find(&["itemid", "movieid", "item", "iid", "movie"])
            .ok_or("has no item column (itemId, movieId, item_id, item)")?,
        rating: find(&["rating", "score"]),
        timestamp: find(&["timestamp", "time", "ts"]),
    })
}

#[cfg(feature = "train")]
fn parse_parquet(path: &Path, bytes: &[u8], sink: &mut Sink<'_>) -> Result<(), DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let invalid = |message: String| DataError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| invalid(format!("not a readable Parquet file: {e}")))?;
    let fields = reader.metadata().file_metadata().schema().get_fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let cols = columns_by_name(&names).map_err(|m| invalid(format!("Parquet schema {m}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| invalid(format!("cannot read the Parquet rows: {e}")))?;
    for (i, row) in rows.enumerate() {
        let n = i + 1;
        let row = row.map_err(|e| perr(path, n, format!("unreadable Parquet row: {e}")))?;
        let values: Vec<Result<String, String>> =
            row.get_column_iter().map(|(_, f)| field_text(f)).collect();
        let get = |col: usize, what: &str| match values.get(col) {
            Some(Ok(text)) => Ok(text.as_str()),
            Some(Err(bytes)) => Err(perr(
                path,
                n,
                format!("{what} `{bytes}` is not valid UTF-8"),
            )),
            None => Err(perr(path, n, format!("missing {what} field"))),
        };
        sink(record(path, n, &cols, get)?)?;
    }
    Ok(())
}

#[cfg(not(feature = "train"))]
fn parse_parquet(path: &Path, _bytes: &[u8], _sink: &mut Sink<'_>) -> Result<(), DataError> {
    Err(DataError::Invalid {
        path: path.to_path_buf(),
        message: "this build has no Parquet reader (it comes with the `train` feature)".into(),
    })
}

/// A Parquet value as the text the shared field parsers read: null → empty (an empty id or a
/// rating that is not a number), timestamps in seconds. Bytes that are not UTF-8 are an error
/// (the bytes, escaped) rather than replaced: two different invalid ids would otherwise both
/// become `U+FFFD` and merge into one item. Only the columns that are read report it.
#[cfg(feature = "train")]
fn field_text(f: &parquet::record::Field) -> Result<String, String> {
    use parquet::record::Field;
    Ok(match f {
        Field::Null => String::new(),
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => s.to_string(),
            Err(_) => return Err(b.data().escape_ascii().to_string()),
        },
        Field::TimestampMillis(ms) => (ms / 1000).to_string(),
        Field::TimestampMicros(us) => (us / 1_000_000).to_string(),
        other => other.to_string(),
    })
}

/// Where the fields of a headed file are; rating and timestamp are optional (1.0 and 0).
struct Columns {
    user: usize,
    item: usize,
    rating: Option<usize>,
    timestamp: Option<usize>,
}

fn record<'a>(
    path: &Path,
    lineno: usize,
    cols: &Columns,
    get: impl Fn(usize, &str) -> Result<&'a str, DataError>,
) -> Result<RawRecord<'a>, DataError> {
    Ok(RawRecord {
        line: lineno,
        user: field_id(path, lineno, "user", get(cols.user, "user")?)?,
        item: field_id(path, lineno, "item", get(cols.item, "item")?)?,
        rating: match cols.rating {
            Some(c) => field_rating(path, lineno, get(c, "rating")?)?,
            None => 1.0,
        },
        timestamp: match cols.timestamp {
            Some(c) => field_timestamp(path, lineno, get(c, "timestamp")?)?,
            None => 0,
        },
    })
}

fn parse_with_optional(
    path: &Path,
    text: &str,
    sep: char,
    cols: Columns,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    for (i, line) in text.lines().enumerate().skip(1) {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(sep).collect();
        let get = |col: usize, what: &str| {
            fields.get(col).copied().ok_or_else(|| {
                perr(
                    path,
                    lineno,
                    format!("missing {what} field (found {} fields)", fields.len()),
                )
            })
        };
        sink(record(path, lineno, &cols, get)?)?;
    }
    Ok(())
}

/// Item titles from the sibling file of the format, when it exists. A present but malformed
/// title file is an error (it names the file and line), a missing one is not.
pub(crate) fn read_titles(
    path: &Path,
    format: Format,
) -> Result<HashMap<String, String>, DataError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (file, sep) = match format {
        Format::RecboleInter => (path.with_extension("item"), "\t"),
        Format::MovielensUData => (dir.join("u.item"), "|"),
        Format::MovielensRatingsDat => (dir.join("movies.dat"), "::"),
        Format::Csv => (dir.join("movies.csv"), ","),
        Format::Auto | Format::Parquet => return Ok(HashMap::new()),
    };
    let Ok(bytes) = std::fs::read(&file) else {
        return Ok(HashMap::new());
    };
    let mut titles = HashMap::new();
    if format == Format::Csv {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(&bytes[..]);
        for (i, rec) in reader.records().enumerate() {
            let rec = rec.map_err(|e| perr(&file, i + 2, format!("malformed CSV: {e}")))?;
            if let (Some(id), Some(title)) = (rec.get(0), rec.get(1)) {
                titles.insert(id.trim().to_string(), title.trim().to_string());
            }
        }
        return Ok(titles);
    }
    let text = decode(&bytes);
    let (id_col, title_col, skip) = if format == Format::RecboleInter {
        let header: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or("")
            .split('\t')
            .map(|h| h.split(':').next().unwrap_or(""))
            .collect();
        let id = header.iter().position(|h| *h == "item_id");
        let title = header.iter().position(|h| h.contains("title"));
        match (id, title) {
            (Some(i), Some(t)) => (i, t, 1),
            _ => return Ok(titles),
        }
    } else {
        (0, 1, 0)
    };
    for (i, line) in text.lines().enumerate().skip(skip) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(sep).collect();
        match (fields.get(id_col), fields.get(title_col)) {
            (Some(id), Some(title)) => {
                titles.insert(id.trim().to_string(), title.trim().to_string());
            }
            _ => return Err(perr(&file, i + 1, "expected an item id and a title")),
        }
    }
    Ok(titles)
}

#[cfg(test)]
mod tests {
    use super::super::read_interactions;
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_u_data_with_titles() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "u.data",
            "1\t10\t5\t100\n2\t10\t3\t50\n1\t11\t4\t90\n",
        );
        write(
            d.path(),
            "u.item",
            "10|Toy Story (1995)|01-Jan-1995\n11|GoldenEye (1995)|x\n",
        );
        let data = read_interactions(&p, Format::Auto, None).unwrap();
        assert_eq!(data.n_users(), 2);
        assert_eq!(data.n_items(), 2);
        assert_eq!(data.records[2].item, 1);
        assert_eq!(data.records[1].timestamp, 50);
        assert_eq!(data.item_titles[0].as_deref(), Some("Toy Story (1995)"));
        let thresholded = read_interactions(&p, Format::Auto, Some(4.0)).unwrap();
        assert_eq!(thresholded.records.len(), 2);
    }

    #[test]
    fn reads_ratings_dat() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "ratings.dat",
            "1::1193::5::978300760\n1::661::3::978302109\n",
        );
        let data = read_interactions(&p, Format::Auto, None).unwrap();
        assert_eq!(data.records.len(), 2);
        assert_eq!(data.item_ids, vec!["1193", "661"]);
        assert_eq!(data.records[0].rating, 5.0);
    }

    #[test]
    fn reads_csv_by_header_names_in_any_order() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "r.csv",
            "timestamp,movieId,userId,rating\n7,m1,u1,4.5\n8,\"m,2\",u2,1\n",
        );
        let data = read_interactions(&p, Format::Auto, None).unwrap();
        assert_eq!(data.user_ids, vec!["u1", "u2"]);
        assert_eq!(data.item_ids, vec!["m1", "m,2"]);
        assert_eq!(data.records[0].rating, 4.5);
        assert_eq!(data.records[1].timestamp, 8);
    }

    #[test]
    fn reads_recbole_inter_with_float_timestamps_and_item_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "x.inter",
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949.0\n",
        );
        write(
            d.path(),
            "x.item",
            "item_id:token\tmovie_title:token_seq\n242\tKolya\n",
        );
        let data = read_interactions(&p, Format::Auto, None).unwrap();
        assert_eq!(data.name, "x");
        assert_eq!(data.records[0].timestamp, 881250949);
        assert_eq!(data.item_titles[0].as_deref(), Some("Kolya"));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("u.data", "1\t2\t3\t4\n1\t2\tfive\t4\n", "line 2", "rating"),
            ("u.data", "1\t2\t3\n", "line 1", "fields"),
            (
                "ratings.dat",
                "1::2::3::4\n\n1::2::3::x\n",
                "line 3",
                "timestamp",
            ),
            (
                "r.csv",
                "userId,movieId,rating\nu,m,1\nu,,2\n",
                "line 3",
                "empty item",
            ),
            ("r.csv", "who,what\n1,2\n", "line 1", "user column"),
            (
                "x.inter",
                "user_id:token\titem_id:token\n1\t2\n3\n",
                "line 3",
                "missing item",
            ),
            (
                "y.inter",
                "user:token\titem_id:token\n",
                "line 1",
                "user_id",
            ),
            // Bundles store ids one per line, tab-separated.
            (
                "tabs.csv",
                "user,item\nu1,i1\nu2,\"i\t2\"\n",
                "line 3",
                "tab or line break",
            ),
            (
                "lines.csv",
                "user,item\n\"u\n1\",i1\n",
                "line 2",
                "tab or line break",
            ),
        ];
        for (name, text, line, what) in cases {
            let p = write(d.path(), name, text);
            let err = read_interactions(&p, Format::Auto, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
            assert!(err.contains(line) && err.contains(what), "{name}: {err}");
        }
    }

    /// A Parquet file of `(user INT64, item UTF8, rating DOUBLE?, ts INT64)` rows, written with
    /// the parquet crate's low-level writer (snappy); `None` ratings are nulls.
    #[cfg(feature = "train")]
    fn write_parquet(path: &Path, rows: &[(i64, &str, Option<f64>, i64)], schema: &str) {
        let rows: Vec<_> = rows
            .iter()
            .map(|&(u, i, r, t)| (u, i.as_bytes(), r, t))
            .collect();
        write_parquet_bytes(path, &rows, schema);
    }

    /// [`write_parquet`] with the item ids as raw bytes (for a `BYTE_ARRAY` column without the
    /// UTF8 annotation).
    #[cfg(feature = "train")]
    fn write_parquet_bytes(path: &Path, rows: &[(i64, &[u8], Option<f64>, i64)], schema: &str) {
        use parquet::basic::Compression;
        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;

        let schema = std::sync::Arc::new(parse_message_type(schema).unwrap());
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut w = SerializedFileWriter::new(file, schema, std::sync::Arc::new(props)).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let users: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let items: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(r.1)).collect();
        let ratings: Vec<f64> = rows.iter().filter_map(|r| r.2).collect();
        let defs: Vec<i16> = rows.iter().map(|r| i16::from(r.2.is_some())).collect();
        let ts: Vec<i64> = rows.iter().map(|r| r.3).collect();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(&users, None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&items, None, None)
            .unwrap();
        col.close().unwrap();
        if let Some(mut col) = rg.next_column().unwrap() {
            col.typed::<DoubleType>()
                .write_batch(&ratings, Some(&defs), None)
                .unwrap();
            col.close().unwrap();
        }
        if let Some(mut col) = rg.next_column().unwrap() {
            col.typed::<Int64Type>()
                .write_batch(&ts, None, None)
                .unwrap();
            col.close().unwrap();
        }
        rg.close().unwrap();
        w.close().unwrap();
    }

    #[cfg(feature = "train")]
    const SCHEMA: &str = "message m { REQUIRED INT64 userId; REQUIRED BYTE_ARRAY item_id (UTF8); \
        OPTIONAL DOUBLE rating; REQUIRED INT64 timestamp; }";

    #[cfg(feature = "train")]
    #[test]
    fn reads_parquet_by_column_names() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("logs.parquet");
        write_parquet(
            &p,
            &[
                (7, "i1", Some(4.0), 100),
                (7, "i2", Some(2.5), 101),
                (9, "i1", Some(5.0), 99),
            ],
            SCHEMA,
        );
        let data = read_interactions(&p, Format::Auto, Some(3.0)).unwrap();
        assert_eq!(data.name, "logs");
        assert_eq!(data.user_ids, ["7", "9"]);
        assert_eq!(data.item_ids, ["i1"]);
        assert_eq!(data.records.len(), 2);
        assert_eq!(
            (data.records[0].rating, data.records[0].timestamp),
            (4.0, 100)
        );
        // The same rows as CSV give the same interactions.
        let c = write(
            d.path(),
            "same.csv",
            "userId,item_id,rating,timestamp\n7,i1,4,100\n7,i2,2.5,101\n9,i1,5,99\n",
        );
        let csv = read_interactions(&c, Format::Auto, Some(3.0)).unwrap();
        assert_eq!(csv.records, data.records);
        assert_eq!((csv.user_ids, csv.item_ids), (data.user_ids, data.item_ids));
    }

    #[cfg(feature = "train")]
    #[test]
    fn malformed_parquet_names_file_and_row() {
        let d = tempfile::tempdir().unwrap();
        // Not Parquet at all, and a Parquet file cut short.
        let garbage = write(d.path(), "g.parquet", "user,item\n1,2\n");
        let good = d.path().join("good.parquet");
        write_parquet(&good, &[(1, "a", Some(1.0), 1)], SCHEMA);
        let bytes = std::fs::read(&good).unwrap();
        let cut = d.path().join("cut.parquet");
        std::fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
        for p in [&garbage, &cut] {
            let err = read_interactions(p, Format::Auto, None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(p.to_str().unwrap()) && err.contains("not a readable Parquet file"),
                "{err}"
            );
        }
        // No item column.
        let no_item = d.path().join("no-item.parquet");
        write_parquet(
            &no_item,
            &[(1, "a", None, 1)],
            "message m { REQUIRED INT64 user; REQUIRED BYTE_ARRAY title (UTF8); }",
        );
        let err = read_interactions(&no_item, Format::Auto, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no-item.parquet") && err.contains("no item column"),
            "{err}"
        );
        // A null rating in row 2.
        let null = d.path().join("null.parquet");
        write_parquet(&null, &[(1, "a", Some(1.0), 1), (1, "b", None, 2)], SCHEMA);
        let err = read_interactions(&null, Format::Auto, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("null.parquet, line 2") && err.contains("rating"),
            "{err}"
        );
    }

    /// Byte ids that are not UTF-8 are refused with the row: read lossily, `0xff` and `0xfe`
    /// would both become U+FFFD and merge two items into one.
    #[cfg(feature = "train")]
    #[test]
    fn parquet_byte_ids_that_are_not_utf8_are_refused_with_the_row() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bytes.parquet");
        let schema = "message m { REQUIRED INT64 user; REQUIRED BYTE_ARRAY item; \
            OPTIONAL DOUBLE rating; REQUIRED INT64 ts; }";
        let ok: &[(i64, &[u8], Option<f64>, i64)] = &[
            (1, b"a", Some(1.0), 1),
            (1, "\u{e9}".as_bytes(), Some(1.0), 2),
        ];
        write_parquet_bytes(&p, ok, schema);
        let data = read_interactions(&p, Format::Auto, None).unwrap();
        assert_eq!(data.item_ids, ["a", "\u{e9}"]);

        let bad: &[(i64, &[u8], Option<f64>, i64)] = &[
            (1, b"a", Some(1.0), 1),
            (1, b"x\xff", Some(1.0), 2),
            (2, b"x\xfe", Some(1.0), 3),
        ];
        write_parquet_bytes(&p, bad, schema);
        let err = read_interactions(&p, Format::Auto, None)
            .map(|d| d.item_ids)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bytes.parquet, line 2") && err.contains("not valid UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn empty_after_filter_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "u.data", "1\t2\t1\t4\n");
        let err = read_interactions(&p, Format::Auto, Some(4.0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no interactions"), "{err}");
    }
}
