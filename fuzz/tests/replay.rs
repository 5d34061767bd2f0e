//! Every committed input under `corpus/TARGET/` (the seeds and every past finding) run through the same
//! body the fuzzer runs, on the stable toolchain: `cargo test --no-default-features` in `fuzz/`. A
//! panic names the target and the file; the replay fails too if a target has no corpus or a corpus
//! directory names no target.

use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_directory_is_a_target_and_every_target_has_inputs() {
    for entry in std::fs::read_dir(corpus_dir()).expect("fuzz/corpus") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            lockserver_fuzz::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} is no target's corpus"
        );
    }
    for (target, _) in lockserver_fuzz::TARGETS {
        assert!(!inputs(target).is_empty(), "fuzz/corpus/{target} has no input");
    }
}

#[test]
fn every_committed_input_runs_clean() {
    let mut count = 0;
    for (target, body) in lockserver_fuzz::TARGETS {
        for file in inputs(target) {
            let data = std::fs::read(&file).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} fails (see the panic above)",
                file.display()
            );
            count += 1;
        }
    }
    // The HTTP targets' inputs reached the loopback server (a client that never sends proves nothing).
    assert!(
        lockserver_fuzz::loopback::served() >= inputs("pingid_http").len(),
        "the loopback server answered only {} requests",
        lockserver_fuzz::loopback::served()
    );
    println!("replayed {count} inputs of {} targets", lockserver_fuzz::TARGETS.len());
}
