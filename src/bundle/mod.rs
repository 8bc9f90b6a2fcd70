//! The model bundle: `models/<name>/<version>/{model.onnx, manifest.json, items.tsv, users.tsv?}`.
//!
//! This module owns the on-disk format only: reading with integrity checks, atomic writing, and
//! listing the versions in a repository. It knows nothing about ONNX runtimes or HTTP.
//! The contract is documented in `docs/model-bundle.md`.

mod manifest;
mod vocab;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use manifest::{
    Architecture, DatasetInfo, Manifest, Role, SplitInfo, TensorSpec, FORMAT_VERSION, INPUT_NAME,
    OUTPUT_NAME,
};
pub use vocab::{ItemVocab, UserHistories, PAD_TOKEN};

pub const MODEL_FILE: &str = "model.onnx";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const ITEMS_FILE: &str = "items.tsv";
pub const USERS_FILE: &str = "users.tsv";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: sha256 mismatch: manifest says {expected}, file has {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{dir}: {message}")]
    Inconsistent { dir: PathBuf, message: String },
}

impl BundleError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BundleError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parse(path: &Path, line: usize, message: String) -> Self {
        BundleError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        }
    }

    /// Short stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::Io { .. } => "io",
            BundleError::Parse { .. } => "parse",
            BundleError::Manifest { .. } => "manifest",
            BundleError::Checksum { .. } => "checksum",
            BundleError::Inconsistent { .. } => "inconsistent",
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
}

impl Bundle {
    /// Reads and checks a version directory: manifest parses and has the supported format,
    /// `model.onnx` matches its sha256, `items.tsv` has `n_rows` rows, `users.tsv` (if present)
    /// only references existing rows, and the directory name matches the manifest's version.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| BundleError::io(&manifest_path, e))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| BundleError::Manifest {
                path: manifest_path.clone(),
                message: e.to_string(),
            })?;
        let bad = |message: String| BundleError::Manifest {
            path: manifest_path.clone(),
            message,
        };
        if manifest.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "format_version {} is not supported (expected {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        if manifest.input.name != INPUT_NAME || manifest.output.name != OUTPUT_NAME {
            return Err(bad(format!(
                "tensor names must be `{INPUT_NAME}` → `{OUTPUT_NAME}`"
            )));
        }
        if manifest.n_rows < 2 {
            return Err(bad("n_rows must be at least 2 (padding + one item)".into()));
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

        let model_path = dir.join(MODEL_FILE);
        let model_bytes =
            std::fs::read(&model_path).map_err(|e| BundleError::io(&model_path, e))?;
        let actual = sha256_hex(&model_bytes);
        if !actual.eq_ignore_ascii_case(&manifest.model_sha256) {
            return Err(BundleError::Checksum {
                path: model_path,
                expected: manifest.model_sha256.clone(),
                actual,
            });
        }

        let items = ItemVocab::read(&dir.join(ITEMS_FILE))?;
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
        let users = if users_path.exists() {
            Some(UserHistories::read(&users_path, manifest.n_rows)?)
        } else {
            None
        };
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            items,
            users,
            model_bytes,
        })
    }
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Version directory names are plain positive integers; anything else (including the
/// `.tmp-*` staging directories of an unfinished write) is not a version.
pub fn parse_version(name: &str) -> Option<u64> {
    if name.is_empty() || name.len() > 19 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|v| *v > 0)
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
    let mut versions: Vec<u64> = std::fs::read_dir(repo.join(name))
        .into_iter()
        .flatten()
        .flatten()
        // Follows symlinks: volume mounts (e.g. Kubernetes ConfigMaps) and shared
        // storage often link model and version directories.
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(parse_version))
        .collect();
    versions.sort_unstable();
    versions
}

/// Model names (subdirectories with a valid name) in a repository, sorted.
pub fn list_models(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| valid_model_name(n))
        .collect();
    names.sort();
    names
}

/// Writes a new version of `manifest.name` into `repo` and returns its directory.
///
/// The version is one above the highest present. Files go to a `.tmp-*` staging directory
/// beside the versions, are synced, and the directory is renamed into place, so a server
/// polling the repository never sees a half-written version. `manifest.version`,
/// `model_sha256` and `n_rows` are filled in here.
pub fn write_bundle(
    repo: &Path,
    mut manifest: Manifest,
    onnx: &[u8],
    items: &ItemVocab,
    users: Option<&UserHistories>,
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
    manifest.n_rows = items.n_rows();
    if let Some(serde_json::Value::Number(_)) = manifest.output.shape.get(1) {
        manifest.output.shape[1] = items.n_rows().into();
    }
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let staging = model_dir.join(format!(".tmp-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| BundleError::io(&staging, e))?;
    let result = (|| {
        write_synced(&staging.join(MODEL_FILE), onnx)?;
        write_synced(&staging.join(ITEMS_FILE), items.to_tsv().as_bytes())?;
        if let Some(users) = users {
            write_synced(&staging.join(USERS_FILE), users.to_tsv().as_bytes())?;
        }
        // Another writer may take a version number between our listing and our rename:
        // rename fails on a non-empty target, so retry with the next number.
        for _ in 0..16 {
            let version = list_versions(repo, &manifest.name)
                .last()
                .copied()
                .unwrap_or(0)
                + 1;
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

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
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
        for bad in ["0", "", "-1", "1a", ".tmp-1", "..", "99999999999999999999"] {
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
