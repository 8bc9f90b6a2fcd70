//! The import rules of docs/architecture.md ("Dependency direction"), checked on the source:
//! every top-level module imports only the layers below it, and a file inside a module imports
//! its siblings, never its parent (`mod.rs` declares, re-exports and calls into its files).
//! Test code (from a file's first `#[cfg(test)]` on) is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module of `src/` may import from the crate (besides itself).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("topk", &[][..]),
        ("os", &[][..]),
        ("proto", &[][..]),
        ("logging", &[][..]),
        ("metrics", &[][..]),
        ("engine", &["topk", "os"][..]),
        ("bundle", &["engine", "os"][..]),
        ("data", &["bundle"][..]),
        ("onnx", &["bundle", "engine"][..]),
        ("eval", &["data", "topk"][..]),
        (
            "serving",
            &["bundle", "engine", "metrics", "onnx", "os", "topk"][..],
        ),
        (
            "server",
            &[
                "bundle", "engine", "metrics", "onnx", "os", "proto", "serving", "topk",
            ][..],
        ),
        (
            "train",
            &["bundle", "data", "engine", "eval", "onnx", "os", "topk"][..],
        ),
    ])
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The file's text up to its first `#[cfg(test)]`, without `//` comments.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `mod x;` / `pub mod x;` declarations of a `mod.rs` (or `lib.rs`).
fn declared_modules(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))
                .or_else(|| l.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_string)
        })
        .collect()
}

/// The first path segment of every path that follows `prefix` (e.g. `crate::` → `engine`),
/// with each item of a `prefix{a, b::c}` group counted (`a`, `b`). `super::super::x` gives
/// `super`.
fn segments_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        // The second `super::` of `super::super::` is part of the first one's path.
        if code[..i].ends_with("::") {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(
                    group
                        .split(',')
                        .map(|item| ident(item.trim()))
                        .filter(|s| !s.is_empty()),
                );
            }
            None => out.push(ident(rest)),
        }
    }
    out
}

#[test]
fn top_level_modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "bin" {
            continue;
        }
        let ok = allowed
            .get(top.as_str())
            .unwrap_or_else(|| panic!("src/{top} has no entry in this test's layer table"));
        checked += 1;
        let code = non_test_code(file);
        for target in segments_after(&code, "crate::") {
            if target.is_empty() || target == top || ok.contains(&target.as_str()) {
                continue;
            }
            violations.push(format!("{}: imports crate::{target}", rel.display()));
        }
    }
    assert!(checked > 40, "only {checked} files checked");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn files_import_their_siblings_never_their_parent() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        if name == "mod.rs" || name == "lib.rs" || file.parent() == Some(src.as_path()) {
            continue;
        }
        let Some(parent_mod) = [file.with_file_name("mod.rs")]
            .into_iter()
            .find(|p| p.is_file())
        else {
            continue;
        };
        let siblings = declared_modules(&non_test_code(&parent_mod));
        let code = non_test_code(file);
        checked += 1;
        for item in segments_after(&code, "super::") {
            if !siblings.contains(&item) {
                violations.push(format!(
                    "{}: imports super::{item} (not a sibling module)",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(checked > 25, "only {checked} files checked");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
