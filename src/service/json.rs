//! JSON answers of a service, read strictly: an object that gives one key twice (two `status` fields,
//! two entries for one operation, `error` twice), at any depth, is ambiguous — two readers could take
//! different values from it — and is refused instead of keeping the last value as `serde_json` does.

#![forbid(unsafe_code)]

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (or trailing garbage).
    Syntax,
    /// An object gives this key more than once.
    DuplicateKey(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax => f.write_str("not JSON"),
            JsonError::DuplicateKey(key) => {
                write!(
                    f,
                    "ambiguous: the key {} appears twice in one object",
                    crate::escape::quoted(key)
                )
            }
        }
    }
}

/// Parses `body`, refusing duplicated keys anywhere in it.
pub fn parse_unique(body: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = UniqueValue.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| JsonError::Syntax)?;
    Ok(value)
}

const DUPLICATE_TAG: &str = "lockserver-duplicate-key:";

fn classify(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    match text.strip_prefix(DUPLICATE_TAG) {
        // serde_json appends " at line L column C" to custom errors.
        Some(rest) => JsonError::DuplicateKey(rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k).to_string()),
        None => JsonError::Syntax,
    }
}

/// A [`Value`] built while checking every object for repeated keys.
struct UniqueValue;

impl<'de> DeserializeSeed<'de> for UniqueValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_TAG}{key}")));
            }
            let value = map.next_value_seed(UniqueValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_answer_reads_as_serde_json_reads_it() {
        let body = br#"{"data":{"operations":{"A":{"status":"on","n":[1,-2,3.5,null,true]}}},"e":"\u00e9"}"#;
        let strict = parse_unique(body).expect("valid");
        let loose: Value = serde_json::from_slice(body).expect("valid");
        assert_eq!(strict, loose);
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth_in_any_order() {
        let cases: [&[u8]; 5] = [
            br#"{"data":{"operations":{"A":{"status":"on","status":"off"}}}}"#,
            br#"{"data":{"operations":{"A":{"status":"off","status":"on"}}}}"#,
            br#"{"data":{"operations":{"A":{"status":"on"},"A":{"status":"off"}}}}"#,
            br#"{"error":{"code":201},"data":{},"error":{"code":101}}"#,
            br#"[{"x":[{"k":1,"k":1}]}]"#,
        ];
        for body in cases {
            let e = parse_unique(body).expect_err(&String::from_utf8_lossy(body));
            assert!(matches!(e, JsonError::DuplicateKey(_)), "{e:?}");
        }
        assert_eq!(
            parse_unique(br#"{"a":{"status":1,"status":2}}"#),
            Err(JsonError::DuplicateKey("status".into()))
        );
    }

    #[test]
    fn not_json_is_a_syntax_error() {
        assert_eq!(parse_unique(b"{\"a\":1} x"), Err(JsonError::Syntax));
        assert_eq!(parse_unique(b"<html>"), Err(JsonError::Syntax));
    }
}
