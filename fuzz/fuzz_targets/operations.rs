//! The operations flags (`operations = ["NAME:ID:bool", ...]`): each input line becomes one entry of a
//! valid config around it, so the fuzzer spends its time in the entries' own parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // TOML basic strings: escape what would end the string or the line.
    let entries: Vec<String> = text.lines().map(|l| format!("{:?}", l)).collect();
    let config = format!(
        "service = \"latch\"\noperations = [{}]\nstore = \"sqlite:///var/lib/lockserver/pairings.db\"\n\n\
         [latch]\napp_id = \"abcdefghijklmnopqrst\"\nsecret = \"{}\"\n",
        entries.join(", "),
        "s".repeat(40)
    );
    if let Ok(c) = lockserver::config::Config::parse_str(&config) {
        for line in text.lines() {
            let name = line.split(':').next().unwrap_or("");
            let _ = c.operation_rule(name);
            let _ = c.has_operation(name);
        }
        let _ = c.totp_enabled();
    }
});
