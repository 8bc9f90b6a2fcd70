//! The saved ANN graph of a bundle (`index.usearch`): built when a version is published, read
//! and verified when it is loaded, or added to an existing version by `distilrec index`.
//!
//! A graph over 10^6 items takes minutes of CPU to build; built once here, every replica of a
//! fleet loads it in the time it takes to read the file.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::error::BundleError;
use super::manifest::{AnnIndexFile, Manifest};
use crate::engine::ann::{Ann, AnnParams};
use crate::engine::{EngineKind, IndexBytes, ItemMatrix};

pub const INDEX_FILE: &str = "index.usearch";

/// Largest file a graph of `n_rows` rows of `dim` dimensions with `m` links can serialize to:
/// the vectors `[v, b]`, per node its key, level and level-0 links (2·m), upper-level links
/// with room to spare, and the header. `None` when it overflows.
pub fn max_index_bytes(n_rows: usize, dim: usize, m: usize) -> Option<u64> {
    let per_node = dim
        .checked_add(1)?
        .checked_mul(4)?
        .checked_add(m.checked_mul(16)?)?
        .checked_add(64)?;
    u64::try_from(n_rows.checked_mul(per_node)?.checked_add(1 << 20)?).ok()
}

/// The graph a manifest's `ann` engine would build for `items`, serialized with its
/// description; `None` when the manifest does not serve with `ann` or the catalogue is small
/// enough to be scanned instead.
pub fn build_for(
    manifest: &Manifest,
    items: &ItemMatrix,
) -> Result<Option<(AnnIndexFile, IndexBytes)>, BundleError> {
    let Some(serving) = manifest
        .serving
        .as_ref()
        .filter(|s| s.engine == EngineKind::Ann)
    else {
        return Ok(None);
    };
    build(&serving.ann, items, Path::new(INDEX_FILE))
}

fn build(
    params: &AnnParams,
    items: &ItemMatrix,
    path: &Path,
) -> Result<Option<(AnnIndexFile, IndexBytes)>, BundleError> {
    if items.n_rows() - 1 < params.full_scan_below {
        return Ok(None);
    }
    let engine_error = |e: crate::engine::EngineError| BundleError::Engine {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let started = Instant::now();
    let ann = Ann::build(items, params.clone()).map_err(engine_error)?;
    let build_seconds = started.elapsed().as_secs_f64();
    let Some(bytes) = ann.to_bytes().map_err(engine_error)? else {
        return Ok(None);
    };
    let file = AnnIndexFile {
        file: INDEX_FILE.into(),
        sha256: hex::encode(Sha256::digest(bytes.as_bytes())),
        bytes: bytes.len() as u64,
        m: params.m,
        ef_construction: params.ef_construction,
        build_seconds,
    };
    Ok(Some((file, bytes)))
}

/// Reads `index.usearch` as the manifest describes it: a plain file name, a regular file of
/// exactly `bytes` bytes (checked before reading, and at most what a graph of this catalogue
/// can take), whose sha256 matches.
pub(super) fn read(
    dir: &Path,
    spec: &AnnIndexFile,
    n_rows: usize,
    dim: usize,
) -> Result<IndexBytes, BundleError> {
    let manifest_path = dir.join(crate::bundle::MANIFEST_FILE);
    if spec.file.is_empty() || spec.file.contains(['/', '\\']) || spec.file.starts_with('.') {
        return Err(BundleError::Manifest {
            path: manifest_path,
            message: format!("ann_index.file `{}` must be a plain file name", spec.file),
        });
    }
    let path = dir.join(&spec.file);
    let max = max_index_bytes(n_rows, dim, spec.m.min(64)).unwrap_or(u64::MAX);
    if spec.bytes > max {
        return Err(BundleError::TooLarge {
            path,
            size: spec.bytes,
            max,
        });
    }
    let mut file = super::read::open_nonblocking(&path).map_err(|e| BundleError::io(&path, e))?;
    let meta = file.metadata().map_err(|e| BundleError::io(&path, e))?;
    if !meta.file_type().is_file() {
        return Err(BundleError::NotRegularFile { path });
    }
    if meta.len() != spec.bytes {
        return Err(BundleError::Inconsistent {
            dir: dir.to_path_buf(),
            message: format!(
                "{} has {} bytes, the manifest says {}",
                spec.file,
                meta.len(),
                spec.bytes
            ),
        });
    }
    let mut bytes = IndexBytes::zeroed(spec.bytes as usize);
    let mut hasher = Sha256::new();
    for chunk in bytes.as_bytes_mut().chunks_mut(1 << 20) {
        file.read_exact(chunk)
            .map_err(|e| BundleError::io(&path, e))?;
        hasher.update(&*chunk);
    }
    // A file that grew while it was read is not the file that was hashed.
    if file
        .read(&mut [0u8; 1])
        .map_err(|e| BundleError::io(&path, e))?
        != 0
    {
        return Err(BundleError::Inconsistent {
            dir: dir.to_path_buf(),
            message: format!("{} grew while it was read", spec.file),
        });
    }
    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(&spec.sha256) {
        return Err(BundleError::Checksum {
            path,
            expected: spec.sha256.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Adds an HNSW graph to the two-tower version in `dir`, in place: the bundle is read and
/// checked, the graph built with the manifest's `serving.ann` settings as `overrides` changes
/// them, then
/// `index.usearch` and the new manifest are each written to a temporary file and renamed into
/// place, the index first, so a reader sees either the old manifest or the new one with its
/// index. Returns what was written, or `None` when the catalogue is small enough to be scanned
/// (no graph would be used).
pub fn add_index(
    dir: &Path,
    overrides: impl FnOnce(&mut AnnParams),
    limits: &crate::bundle::BundleLimits,
) -> Result<Option<AnnIndexFile>, BundleError> {
    let bundle = crate::bundle::Bundle::load_with(dir, limits)?;
    let mut manifest = bundle.manifest;
    let manifest_path = dir.join(crate::bundle::MANIFEST_FILE);
    let Some(items) = bundle.item_matrix else {
        return Err(BundleError::Manifest {
            path: manifest_path,
            message: "only two-tower bundles (format_version 2) have an item side to index".into(),
        });
    };
    let mut params = manifest
        .serving
        .as_ref()
        .map(|s| s.ann.clone())
        .unwrap_or_default();
    overrides(&mut params);
    let Some((spec, bytes)) = build(&params, &items, &dir.join(INDEX_FILE))? else {
        return Ok(None);
    };
    drop(items);
    replace_file(dir, &spec.file, bytes.as_bytes())?;
    manifest.ann_index = Some(spec.clone());
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest always serializes");
    replace_file(dir, crate::bundle::MANIFEST_FILE, &json)?;
    Ok(Some(spec))
}

/// Writes `dir/name` through a synced temporary file and a rename.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    crate::bundle::write_synced(&tmp, bytes)?;
    let target = dir.join(name);
    std::fs::rename(&tmp, &target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        BundleError::io(&target, e)
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
