//! The table of hostile cases (docs/security-cases.md): rows the tests write as they pass.

use std::fs;
use std::path::Path;

/// Records a hostile case the calling test just saw handled, for the table in docs/security-cases.md
/// (scripts/test.sh writes it from these rows and checks the committed one matches). One file per case,
/// so parallel tests never interleave; `bound` is the time bound the test asserted (deterministic), not
/// a measured time.
pub fn record_case(id: &str, attacker: &str, case: &str, verdict: &str, bound: &str) {
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(|p| p.join("security-cases")))
    else {
        return;
    };
    let _ = fs::create_dir_all(&dir);
    let row = format!("| {attacker} | {case} | {verdict} | {bound} |\n");
    let _ = fs::write(dir.join(format!("{id}.row")), row);
}
