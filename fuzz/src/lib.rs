//! The fuzz targets' bodies, one function per target. The libFuzzer binaries in `fuzz_targets/` call
//! them (nightly, `cargo +nightly fuzz run TARGET`), and `tests/replay.rs` calls the same functions on
//! every committed input under `corpus/TARGET/` on the stable toolchain, so a machine without nightly
//! still runs every seed and every past finding.
//!
//! A body must never panic, hang or allocate without bound on any input: that is what the fuzzer looks
//! for. Each one drives real library code (the parsers, the HTTP client against a loopback server, the
//! C API), never a copy of it.

mod capi;
pub mod loopback;
mod parsers;
mod pingid;

pub use capi::capi_strings;
pub use parsers::{certificate_names, config, dictionary, escape, latch_answer, operations};
pub use pingid::{pingid_answer, pingid_http};

/// A target's body: one input, no result (a finding panics or crashes).
pub type Body = fn(&[u8]);

/// Every target: its name (the binary and the `corpus/` directory) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("config", config),
    ("operations", operations),
    ("dictionary", dictionary),
    ("escape", escape),
    ("latch_answer", latch_answer),
    ("pingid_answer", pingid_answer),
    ("pingid_http", pingid_http),
    ("http_answer", http_answer),
    ("capi_strings", capi_strings),
    ("certificate_names", certificate_names),
];

/// The HTTP answer framing: the input is sent, as it is, as a whole HTTP response by a server on a
/// loopback port, and the Latch client asks that server for a status. Status line, headers, chunked or
/// sized bodies, the size cap and the Latch reading after them must end in an answer or an error (never a
/// panic, never a wait past the deadline).
pub fn http_answer(data: &[u8]) {
    use std::sync::LazyLock;
    use std::time::{Duration, Instant};
    static CLIENT: LazyLock<lockserver::service::SharedService> = LazyLock::new(|| {
        let text = format!(
            "service = \"latch\"\ntimeout_ms = 300\nstore = \"sqlite:///var/lib/lockserver/pairings.db\"\n\n\
             [latch]\napp_id = \"abcdefghijklmnopqrst\"\nsecret = \"{}\"\nurl = \"http://127.0.0.1:{}\"\n",
            "s".repeat(40),
            loopback::port()
        );
        let config = lockserver::config::Config::parse_str(&text).expect("the fuzz config parses");
        lockserver::service::from_config(&config).expect("the fuzz client builds")
    });
    let client = &*CLIENT;
    let _answers = loopback::answer_with(vec![data.to_vec()]);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let _ = client.status(&"a".repeat(64), None, true, deadline);
    loopback::assert_within(started, deadline);
}
