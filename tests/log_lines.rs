//! `docs/log-lines.md` against the code: every `log::info!`, `log::warn!` and `log::error!` of `src/` has its
//! entry at its level, and every entry is still written by the code. Values (`{name}`, `{:?}`, ...) read as
//! `{}` on both sides.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

type Line = (String, String);

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

/// `{anything}` → `{}`.
fn normalize(template: &str) -> String {
    let mut out = String::new();
    let mut in_value = false;
    for c in template.chars() {
        match (c, in_value) {
            ('{', false) => in_value = true,
            ('}', true) => {
                in_value = false;
                out.push_str("{}");
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// The string literal at the start of `s` (after whitespace), with Rust's escapes and line continuations
/// applied; `None` when the macro's first argument is not a literal.
fn literal(s: &str) -> Option<String> {
    let s = s.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '\n' => {
                    // A continuation: the newline and the next line's leading whitespace go.
                    let rest: String = chars.clone().collect();
                    let skipped = rest.len() - rest.trim_start().len();
                    for _ in 0..rest[..skipped].chars().count() {
                        chars.next();
                    }
                }
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Every (level, template) the library logs at info, warn or error, outside its unit tests.
fn lines_in_code() -> BTreeSet<Line> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for level in ["info", "warn", "error"] {
            let call = format!("log::{level}!(");
            for (at, _) in code.match_indices(&call) {
                let args = &code[at + call.len()..];
                let template = literal(args).unwrap_or_else(|| {
                    panic!(
                        "{}: a {call} whose first argument is not a string literal: keep log lines greppable",
                        file.display()
                    )
                });
                found.insert((level.to_string(), normalize(&template)));
            }
        }
    }
    found
}

/// Every (level, message) row of the catalogue's tables.
fn lines_in_doc() -> BTreeSet<Line> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/log-lines.md"))
        .expect("docs/log-lines.md");
    let mut found = BTreeSet::new();
    for row in doc.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let level = cells[0].trim_start_matches("| ").trim();
        if !["info", "warn", "error"].contains(&level) {
            continue; // the header
        }
        let cell = cells.get(1).map(|c| c.trim()).unwrap_or("");
        let message = cell
            .strip_prefix("``")
            .and_then(|m| m.strip_suffix("``"))
            .map(str::trim)
            .or_else(|| cell.strip_prefix('`').and_then(|m| m.strip_suffix('`')))
            .unwrap_or_else(|| panic!("the message of a row is not in backticks: {row}"));
        assert!(cells.len() >= 4, "a row without meaning and what to do: {row}");
        assert!(
            found.insert((level.to_string(), normalize(message))),
            "a row twice: {row}"
        );
    }
    found
}

#[test]
fn every_log_line_is_documented_and_every_entry_is_still_written() {
    let code = lines_in_code();
    let doc = lines_in_doc();
    assert!(code.len() > 30, "found the log lines: {code:?}");
    let undocumented: Vec<_> = code.difference(&doc).collect();
    let stale: Vec<_> = doc.difference(&code).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/log-lines.md and the code differ.\nin the code, not in the doc (add a row):\n{undocumented:#?}\n\
         in the doc, not in the code (remove or fix the row):\n{stale:#?}"
    );
}

#[test]
fn the_extraction_reads_what_the_macros_read() {
    assert_eq!(normalize("a {x} b {:?} c {}"), "a {} b {} c {}");
    assert_eq!(
        literal("\n  \"one \\\n     two \\\"q\\\"\", x)").as_deref(),
        Some("one two \"q\"")
    );
    assert_eq!(literal("format!(\"x\")"), None);
}
