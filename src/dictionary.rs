//! Every text a user sees, at login or in the CLI: built-in English defaults, overridden by the XML
//! dictionary named by `dictionary` in the config (the seed's shape:
//! `<translations><totp><invalidcode>…</invalidcode></totp></translations>`).
//!
//! Texts may hold `{user}`, `{code}` and `{message}` placeholders. A service error code without a tag of
//! its own (`validateerror306`, `pairerror206`, …) shows the section's generic text with the service's own
//! message, so no error is ever shown as a bare number.

#![forbid(unsafe_code)]

use crate::config::{Config, check_permissions};
use quick_xml::Reader;
use quick_xml::events::Event;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A section of the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// The lock check at login.
    Lock,
    /// Pairing and unpairing.
    Pairing,
    /// TOTP enrolment and codes.
    Totp,
    /// The PingID login: push and one-time code texts, one per final status (`rejected`, `timeout`,
    /// …) and `error<HTTP status>`. A key missing here is looked up in [`Section::Lock`].
    Pingid,
}

impl Section {
    fn from_tag(tag: &str) -> Option<Section> {
        match tag {
            "lock" => Some(Section::Lock),
            "pairing" => Some(Section::Pairing),
            "totp" => Some(Section::Totp),
            "pingid" => Some(Section::Pingid),
            _ => None,
        }
    }

    /// The section of the texts a login with this service shows.
    pub fn for_service(service: crate::config::ServiceKind) -> Section {
        match service {
            crate::config::ServiceKind::Latch => Section::Lock,
            crate::config::ServiceKind::Pingid => Section::Pingid,
        }
    }
}

/// The built-in English texts. Error-code tags (`validateerrorNNN`, `pairerrorNNN`) are looked up by code.
const DEFAULTS: &[(Section, &str, &str)] = &[
    (
        Section::Lock,
        "locked",
        "Access denied: your Latch is locked. Unlock it in the Latch app and try again.",
    ),
    (Section::Lock, "otp_prompt", "Latch one-time password: "),
    (Section::Lock, "otp_invalid", "The one-time password is not right."),
    (
        Section::Lock,
        "otp_needs_prompt",
        "This login needs a one-time code, which a key-only login cannot ask: log in with keyboard-interactive authentication.",
    ),
    (
        Section::Lock,
        "unavailable",
        "The lock server cannot be reached. Try again later.",
    ),
    (
        Section::Lock,
        "misconfigured",
        "Login is not possible: lockserver is misconfigured. Contact your administrator.",
    ),
    (
        Section::Lock,
        "not_paired",
        "Access denied: this account is not paired with the lock server.",
    ),
    (
        Section::Lock,
        "unpaired_at_service",
        "Access denied: the pairing of this account was removed at the lock server (from the phone). \
         Ask your administrator to pair it again or to remove it.",
    ),
    (
        Section::Lock,
        "error",
        "The lock server refused the request ({code}: {message}).",
    ),
    (
        Section::Pairing,
        "paired",
        "{user} is now paired: logins are refused while the latch is locked.",
    ),
    (
        Section::Pairing,
        "already_paired",
        "{user} is already paired. Run `lockserver unpair` first to pair again.",
    ),
    (Section::Pairing, "unpaired", "{user} is no longer paired."),
    (
        Section::Pairing,
        "not_paired",
        "{user} is not paired. Run `lockserver pair CODE` with a code from the Latch app.",
    ),
    (
        Section::Pairing,
        "invalid_code",
        "That is not a pairing code: it has 6 letters or digits, as shown in the Latch app.",
    ),
    (
        Section::Pairing,
        "pairerror205",
        "This Latch account is already paired with this application.",
    ),
    (
        Section::Pairing,
        "pairerror206",
        "The pairing code has expired or is not valid. Ask the Latch app for a new code and run `lockserver pair CODE` again.",
    ),
    (
        Section::Pairing,
        "error",
        "Pairing failed: the lock server said {message} (code {code}).",
    ),
    (
        Section::Pairing,
        "not_paired_key",
        "{user} is not paired. Run `lockserver pairing-key create --user {user}` and enter the key in the PingID app.",
    ),
    (
        Section::Pairing,
        "paired_key",
        "{user} is now paired: logins ask for approval on the phone.",
    ),
    (
        Section::Pairing,
        "key_created",
        "Enter this pairing key in the PingID app (or scan the QR code), then run `lockserver pair --user {user}`.",
    ),
    (
        Section::Pairing,
        "key_not_claimed",
        "{user} is not paired yet: enter pairing key {code} in the app first.",
    ),
    (
        Section::Pairing,
        "no_pending_key",
        "{user} has no pairing key: run `lockserver pairing-key create --user {user}` first.",
    ),
    (
        Section::Pairing,
        "wrong_flow_code",
        "This service pairs with a key the host makes: run `lockserver pairing-key create --user {user}`.",
    ),
    (
        Section::Pairing,
        "wrong_flow_key",
        "This service pairs with a code from the phone app: run `lockserver pair CODE`.",
    ),
    (Section::Pingid, "approve_on_phone", "Approve the login on your phone."),
    (
        Section::Pingid,
        "rejected",
        "Access denied: the login was rejected on your phone.",
    ),
    (
        Section::Pingid,
        "timeout",
        "Access denied: the phone did not answer in time.",
    ),
    (Section::Pingid, "canceled", "Access denied: the login was cancelled."),
    (
        Section::Pingid,
        "locked",
        "Access denied: your PingID account is locked. Contact your administrator.",
    ),
    (
        Section::Pingid,
        "otp_blocked",
        "Access denied: verification codes are blocked for your account for now. Try again later.",
    ),
    (
        Section::Pingid,
        "ignored_device",
        "Access denied: your phone is set to ignore this request.",
    ),
    (
        Section::Pingid,
        "bypassed_device",
        "Access denied: your device is in bypass mode, which this system does not accept.",
    ),
    (
        Section::Pingid,
        "device_rooted",
        "Access denied: your phone is rooted or jailbroken.",
    ),
    (
        Section::Pingid,
        "select_device",
        "Access denied: choose a primary device in the PingID app and try again.",
    ),
    (Section::Pingid, "otp_prompt", "Verification code: "),
    (Section::Pingid, "invalid_otp", "The verification code is not right."),
    (
        Section::Pingid,
        "otp_needs_prompt",
        "This login needs a verification code, which a key-only login cannot ask: log in with keyboard-interactive authentication.",
    ),
    (
        Section::Pingid,
        "not_paired",
        "Access denied: this account is not paired with PingID.",
    ),
    (
        Section::Pingid,
        "error",
        "PingID refused the request ({code}: {message}).",
    ),
    (Section::Totp, "two_fa_field_tooltip", "Verification code: "),
    (Section::Totp, "two_fa_button_tooltip", "Verify"),
    (Section::Totp, "invalidcode", "The verification code is not right."),
    (Section::Totp, "validateerror306", "The verification code is not right."),
    (Section::Totp, "validateerror401", "No verification code was given."),
    (
        Section::Totp,
        "validateerror402",
        "The verification code has the wrong format.",
    ),
    (
        Section::Totp,
        "operationdisabled",
        "Two-factor codes are switched off on this system.",
    ),
    (
        Section::Totp,
        "too_many_attempts",
        "Too many wrong codes. Try again later.",
    ),
    (
        Section::Totp,
        "enabled",
        "Two-factor codes are now on for {user}. Scan the QR code with the app.",
    ),
    (Section::Totp, "disabled", "Two-factor codes are now off for {user}."),
    (
        Section::Totp,
        "not_enabled",
        "{user} has no two-factor code set up. Run `lockserver totp create`.",
    ),
    (
        Section::Totp,
        "error",
        "The verification failed: the lock server said {message} (code {code}).",
    ),
];

/// The texts, built-in defaults overridden by a dictionary file.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    overrides: HashMap<(Section, String), String>,
}

/// A dictionary file that cannot be used: which file, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictionaryError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for DictionaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for DictionaryError {}

impl Dictionary {
    /// The built-in English texts.
    pub fn builtin() -> Dictionary {
        Dictionary::default()
    }

    /// The texts a config names: the built-in ones, or those of its `dictionary` file after the
    /// file's ownership and mode are checked (whoever can write it writes what users are asked at the
    /// prompt). The one way the PAM module and the CLI load it.
    pub fn for_config(config: &Config, trusted_owner: Option<u32>) -> Result<Dictionary, String> {
        match &config.dictionary {
            None => Ok(Dictionary::builtin()),
            Some(path) => {
                check_permissions(path, false, trusted_owner)?;
                Dictionary::load(path).map_err(|e| e.to_string())
            }
        }
    }

    /// The built-in texts overridden by the XML file at `path` (no permission check: see
    /// [`Dictionary::for_config`]).
    pub fn load(path: &Path) -> Result<Dictionary, DictionaryError> {
        let text = std::fs::read_to_string(path).map_err(|e| DictionaryError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        Dictionary::parse(&text).map_err(|(pos, message)| {
            let (line, column) = line_col(&text, pos);
            DictionaryError {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })
    }

    /// Parses the XML text; an error carries the byte offset where it was found.
    pub fn parse(text: &str) -> Result<Dictionary, (usize, String)> {
        let mut reader = Reader::from_str(text);
        let mut stack: Vec<String> = Vec::new();
        let mut current_text = String::new();
        let mut overrides = HashMap::new();
        let mut saw_root = false;
        loop {
            let pos = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
            let event = reader.read_event().map_err(|e| (pos, e.to_string()))?;
            match event {
                Event::Empty(e) => {
                    // `<invalidcode/>`: an empty tag, which falls back to the default.
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    if stack.is_empty() {
                        return Err((pos, format!("the root element must be <translations>, not <{name}/>")));
                    }
                }
                Event::Start(e) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    if stack.is_empty() && name != "translations" {
                        return Err((pos, format!("the root element must be <translations>, not <{name}>")));
                    }
                    saw_root = true;
                    if stack.len() >= 3 {
                        return Err((pos, format!("<{name}> is nested too deep")));
                    }
                    stack.push(name);
                    current_text.clear();
                }
                Event::End(_) => {
                    if stack.len() == 3
                        && let Some(section) = Section::from_tag(&stack[1])
                    {
                        let value = current_text.trim();
                        if !value.is_empty() {
                            overrides.insert((section, stack[2].clone()), value.to_string());
                        }
                    }
                    stack.pop();
                    current_text.clear();
                }
                Event::Text(t) => {
                    let s = t.xml_content().map_err(|e| (pos, e.to_string()))?;
                    current_text.push_str(&s);
                }
                Event::GeneralRef(r) => {
                    let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                    let ch = match name.as_str() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => return Err((pos, format!("unknown entity &{name};"))),
                    };
                    current_text.push_str(ch);
                }
                Event::CData(t) => current_text.push_str(&String::from_utf8_lossy(&t)),
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err((text.len(), format!("<{}> is not closed", stack.join("><"))));
        }
        if !saw_root {
            return Err((0, "no <translations> element".into()));
        }
        Ok(Dictionary { overrides })
    }

    /// The text for `key` in `section`, with placeholders left as they are.
    pub fn get<'s>(&'s self, section: Section, key: &'s str) -> &'s str {
        match self.lookup(section, key) {
            Some(v) => v,
            None if section == Section::Pingid => self.lookup(Section::Lock, key).unwrap_or(key),
            None => key,
        }
    }

    fn lookup(&self, section: Section, key: &str) -> Option<&str> {
        if let Some(v) = self.overrides.get(&(section, key.to_string())) {
            return Some(v);
        }
        DEFAULTS
            .iter()
            .find(|(s, k, _)| *s == section && *k == key)
            .map(|(_, _, v)| *v)
    }

    /// The text for `key` with `{name}` placeholders filled in.
    pub fn format(&self, section: Section, key: &str, args: &[(&str, &str)]) -> String {
        fill(self.get(section, key), args)
    }

    /// The text for a service error `code`: the tag `{prefix}{code}` if the dictionary or the defaults
    /// have one, else the section's generic `error` text with the service's own message.
    pub fn service_error(&self, section: Section, prefix: &str, code: u32, message: &str) -> String {
        let key = format!("{prefix}{code}");
        let has_tag = self.overrides.contains_key(&(section, key.clone()))
            || DEFAULTS.iter().any(|(s, k, _)| *s == section && *k == key);
        let code_text = code.to_string();
        let args = [("code", code_text.as_str()), ("message", message)];
        if has_tag {
            self.format(section, &key, &args)
        } else {
            self.format(section, "error", &args)
        }
    }
}

/// The template with its placeholders filled; the values (a server's message, a user name) are
/// escaped, so they cannot add lines or reorder what the terminal shows.
fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), &crate::escape::escape(value));
    }
    out
}

fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut end = pos.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_empty_tag_and_fallback() {
        let d = Dictionary::parse(
            "<?xml version=\"1.0\"?>\n<translations><totp><invalidcode>Mal</invalidcode>\
             <validateerror306></validateerror306><validateerror999>Nope &amp; no</validateerror999></totp></translations>",
        )
        .expect("valid");
        assert_eq!(d.get(Section::Totp, "invalidcode"), "Mal");
        // An empty tag falls back to the default.
        assert_eq!(
            d.service_error(Section::Totp, "validateerror", 306, "x"),
            "The verification code is not right."
        );
        assert_eq!(d.service_error(Section::Totp, "validateerror", 999, "x"), "Nope & no");
        // No tag: the generic text with the service's message.
        let generic = d.service_error(Section::Totp, "validateerror", 708, "Limit reached");
        assert!(
            generic.contains("Limit reached") && generic.contains("708"),
            "{generic}"
        );
    }

    #[test]
    fn placeholders_are_filled() {
        let d = Dictionary::builtin();
        assert!(
            d.format(Section::Pairing, "paired", &[("user", "alice")])
                .starts_with("alice is now paired")
        );
    }

    #[test]
    fn malformed_file_names_position() {
        let err = Dictionary::parse("<translations>\n<totp><invalidcode>x</totp>").expect_err("mismatched");
        assert!(err.0 > 0, "{err:?}");
        let (line, _) = line_col("<translations>\n<totp><invalidcode>x</totp>", err.0);
        assert_eq!(line, 2);
        assert!(Dictionary::parse("<other/>").is_err());
        assert!(Dictionary::parse("<translations><totp>").is_err());
    }
}
