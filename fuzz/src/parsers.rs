//! The text parsers: the config, its operations entries, the dictionary, and Latch's answers.

use lockserver::config::Config;
use lockserver::dictionary::{Dictionary, Section};
use lockserver::service::Access;
use lockserver::service::http::Reply;
use lockserver::service::latch::response;

/// The config file (`lockserver.conf`): any text must parse into a config or a clear error. What
/// parsed is read the way the module reads it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse_str(text) {
        Ok(c) => {
            let _ = c.totp_enabled();
            let _ = c.operation_rule("sshd");
            let _ = c.has_operation("sudo");
        }
        // The error's text is what an admin reads: building it must not panic either.
        Err(e) => drop(e.to_string()),
    }
}

/// The operations entries (`operations = ["NAME:ID:bool", ...]`): each input line becomes one entry of
/// a valid config around it, so the fuzzer spends its time in the entries' own parser.
pub fn operations(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // TOML basic strings: escape what would end the string or the line.
    let entries: Vec<String> = text.lines().map(toml_string).collect();
    let config = format!(
        "service = \"latch\"\noperations = [{}]\nstore = \"sqlite:///var/lib/lockserver/pairings.db\"\n\n\
         [latch]\napp_id = \"abcdefghijklmnopqrst\"\nsecret = \"{}\"\n",
        entries.join(", "),
        "s".repeat(40)
    );
    match Config::parse_str(&config) {
        Ok(c) => {
            for line in text.lines() {
                let name = line.split(':').next().unwrap_or("");
                let _ = c.operation_rule(name);
                let _ = c.has_operation(name);
            }
        }
        Err(e) => drop(e.to_string()),
    }
}

/// A TOML basic string holding `s` exactly.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The message dictionary (XML): any text must parse or give a line-numbered error; lookups and
/// formatting of what parsed must not panic.
pub fn dictionary(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Dictionary::parse(text) {
        for section in [Section::Lock, Section::Pairing, Section::Totp] {
            let _ = d.get(section, "paired");
            let _ = d.format(section, "paired", &[("user", "alice")]);
            let _ = d.format(section, "error", &[("code", "{message}"), ("message", text)]);
            let _ = d.service_error(section, "pairerror", 206, text);
        }
    }
}

/// Latch API answers: the first two bytes are the HTTP status, the rest the body. Every reading the
/// client makes of an answer (envelope, status, pairing, TOTP enrolment, operation list) must end in a
/// value or a `ServiceError`.
pub fn latch_answer(data: &[u8]) {
    let (status, body) = match data {
        [a, b, rest @ ..] => {
            // Mostly 200 (the interesting parse), sometimes any status.
            let s = u16::from_be_bytes([*a, *b]);
            (if s % 4 == 0 { s % 600 } else { 200 }, rest)
        }
        _ => (200, data),
    };
    let reply = Reply {
        status,
        body: body.to_vec(),
    };
    match response::envelope(&reply) {
        Ok(data) => {
            for queried in ["OperationA0000000001", "abcdefghijklmnopqrst"] {
                let access = response::status(data.clone(), queried);
                agrees_with_serde_json(body, queried, access.as_ref().ok());
            }
            let _ = response::account_id(data.clone());
            let _ = response::operation_ids(data.clone());
            let _ = response::totp_enrolment(data);
        }
        Err(e) => drop(e.to_string()),
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = response::is_id(text);
        let _ = response::map_error(u32::from(status), text.to_string()).to_string();
    }
}

/// What the Latch reading made of a status answer must be what any JSON reader makes of it: an
/// opening only for `"on"`, a lock only for `"off"` (a strict reader and serde_json can disagree only
/// on a repeated key, which the strict one refuses).
fn agrees_with_serde_json(body: &[u8], queried: &str, access: Option<&Access<'_>>) {
    let Some(access) = access else { return };
    let value: serde_json::Value = serde_json::from_slice(body).expect("an accepted answer is JSON");
    let status = &value["data"]["operations"][queried]["status"];
    match access {
        Access::Open | Access::CodeRequired(_) => assert_eq!(status, "on", "opened on {status}"),
        Access::Locked => assert_eq!(status, "off", "locked on {status}"),
        other => panic!("a Latch status answer read as {other:?}"),
    }
    if matches!(access, Access::Open) {
        assert!(
            value["data"]["operations"][queried]
                .get("two_factor")
                .is_none_or(serde_json::Value::is_null),
            "opened without asking the two_factor token"
        );
    }
}

/// The one escaping function for log lines and terminal texts: whatever a server, a certificate, a
/// user name or a config value holds, the escaped text has no control, line-separator, bidi or format
/// character, stays within its length cap, and a quoted field has no bare quote inside.
pub fn escape(data: &[u8]) {
    use lockserver::escape::{MAX_FIELD_CHARS, escape, field, for_log_line, for_terminal, is_unsafe, quoted};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The cap, plus the "...[N more bytes]" marker, and each kept character escaped (at most
    // `\u{10ffff}`, 10 characters).
    let bound = |max: usize| max * 10 + 40;
    for (out, max, newlines) in [
        (escape(text), MAX_FIELD_CHARS, false),
        (quoted(text), MAX_FIELD_CHARS, false),
        (field(text), MAX_FIELD_CHARS, false),
        (for_log_line(text, 80), 80, false),
        (for_terminal(text, 80), 80, true),
    ] {
        assert!(
            out.chars().all(|c| !is_unsafe(c) || (newlines && c == '\n')),
            "an unsafe character kept in {out:?}"
        );
        assert!(
            out.chars().count() <= bound(max),
            "{} characters for a cap of {max}",
            out.chars().count()
        );
    }
    let q = quoted(text);
    let inner = &q[1..q.len() - 1];
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => drop(chars.next()),
            '"' => panic!("a bare quote inside {q:?}"),
            _ => {}
        }
    }
}

/// The DER walk that reads a certificate's issuer and subject names (the TLS verifier picks trust
/// anchors by them): any bytes give two names or none, and names are pieces of the input.
pub fn certificate_names(data: &[u8]) {
    if let Some((issuer, subject)) = lockserver::service::tls::issuer_and_subject(data) {
        let inside = |part: &[u8]| data.as_ptr_range().contains(&part.as_ptr()) || part.is_empty();
        assert!(inside(issuer) && inside(subject), "a name outside the input");
        assert!(issuer.len() + subject.len() < data.len(), "names longer than the input");
    }
}
