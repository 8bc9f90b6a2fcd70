//! The model bundle: `models/<name>/<version>/{model.onnx, manifest.json, items.tsv, users.tsv?}`.
//!
//! This module owns the on-disk format only: reading with integrity checks, atomic writing, and
//! listing the versions in a repository. It knows nothing about ONNX runtimes or HTTP.
//! The contract is documented in `docs/model-bundle.md`.

mod error;
pub mod index;
mod manifest;
mod read;
mod vocab;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use manifest::{
    AnnIndexFile, Architecture, DatasetInfo, ItemSide, Manifest, Role, SplitInfo, TensorSpec,
    FORMAT_TWO_TOWER, FORMAT_VERSION, INPUT_NAME, ITEM_MATRIX_FILE, ITEM_MATRIX_INT8_FILE,
    OUTPUT_NAME, USER_VECTOR_NAME,
};

use crate::engine::{
    serves_from_saved_graph, spot_check_rows, EngineKind, IndexBytes, ItemMatrix, ItemSource,
    QuantisedRows, RowSample, RowSampleError, DTYPE_F32, DTYPE_INT8,
};
pub use error::BundleError;
pub use read::{read_capped, read_capped_text};
pub use vocab::{
    decoded_size, item_row, item_rows, row_item, ItemVocab, TableFile, UserHistories, PAD_TOKEN,
};

pub const MODEL_FILE: &str = "model.onnx";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const ITEMS_FILE: &str = "items.tsv";
pub const USERS_FILE: &str = "users.tsv";

/// Caps on what reading one bundle may allocate (the server's `--max-*-bytes` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    pub max_model_bytes: u64,
    /// Largest `items.tsv` by what it decodes to in memory ([`decoded_size`]), not by its size
    /// on disk: a short row costs over 10× more parsed.
    pub max_items_bytes: u64,
    /// Largest `users.tsv` by what it decodes to in memory ([`decoded_size`]).
    pub max_users_bytes: u64,
    pub max_manifest_bytes: u64,
    /// Largest `items.f32` (format 2).
    pub max_item_matrix_bytes: u64,
    /// Stored user histories keep at most this many (most recent) rows.
    pub max_history: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_model_bytes: 1 << 30,
            max_items_bytes: 1 << 30,
            max_users_bytes: 1 << 30,
            max_manifest_bytes: 1 << 20,
            max_item_matrix_bytes: 8 << 30,
            max_history: usize::MAX,
        }
    }
}

/// A bundle read from disk whose files agree with each other and with the manifest.
/// Whether the ONNX graph itself loads and has the declared shapes is checked by the runtime.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub items: ItemVocab,
    pub users: Option<UserHistories>,
    pub model_bytes: Vec<u8>,
    /// Format 2: the item side (`items.f32`), checked against the manifest's `item_side`;
    /// `None` when only [`Bundle::item_sample`] was read.
    pub item_matrix: Option<ItemMatrix>,
    /// Format 2 read for an engine that needs less than the decoded f32 matrix
    /// ([`ItemRead::ForEngine`]): the rows a saved graph is checked against, or an int8 item
    /// file's rows as stored for the `int8` engine. `item_matrix` is then `None`.
    pub item_source: Option<ItemSource>,
    /// Format 2: the HNSW graph saved at publish time (`index.usearch`), checked against the
    /// manifest's `ann_index`.
    pub ann_index: Option<IndexBytes>,
}

/// How much of a format-2 item file a load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRead {
    /// The whole matrix, size and sha256 checked.
    Whole,
    /// What the engine given (else the manifest's `serving.engine`) needs: when it serves from
    /// the bundle's saved graph (`ann_index`), only the rows the graph is checked against
    /// ([`spot_check_rows`]), read at their offsets, with the file's size checked but not its
    /// sha256 — the graph, whose sha256 is checked, holds every vector and is what serves. For
    /// the `int8` engine and an int8 item file, the file's rows as stored (sha256 checked), not
    /// decoded to f32. Otherwise the whole matrix.
    ForEngine(Option<EngineKind>),
}

impl Bundle {
    /// Reads and checks a version directory: manifest parses and has the supported format,
    /// `model.onnx` matches its sha256, `items.tsv` has `n_rows` rows, `users.tsv` (if present)
    /// only references existing rows, and the directory name matches the manifest's version.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        Bundle::load_with(dir, &BundleLimits::default())
    }

    /// [`Bundle::load`] under explicit size caps: every file is stat'ed before it is read,
    /// must be a regular file, and is hashed while it streams in. `items.tsv` / `users.tsv`
    /// are checked against `items_sha256` / `users_sha256` when the manifest has them.
    ///
    /// Long on purpose: it is the bundle contract's checklist in file order (manifest, model,
    /// items, users, and the cross-checks between them), each step a read under its cap and a
    /// check with its own error; one function keeps the order of checks visible in one place.
    pub fn load_with(dir: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
        Bundle::load_reading(dir, limits, ItemRead::Whole)
    }

    /// [`Bundle::load_with`], reading as much of the item file as `item_read` says.
    pub fn load_reading(
        dir: &Path,
        limits: &BundleLimits,
        item_read: ItemRead,
    ) -> Result<Bundle, BundleError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let (text, _) = read_capped_text(&manifest_path, limits.max_manifest_bytes)?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| BundleError::Manifest {
                path: manifest_path.clone(),
                message: e.to_string(),
            })?;
        let bad = |message: String| BundleError::Manifest {
            path: manifest_path.clone(),
            message,
        };
        let output = match manifest.format_version {
            FORMAT_VERSION => OUTPUT_NAME,
            FORMAT_TWO_TOWER => USER_VECTOR_NAME,
            v => {
                return Err(bad(format!(
                    "format_version {v} is not supported (expected {FORMAT_VERSION} or \
                     {FORMAT_TWO_TOWER})"
                )))
            }
        };
        if manifest.input.name != INPUT_NAME || manifest.output.name != output {
            return Err(bad(format!(
                "tensor names must be `{INPUT_NAME}` → `{output}` for format_version {}",
                manifest.format_version
            )));
        }
        match (&manifest.item_side, manifest.is_two_tower()) {
            (None, true) => return Err(bad("format_version 2 needs an `item_side`".into())),
            (Some(_), false) => {
                return Err(bad("`item_side` is only valid with format_version 2".into()))
            }
            _ => {}
        }
        if manifest.serving.is_some() && !manifest.is_two_tower() {
            return Err(bad("`serving` is only valid with format_version 2".into()));
        }
        if manifest.n_rows < 2 {
            return Err(bad("n_rows must be at least 2 (padding + one item)".into()));
        }
        if let Some(side) = &manifest.item_side {
            // Decoded, not file, size: an int8 file is expanded 4× to f32 on load, and this
            // check runs before anything is read.
            let decoded = ItemMatrix::decoded_len(manifest.n_rows, side.dim, side.has_bias);
            match decoded {
                Some(size) if size <= limits.max_item_matrix_bytes => {}
                size => {
                    return Err(BundleError::TooLarge {
                        path: dir.join(&side.file),
                        size: size.unwrap_or(u64::MAX),
                        max: limits.max_item_matrix_bytes,
                    })
                }
            }
        }
        if let Some(serving) = &manifest.serving {
            serving
                .check(manifest.n_rows)
                .map_err(|e| BundleError::Engine {
                    path: manifest_path.clone(),
                    message: e.to_string(),
                })?;
        }
        if let Some(dir_version) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_version)
        {
            if dir_version != manifest.version {
                return Err(bad(format!(
                    "version {} does not match directory {dir_version}",
                    manifest.version
                )));
            }
        }

        let index_spec = match (&manifest.ann_index, &manifest.item_side) {
            (None, _) => None,
            (Some(spec), Some(side)) => Some((spec.clone(), side.dim)),
            (Some(_), None) => {
                return Err(bad("`ann_index` is only valid with format_version 2".into()))
            }
        };
        let n_rows = manifest.n_rows;
        // A saved graph is the largest file of a large catalogue's version and its load is
        // mostly reading and hashing: the graph is read on a second thread while the other
        // files are read here.
        std::thread::scope(|scope| {
            let index_read = scope.spawn(move || {
                index_spec
                    .map(|(spec, dim)| index::read(dir, &spec, n_rows, dim))
                    .transpose()
            });
            let model_path = dir.join(MODEL_FILE);
            let (model_bytes, actual) = read_capped(&model_path, limits.max_model_bytes)?;
            check_sha(&model_path, Some(&manifest.model_sha256), &actual)?;

            // Read under the same cap: a row never decodes to less than its text, so only blank
            // lines could pass this cap and not the decoded one.
            let items_path = dir.join(ITEMS_FILE);
            let (text, actual) = read_capped_text(&items_path, limits.max_items_bytes)?;
            check_sha(&items_path, manifest.items_sha256.as_deref(), &actual)?;
            check_decoded(&items_path, TableFile::Items, &text, limits.max_items_bytes)?;
            let items = ItemVocab::parse(&items_path, &text)?;
            drop(text);
            if items.n_rows() != manifest.n_rows {
                return Err(BundleError::Inconsistent {
                    dir: dir.to_path_buf(),
                    message: format!(
                        "{ITEMS_FILE} has {} rows but the manifest says n_rows = {}",
                        items.n_rows(),
                        manifest.n_rows
                    ),
                });
            }
            let users_path = dir.join(USERS_FILE);
            let users = if users_path.symlink_metadata().is_ok() {
                let (text, actual) = read_capped_text(&users_path, limits.max_users_bytes)?;
                check_sha(&users_path, manifest.users_sha256.as_deref(), &actual)?;
                let file = TableFile::Users {
                    max_history: limits.max_history,
                };
                check_decoded(&users_path, file, &text, limits.max_users_bytes)?;
                Some(UserHistories::parse(
                    &users_path,
                    &text,
                    manifest.n_rows,
                    limits.max_history,
                )?)
            } else {
                None
            };
            let engine = match item_read {
                ItemRead::Whole => None,
                ItemRead::ForEngine(engine) => {
                    let params = manifest.serving.clone().unwrap_or_default();
                    Some((engine.unwrap_or(params.engine), params))
                }
            };
            let sample_only = engine.as_ref().is_some_and(|(kind, params)| {
                manifest.ann_index.is_some()
                    && serves_from_saved_graph(*kind, params, manifest.n_rows)
            });
            let as_stored = engine
                .as_ref()
                .is_some_and(|(kind, _)| *kind == EngineKind::Int8);
            let (item_matrix, item_source) = match &manifest.item_side {
                Some(side) if sample_only => (
                    None,
                    Some(ItemSource::Sample(read_item_sample(
                        dir,
                        side,
                        manifest.n_rows,
                        limits,
                    )?)),
                ),
                Some(side) if as_stored && side.dtype == DTYPE_INT8 => (
                    None,
                    Some(ItemSource::Quantised(read_item_codes(
                        dir,
                        side,
                        manifest.n_rows,
                        limits,
                    )?)),
                ),
                Some(side) => (
                    Some(read_item_matrix(dir, side, manifest.n_rows, limits)?),
                    None,
                ),
                None => (None, None),
            };
            let ann_index = index_read
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            Ok(Bundle {
                dir: dir.to_path_buf(),
                manifest,
                items,
                users,
                model_bytes,
                item_matrix,
                item_source,
                ann_index,
            })
        })
    }
}

/// Reads and checks the item file (`items.f32`, or `items.i8` dequantised): a plain file
/// name, a regular file of exactly the size the manifest's shape implies (checked before
/// reading, so a wrong or huge file is never loaded), the declared sha256, finite values.
fn read_item_matrix(
    dir: &Path,
    side: &ItemSide,
    n_rows: usize,
    limits: &BundleLimits,
) -> Result<ItemMatrix, BundleError> {
    let bytes = read_item_file(dir, side, n_rows, limits)?;
    ItemMatrix::from_file_bytes(&side.dtype, &bytes, n_rows, side.dim, side.has_bias).map_err(|e| {
        BundleError::Inconsistent {
            dir: dir.to_path_buf(),
            message: format!("{}: {e}", side.file),
        }
    })
}

/// The item file's bytes after [`check_item_file`]'s checks, its sha256 checked.
fn read_item_file(
    dir: &Path,
    side: &ItemSide,
    n_rows: usize,
    limits: &BundleLimits,
) -> Result<Vec<u8>, BundleError> {
    let (path, want) = check_item_file(dir, side, n_rows, limits)?;
    // Streams with the exact expected size as the cap: a file that grows meanwhile is refused.
    let (bytes, actual) = read_capped(&path, want)?;
    if !actual.eq_ignore_ascii_case(&side.sha256) {
        return Err(BundleError::Checksum {
            path,
            expected: side.sha256.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// An int8 item file's rows as stored, after the same checks as [`read_item_matrix`]
/// (sha256 included).
fn read_item_codes(
    dir: &Path,
    side: &ItemSide,
    n_rows: usize,
    limits: &BundleLimits,
) -> Result<QuantisedRows, BundleError> {
    let bytes = read_item_file(dir, side, n_rows, limits)?;
    QuantisedRows::from_file_bytes(bytes, n_rows, side.dim, side.has_bias).map_err(|e| {
        BundleError::Inconsistent {
            dir: dir.to_path_buf(),
            message: format!("{}: {e}", side.file),
        }
    })
}

/// The rows of the item file a saved graph is checked against ([`ItemRead::ForEngine`]),
/// after the same name, shape and size checks as [`read_item_matrix`].
fn read_item_sample(
    dir: &Path,
    side: &ItemSide,
    n_rows: usize,
    limits: &BundleLimits,
) -> Result<RowSample, BundleError> {
    use std::os::unix::fs::FileExt;
    let (path, _) = check_item_file(dir, side, n_rows, limits)?;
    let file = std::fs::File::open(&path).map_err(|e| BundleError::io(&path, e))?;
    let rows = spot_check_rows(n_rows);
    RowSample::read(
        &side.dtype,
        n_rows,
        side.dim,
        side.has_bias,
        &rows,
        |at, buf| file.read_exact_at(buf, at),
    )
    .map_err(|e| match e {
        RowSampleError::Io(e) => BundleError::io(&path, e),
        RowSampleError::Matrix(e) => BundleError::Inconsistent {
            dir: dir.to_path_buf(),
            message: format!("{}: {e}", side.file),
        },
    })
}

/// The item file's checks before any of it is read: a plain file name, a supported dtype and
/// width, a regular file of exactly the size the manifest's shape implies, within the cap.
/// Returns its path and size.
fn check_item_file(
    dir: &Path,
    side: &ItemSide,
    n_rows: usize,
    limits: &BundleLimits,
) -> Result<(PathBuf, u64), BundleError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bad = |message: String| BundleError::Manifest {
        path: manifest_path.clone(),
        message,
    };
    if side.file.is_empty() || side.file.contains(['/', '\\']) || side.file.starts_with('.') {
        return Err(bad(format!(
            "item_side.file `{}` must be a plain file name",
            side.file
        )));
    }
    if side.dim == 0 || side.dim > 65_536 {
        return Err(bad(format!(
            "item_side.dim {} is out of range 1..=65536",
            side.dim
        )));
    }
    let Some(want) = ItemMatrix::file_len_of(&side.dtype, n_rows, side.dim, side.has_bias) else {
        return Err(bad(format!(
            "item_side.dtype `{}` is not supported ({DTYPE_F32} or {DTYPE_INT8})",
            side.dtype
        )));
    };
    let want = want as u64;
    let path = dir.join(&side.file);
    let meta = std::fs::metadata(&path).map_err(|e| BundleError::io(&path, e))?;
    if want > limits.max_item_matrix_bytes {
        return Err(BundleError::TooLarge {
            path,
            size: want,
            max: limits.max_item_matrix_bytes,
        });
    }
    if !meta.is_file() || meta.len() != want {
        return Err(BundleError::Inconsistent {
            dir: dir.to_path_buf(),
            message: format!(
                "{} must be a regular file of {want} bytes ([{n_rows}, {}] {}{}), found {}",
                side.file,
                side.dim,
                side.dtype,
                if side.has_bias { " + bias" } else { "" },
                if meta.is_file() {
                    format!("{} bytes", meta.len())
                } else {
                    "no regular file".into()
                }
            ),
        });
    }
    Ok((path, want))
}

/// Decoded, not file, size: many short rows cost far more parsed (a table slot, allocations)
/// than on disk, so a small file could otherwise take gigabytes. Checked on the text already
/// read, before anything is parsed.
fn check_decoded(path: &Path, file: TableFile, text: &str, max: u64) -> Result<(), BundleError> {
    let size = decoded_size(file, text);
    if size > max {
        return Err(BundleError::DecodedTooLarge {
            path: path.to_path_buf(),
            size,
            max,
        });
    }
    Ok(())
}

/// `expected: None` is a bundle written before that file had a checksum: accepted.
fn check_sha(path: &Path, expected: Option<&str>, actual: &str) -> Result<(), BundleError> {
    match expected {
        Some(e) if !actual.eq_ignore_ascii_case(e) => Err(BundleError::Checksum {
            path: path.to_path_buf(),
            expected: e.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Highest version number: 18 digits, so that one more is still a valid version and a
/// directory named by a huge number cannot leave publishers no number to take.
pub const MAX_VERSION: u64 = 999_999_999_999_999_999;

/// Version directory names are positive integers in canonical form (no leading zeros: `007`
/// would be listed as 7 but loaded from `7/`) up to [`MAX_VERSION`]; anything else (including
/// the `.tmp-*` staging directories of an unfinished write) is not a version.
pub fn parse_version(name: &str) -> Option<u64> {
    if name.is_empty() || name.len() > 18 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.starts_with('0') {
        return None;
    }
    name.parse().ok().filter(|v| valid_version(*v))
}

/// Whether `v` can name a version directory (1..=[`MAX_VERSION`]).
pub fn valid_version(v: u64) -> bool {
    (1..=MAX_VERSION).contains(&v)
}

/// Model names: what may appear as `models/<name>/` and in URLs.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Versions present under `repo/<name>/`, ascending. A missing directory has none.
pub fn list_versions(repo: &Path, name: &str) -> Vec<u64> {
    scan_versions(repo, name).unwrap_or_default()
}

/// [`list_versions`] that reports why the directory could not be read (a missing model
/// directory still has no versions, not an error).
pub fn scan_versions(repo: &Path, name: &str) -> std::io::Result<Vec<u64>> {
    let dir = repo.join(name);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut versions: Vec<u64> = entries
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        // Names first: only entries named like a version cost a `stat` (a directory full of
        // stray files must not cost one per file per scan).
        .filter_map(|e| Some((e.file_name().to_str().and_then(parse_version)?, e.path())))
        // Follows symlinks: volume mounts (e.g. Kubernetes ConfigMaps) and shared
        // storage often link model and version directories.
        .filter(|(_, path)| path.is_dir())
        .map(|(v, _)| v)
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// Model names (subdirectories with a valid name) in a repository, sorted.
pub fn list_models(repo: &Path) -> Vec<String> {
    scan_models(repo).unwrap_or_default()
}

/// [`list_models`] that reports why the repository could not be read.
pub fn scan_models(repo: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(repo)?
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| valid_model_name(n))
        .filter(|n| repo.join(n).is_dir())
        .collect();
    names.sort();
    Ok(names)
}

/// Writes a new version of `manifest.name` into `repo` and returns its directory.
///
/// The version is one above the highest present. Files go to a `.tmp-*` staging directory
/// beside the versions, are synced, and the directory is renamed into place, so a server
/// polling the repository never sees a half-written version. `manifest.version`,
/// `model_sha256` and `n_rows` are filled in here.
pub fn write_bundle(
    repo: &Path,
    manifest: Manifest,
    onnx: &[u8],
    items: &ItemVocab,
    users: Option<&UserHistories>,
) -> Result<PathBuf, BundleError> {
    write_bundle_with(repo, manifest, onnx, items, users, None)
}

/// [`write_bundle`] for either format: with `item_matrix`, a format-2 (two-tower) bundle whose
/// `model.onnx` is the user encoder; the manifest must come from [`Manifest::two_tower`]
/// with the matrix's dimension and bias flag (its sha256 is filled in here).
///
/// Long on purpose: it is one atomic publication (next version number, scratch directory, every
/// file written and synced, the manifest last, one rename), and splitting it would hide which
/// steps the rename makes atomic.
pub fn write_bundle_with(
    repo: &Path,
    mut manifest: Manifest,
    onnx: &[u8],
    items: &ItemVocab,
    users: Option<&UserHistories>,
    item_matrix: Option<&ItemMatrix>,
) -> Result<PathBuf, BundleError> {
    if !valid_model_name(&manifest.name) {
        return Err(BundleError::Manifest {
            path: repo.to_path_buf(),
            message: format!("invalid model name `{}`", manifest.name),
        });
    }
    let model_dir = repo.join(&manifest.name);
    std::fs::create_dir_all(&model_dir).map_err(|e| BundleError::io(&model_dir, e))?;
    manifest.model_sha256 = sha256_hex(onnx);
    let items_tsv = items.to_tsv();
    let users_tsv = users.map(UserHistories::to_tsv);
    manifest.items_sha256 = Some(sha256_hex(items_tsv.as_bytes()));
    manifest.users_sha256 = users_tsv.as_deref().map(|t| sha256_hex(t.as_bytes()));
    manifest.n_rows = items.n_rows();
    let matrix_bytes = match (item_matrix, manifest.item_side.as_mut()) {
        (None, None) => {
            if let Some(serde_json::Value::Number(_)) = manifest.output.shape.get(1) {
                manifest.output.shape[1] = items.n_rows().into();
            }
            None
        }
        (Some(m), Some(side))
            if side.dim == m.dim()
                && side.has_bias == m.has_bias()
                && m.n_rows() == items.n_rows() =>
        {
            let bytes = m
                .to_file_bytes(&side.dtype)
                .ok_or_else(|| BundleError::Manifest {
                    path: repo.to_path_buf(),
                    message: format!("item_side.dtype `{}` cannot be written", side.dtype),
                })?;
            side.sha256 = sha256_hex(&bytes);
            Some((side.file.clone(), bytes))
        }
        _ => {
            return Err(BundleError::Manifest {
                path: repo.to_path_buf(),
                message: "an item matrix needs a two-tower manifest of its shape (and vice versa)"
                    .into(),
            })
        }
    };
    // An `ann` bundle gets its graph now, once, rather than on every replica at load.
    let graph = match item_matrix {
        Some(m) => index::build_for(&manifest, m)?,
        None => None,
    };
    manifest.ann_index = graph.as_ref().map(|(spec, _)| spec.clone());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let staging = model_dir.join(format!(".tmp-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| BundleError::io(&staging, e))?;
    let result = (|| {
        write_synced(&staging.join(MODEL_FILE), onnx)?;
        write_synced(&staging.join(ITEMS_FILE), items_tsv.as_bytes())?;
        if let Some((file, bytes)) = &matrix_bytes {
            write_synced(&staging.join(file), bytes)?;
        }
        if let Some((spec, bytes)) = &graph {
            write_synced(&staging.join(&spec.file), bytes.as_bytes())?;
        }
        if let Some(users) = &users_tsv {
            write_synced(&staging.join(USERS_FILE), users.as_bytes())?;
        }
        // Another writer may take a version number between our listing and our rename:
        // rename fails on a non-empty target, so retry with the next number.
        for _ in 0..16 {
            let version = list_versions(repo, &manifest.name)
                .last()
                .copied()
                .unwrap_or(0)
                + 1;
            if !valid_version(version) {
                return Err(BundleError::Inconsistent {
                    dir: model_dir.clone(),
                    message: format!("no version number is left above {}", version - 1),
                });
            }
            manifest.version = version;
            let json = serde_json::to_vec_pretty(&manifest).expect("manifest always serializes");
            write_synced(&staging.join(MANIFEST_FILE), &json)?;
            let target = model_dir.join(version.to_string());
            if target.exists() {
                continue;
            }
            match std::fs::rename(&staging, &target) {
                Ok(()) => {
                    if let Ok(d) = std::fs::File::open(&model_dir) {
                        let _ = d.sync_all();
                    }
                    return Ok(target);
                }
                Err(_) if target.exists() => continue,
                Err(e) => return Err(BundleError::io(&target, e)),
            }
        }
        Err(BundleError::Inconsistent {
            dir: model_dir.clone(),
            message: "could not claim a version number after 16 attempts".into(),
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| BundleError::io(path, e))?;
    f.write_all(bytes).map_err(|e| BundleError::io(path, e))?;
    f.sync_all().map_err(|e| BundleError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch() -> Architecture {
        Architecture {
            kind: "test".into(),
            description: "test".into(),
            embedding_dim: None,
            hidden: vec![],
            activation: None,
        }
    }

    fn vocab() -> ItemVocab {
        ItemVocab::new(vec![("i1".into(), None), ("i2".into(), Some("Two".into()))])
    }

    #[test]
    fn write_then_load_round_trips_and_versions_increase() {
        let repo = tempfile::tempdir().unwrap();
        let m = Manifest::new("m", Role::Student, 0, arch());
        let d1 = write_bundle(repo.path(), m.clone(), b"onnx-1", &vocab(), None).unwrap();
        let d2 = write_bundle(repo.path(), m, b"onnx-2", &vocab(), None).unwrap();
        assert_eq!(list_versions(repo.path(), "m"), vec![1, 2]);
        let b = Bundle::load(&d2).unwrap();
        assert_eq!(b.manifest.version, 2);
        assert_eq!(b.manifest.n_rows, 3);
        assert_eq!(b.model_bytes, b"onnx-2");
        assert!(Bundle::load(&d1).is_ok());
        // No staging directory is left behind.
        let leftovers = std::fs::read_dir(repo.path().join("m"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn tampered_model_is_refused() {
        let repo = tempfile::tempdir().unwrap();
        let m = Manifest::new("m", Role::Student, 0, arch());
        let d = write_bundle(repo.path(), m, b"onnx", &vocab(), None).unwrap();
        std::fs::write(d.join(MODEL_FILE), b"onnx-tampered").unwrap();
        assert_eq!(Bundle::load(&d).unwrap_err().kind(), "checksum");
    }

    #[test]
    fn tampered_items_file_is_refused_and_limits_apply() {
        let repo = tempfile::tempdir().unwrap();
        let m = Manifest::new("m", Role::Student, 0, arch());
        let d = write_bundle(repo.path(), m, b"onnx", &vocab(), None).unwrap();
        let limits = BundleLimits {
            max_model_bytes: 3,
            ..BundleLimits::default()
        };
        assert_eq!(
            Bundle::load_with(&d, &limits).unwrap_err().kind(),
            "too_large"
        );
        let items = d.join(ITEMS_FILE);
        let text = std::fs::read_to_string(&items).unwrap();
        std::fs::write(&items, text.replace("Two", "Six")).unwrap();
        assert_eq!(Bundle::load(&d).unwrap_err().kind(), "checksum");
    }

    /// Many short rows cost far more parsed than on disk: both files are refused by their
    /// decoded size although each file is well under its cap.
    #[test]
    fn items_and_users_are_capped_by_their_decoded_size() {
        let repo = tempfile::tempdir().unwrap();
        let n = 20_000;
        let items = ItemVocab::new((0..n).map(|i| (format!("{i}"), None)).collect());
        let users = UserHistories::new(
            (0..n)
                .map(|u| (format!("{u}"), vec![1]))
                .collect::<std::collections::HashMap<_, _>>(),
        );
        let m = Manifest::new("m", Role::Student, 0, arch());
        let d = write_bundle(repo.path(), m, b"onnx", &items, Some(&users)).unwrap();
        let size = |f: &str| std::fs::metadata(d.join(f)).unwrap().len();
        let (items_size, users_size) = (size(ITEMS_FILE), size(USERS_FILE));
        // Short ids decode to about 3× their file (offsets, an index slot, allocator slack),
        // users to over 10×.
        let limits = BundleLimits {
            max_items_bytes: 2 * items_size,
            max_users_bytes: 4 * users_size,
            ..BundleLimits::default()
        };
        let err = Bundle::load_with(&d, &limits).unwrap_err();
        assert_eq!(err.kind(), "too_large", "{err}");
        assert!(err.to_string().contains(ITEMS_FILE), "{err}");
        let limits = BundleLimits {
            max_items_bytes: u64::MAX,
            ..limits
        };
        let err = Bundle::load_with(&d, &limits).unwrap_err();
        assert_eq!(err.kind(), "too_large", "{err}");
        assert!(err.to_string().contains(USERS_FILE), "{err}");
        // Raised caps load the same files.
        let limits = BundleLimits {
            max_users_bytes: u64::MAX,
            ..limits
        };
        let b = Bundle::load_with(&d, &limits).unwrap();
        assert_eq!(b.users.map(|u| u.len()), Some(n));
    }

    #[test]
    fn missing_items_file_is_refused() {
        let repo = tempfile::tempdir().unwrap();
        let m = Manifest::new("m", Role::Student, 0, arch());
        let d = write_bundle(repo.path(), m, b"onnx", &vocab(), None).unwrap();
        std::fs::remove_file(d.join(ITEMS_FILE)).unwrap();
        assert_eq!(Bundle::load(&d).unwrap_err().kind(), "io");
    }

    #[test]
    fn version_names_and_model_names_are_validated() {
        assert_eq!(parse_version("12"), Some(12));
        assert_eq!(parse_version("999999999999999999"), Some(MAX_VERSION));
        for bad in [
            "0",
            "",
            "-1",
            "1a",
            ".tmp-1",
            "..",
            "99999999999999999999",
            "007",
            "01",
            "1000000000000000000",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert!(valid_model_name("ml-100k_student.v2"));
        for bad in ["", "..", ".hidden", "a/b", "a b", "-x"] {
            assert!(!valid_model_name(bad), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_model_and_version_directories_are_listed() {
        let store = tempfile::tempdir().unwrap();
        let m = Manifest::new("m", Role::Student, 0, arch());
        let v1 = write_bundle(store.path(), m, b"onnx-1", &vocab(), None).unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(store.path().join("m"), repo.path().join("m")).unwrap();
        std::fs::create_dir(repo.path().join("n")).unwrap();
        std::os::unix::fs::symlink(&v1, repo.path().join("n").join("3")).unwrap();
        // A dangling link is not a model.
        std::os::unix::fs::symlink(repo.path().join("gone"), repo.path().join("x")).unwrap();
        assert_eq!(list_models(repo.path()), ["m", "n"]);
        assert_eq!(list_versions(repo.path(), "m"), [1]);
        assert_eq!(list_versions(repo.path(), "n"), [3]);
    }
}
