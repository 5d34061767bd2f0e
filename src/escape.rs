//! Text written by others (servers, certificates, user names, config values) made safe for one log line
//! or one terminal message: nothing in it can end the line, forge another one or reorder what is shown.
//!
//! Escaped visibly as `\u{...}`: C0 and C1 controls and DEL, U+2028/U+2029, and every format character
//! (Unicode category Cf: bidi overrides and isolates U+202A–U+202E and U+2066–U+2069, zero-width
//! characters, the BOM, tags...). The length is capped: a 10 KB user name gives a short field.

#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// Longest text (in characters) any one field of a log line or message keeps.
pub const MAX_FIELD_CHARS: usize = 256;

/// Category Cf of Unicode 15 (the format characters), as inclusive ranges.
const FORMAT_CHARS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` must not appear as itself in a log line or on a terminal.
pub fn is_unsafe(c: char) -> bool {
    let n = c as u32;
    c.is_control() || n == 0x2028 || n == 0x2029 || FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

/// `s` with every unsafe character and every backslash escaped, cut to [`MAX_FIELD_CHARS`].
pub fn escape(s: &str) -> String {
    escape_with(s, MAX_FIELD_CHARS, false, false)
}

/// `s` escaped as by [`escape`] and put in double quotes (a quote inside is escaped): for user names and
/// server texts in log lines, so their end is never in doubt.
pub fn quoted(s: &str) -> String {
    escape_with(s, MAX_FIELD_CHARS, true, false)
}

/// A name (user, host, service) for a `key=value` log field: as it is when it is made only of letters,
/// digits and `.`, `_`, `-`, `@`, `:` (nothing to misread), else [`quoted`]; `-` when empty.
pub fn field(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    let plain = s.len() <= MAX_FIELD_CHARS
        && s.chars()
            .all(|c| c.is_alphanumeric() && !is_unsafe(c) || matches!(c, '.' | '_' | '-' | '@' | ':'));
    if plain { s.to_string() } else { quoted(s) }
}

/// A whole message for the user's terminal: like [`escape`], except that line breaks stay (dictionary
/// texts may have several lines) and backslashes stay as they are.
pub fn for_terminal(s: &str, max_chars: usize) -> String {
    escape_with(s, max_chars, false, true)
}

/// A whole log line, assembled from parts already escaped: unsafe characters (a line break included)
/// escaped again as a last defence, backslashes left as they are, the length capped.
pub fn for_log_line(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars + 32));
    push_escaped(&mut out, s, max_chars, false, false, false);
    out
}

fn escape_with(s: &str, max_chars: usize, quote: bool, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars) + 2);
    if quote {
        out.push('"');
    }
    push_escaped(&mut out, s, max_chars, quote, keep_newlines, !keep_newlines);
    if quote {
        out.push('"');
    }
    out
}

fn push_escaped(out: &mut String, s: &str, max_chars: usize, quote: bool, keep_newlines: bool, backslash: bool) {
    for (taken, (i, c)) in s.char_indices().enumerate() {
        if taken == max_chars {
            let _ = write!(out, "...[{} more bytes]", s.len() - i);
            return;
        }
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\\' if backslash => out.push_str("\\\\"),
            '"' if quote => out.push_str("\\\""),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("José Ñandú 東京"), "José Ñandú 東京");
        assert_eq!(quoted("alice"), "\"alice\"");
    }

    #[test]
    fn controls_and_format_characters_are_escaped_visibly() {
        assert_eq!(escape("a\nb"), "a\\u{a}b");
        assert_eq!(escape("a\rb\u{1b}[2J"), "a\\u{d}b\\u{1b}[2J");
        assert_eq!(escape("\u{85}\u{9b}"), "\\u{85}\\u{9b}"); // C1: NEL, CSI
        assert_eq!(escape("x\u{2028}y\u{2029}"), "x\\u{2028}y\\u{2029}");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        for c in [
            '\u{202a}',
            '\u{202d}',
            '\u{2066}',
            '\u{2069}',
            '\u{200b}',
            '\u{200d}',
            '\u{feff}',
            '\u{e0041}',
        ] {
            let out = escape(&format!("a{c}b"));
            assert!(!out.contains(c), "{c:?} kept in {out:?}");
            assert!(out.contains(&format!("\\u{{{:x}}}", c as u32)), "{out}");
        }
    }

    #[test]
    fn backslash_and_quote_cannot_fake_an_escape_or_the_field_end() {
        assert_eq!(escape("\\u{a}"), "\\\\u{a}");
        assert_eq!(quoted("a\" rhost=\"x"), "\"a\\\" rhost=\\\"x\"");
    }

    #[test]
    fn fields_are_quoted_unless_plain() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("192.0.2.7"), "192.0.2.7");
        assert_eq!(field(""), "-");
        assert_eq!(field("a b"), "\"a b\"");
        assert_eq!(field("x rhost=1.2.3.4"), "\"x rhost=1.2.3.4\"");
        assert_eq!(field("al\u{202e}ice"), "\"al\\u{202e}ice\"");
        assert!(field(&"a".repeat(10_000)).len() < 300);
    }

    #[test]
    fn length_is_capped() {
        let long = "a".repeat(10_000);
        let out = quoted(&long);
        assert!(out.len() < 300, "{}", out.len());
        assert!(out.contains("[9744 more bytes]"), "{out}");
        let out = escape(&"\u{202e}".repeat(10_000));
        assert!(out.len() < 256 * 9 + 40, "{}", out.len());
    }

    #[test]
    fn terminal_keeps_line_breaks_and_log_line_does_not() {
        assert_eq!(for_terminal("line 1\nline\u{202e} 2", 100), "line 1\nline\\u{202e} 2");
        assert_eq!(for_log_line("a\nb \\u{a}", 100), "a\\u{a}b \\u{a}");
        assert_eq!(for_log_line("abcdef", 3), "abc...[3 more bytes]");
    }
}
