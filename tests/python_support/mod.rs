//! The Python interpreter the cross-runtime tests drive (`DISTILREC_PYTHON`; `scripts/setup.sh`
//! makes `.venv` with onnx, onnxruntime, numpy and protobuf). Shared by every test binary that
//! needs one, so the skip switch and the message are the same everywhere.

use std::path::PathBuf;

/// `DISTILREC_PYTHON`, or `None` (with a SKIPPED line naming `test`) when
/// `DISTILREC_SKIP_PYTHON=1`; any other setup panics, so a missing interpreter never passes a
/// test silently. `needs` names what the test runs with it.
pub fn python(test: &str, needs: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DISTILREC_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if std::env::var("DISTILREC_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("{test}: SKIPPED (DISTILREC_SKIP_PYTHON=1)");
        return None;
    }
    panic!(
        "DISTILREC_PYTHON is not set. {test} runs {needs}; scripts/setup.sh makes .venv with \
         everything the tests need:\n  export DISTILREC_PYTHON=$PWD/.venv/bin/python\n\
         or set DISTILREC_SKIP_PYTHON=1 to skip it deliberately."
    );
}
