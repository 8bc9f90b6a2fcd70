//! Reading one bundle file defensively: a bundle comes from an operator's disk, which may hold a
//! 2 GB file, a symlink to `/dev/zero`, a FIFO or a file still being written. Every read of a
//! bundle file goes through [`read_capped`], which never allocates more than its cap.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::BundleError;

/// Reads `path` whole, refusing anything but a regular file of at most `max_bytes`, and returns
/// its bytes with their hex sha256 (computed while streaming, so a caller never hashes twice).
///
/// The file is opened without blocking (a FIFO would otherwise block `open` until a writer
/// appears), then checked with `fstat` on the opened descriptor, so a path swapped between the
/// check and the read cannot slip through. A file that grows past `max_bytes` while it is read
/// is refused too.
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<(Vec<u8>, String), BundleError> {
    let mut file = open_nonblocking(path).map_err(|e| BundleError::io(path, e))?;
    let meta = file.metadata().map_err(|e| BundleError::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(BundleError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > max_bytes {
        return Err(BundleError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BundleError::io(path, e)),
        };
        if bytes.len() as u64 + n as u64 > max_bytes {
            return Err(BundleError::TooLarge {
                path: path.to_path_buf(),
                size: bytes.len() as u64 + n as u64,
                max: max_bytes,
            });
        }
        hasher.update(&chunk[..n]);
        bytes.extend_from_slice(&chunk[..n]);
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// [`read_capped`] for text files: also refuses invalid UTF-8.
pub fn read_capped_text(path: &Path, max_bytes: u64) -> Result<(String, String), BundleError> {
    let (bytes, sha) = read_capped(path, max_bytes)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        BundleError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })?;
    Ok((text, sha))
}

#[cfg(unix)]
pub(super) fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK only changes how FIFOs and devices open; regular files ignore it.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
pub(super) fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_hashes_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let (bytes, sha) = read_capped(&p, 3).unwrap();
        assert_eq!(bytes, b"abc");
        assert_eq!(sha, super::super::sha256_hex(b"abc"));
        assert_eq!(read_capped(&p, 2).unwrap_err().kind(), "too_large");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_devices_fifos_and_directories_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(
            read_capped(&zero, 1 << 20).unwrap_err().kind(),
            "not_regular_file"
        );
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo does not retain it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read_capped(&fifo, 1 << 20).unwrap_err().kind(),
            "not_regular_file"
        );
        assert_eq!(
            read_capped(dir.path(), 1 << 20).unwrap_err().kind(),
            "not_regular_file"
        );
    }

    #[test]
    fn a_sparse_file_over_the_cap_is_refused_from_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::File::create(&p).unwrap().set_len(4 << 30).unwrap();
        assert_eq!(read_capped(&p, 1 << 20).unwrap_err().kind(), "too_large");
    }
}
