//! Every function C can call goes through a panic boundary: a panic must never unwind into sshd,
//! sudo or a C program. Read from the sources, so a new export without its guard fails here.
//!
//! - `src/capi/`: each `extern "C" fn` body calls `guard(` (result-returning) or `guard_or(`, unless
//!   a `// No panic boundary: <why>` line in it says why none is needed (a constant).
//! - `src/pam/`: the `pam_sm_*` hooks come only from `pam::pam_hooks!` (pam-bindings, pinned, wraps
//!   each hook in `catch_unwind`); any other `extern "C" fn` there, and the conversation callback of
//!   `pam-app/` (libpam calls it inside the CLI's try-login and the tests), calls `catch_unwind(`.
//!   Which symbols the library exports at all is checked by `tests/capi.rs`.

use std::path::{Path, PathBuf};

/// An `extern "C" fn` defined in a source file: its name and its body (braces matched).
struct Export {
    file: PathBuf,
    name: String,
    body: String,
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every `extern "C" fn NAME(...) ... { body }` of the file; `extern "C" {` blocks and function
/// pointer types (`extern "C" fn(`) are not definitions and are skipped.
fn definitions(file: &Path) -> Vec<Export> {
    let text = std::fs::read_to_string(file).expect("read source");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("extern \"C\" fn ") {
        let after = &rest[at + "extern \"C\" fn ".len()..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        rest = after;
        if name.is_empty() {
            continue;
        }
        let open = after.find('{').expect("a body");
        let mut depth = 0usize;
        let mut end = open;
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push(Export {
            file: file.to_path_buf(),
            name,
            body: after[open..=end].to_string(),
        });
        rest = &after[end..];
    }
    out
}

fn src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)
}

fn pam_app_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pam-app/src")
}

#[test]
fn every_c_api_export_goes_through_the_guard() {
    let exports: Vec<Export> = rust_files(&src("capi")).iter().flat_map(|f| definitions(f)).collect();
    assert!(
        exports.len() >= 20,
        "the scan found only {} exports: is it still reading the right files?",
        exports.len()
    );
    for e in &exports {
        assert!(
            e.name.starts_with("lockserver_"),
            "{}: {} is not in the API's namespace",
            e.file.display(),
            e.name
        );
        let guarded = e.body.contains("guard(") || e.body.contains("guard_or(");
        let exempt = e.body.lines().any(|l| {
            l.trim()
                .strip_prefix("// No panic boundary: ")
                .is_some_and(|why| !why.trim().is_empty())
        });
        assert!(
            guarded || exempt,
            "{}: {} does not go through the panic guard",
            e.file.display(),
            e.name
        );
        if exempt {
            assert!(
                !e.body.contains("unsafe") && !e.body.contains('?') && !e.body.contains("unwrap"),
                "{}: {} is exempt from the guard but does more than return a constant",
                e.file.display(),
                e.name
            );
        }
    }
}

#[test]
fn pam_hooks_come_from_the_catching_macro_and_callbacks_catch_panics() {
    let files = rust_files(&src("pam"));
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read"))
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("pam::pam_hooks!(")),
        "the pam_sm_* hooks are expected from pam::pam_hooks!"
    );
    for (file, text) in files.iter().zip(&texts) {
        assert!(
            !text.contains("fn pam_sm_"),
            "{}: a hand-written pam_sm_* hook bypasses pam_hooks!' catch_unwind",
            file.display()
        );
    }
    let callbacks: Vec<Export> = files
        .iter()
        .chain(&rust_files(&pam_app_src()))
        .flat_map(|f| definitions(f))
        .collect();
    assert!(
        callbacks.iter().any(|e| e.name == "conversation_trampoline"),
        "the scan no longer finds pam-app's conversation callback"
    );
    for e in &callbacks {
        assert!(
            e.body.contains("catch_unwind("),
            "{}: the callback {} does not catch panics",
            e.file.display(),
            e.name
        );
    }
}
