//! `unsafe` lives only in the PAM and C API layers: every other module of the library forbids it, so a
//! new module that forgets the attribute fails here (and one that has it cannot compile unsafe code).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_outside_pam_and_capi_forbids_unsafe_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let allowed = [src.join("pam"), src.join("capi")];
    let missing: Vec<String> = files
        .iter()
        .filter(|f| **f != src.join("lib.rs") && !allowed.iter().any(|a| f.starts_with(a)))
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("read source");
            !text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(files.len() > 10, "found the sources");
    assert!(
        missing.is_empty(),
        "modules without #![forbid(unsafe_code)]: {missing:?}"
    );
}
