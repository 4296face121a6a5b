//! Request bodies and query strings, read so that a bad one is answered in the reference's
//! words (rpc-behaviour §2.3): `error.data` lists `"<json path>: <message>"` entries such as
//! `"/operator_id: must be integer"`, never a parser's own text.
//!
//! A body is parsed as JSON first (not JSON: 400 `Parse error`, with the position of the
//! fault), then read into its type through `serde_path_to_error`, which says where the
//! mistake is; [`describe`] puts serde's standard complaints into AJV's wording.

use crate::RpcError;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use warp::Filter;

/// A JSON object body read into `T`; rejections carry the [`RpcError`] to answer. serde
/// would also fill a struct from an array of its fields; the reference's bodies are objects.
pub fn object<T: DeserializeOwned + Send>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    raw(limit).and_then(|kind: Option<String>, bytes: Bytes| async move {
        read_object(kind.as_deref(), &bytes).map_err(warp::reject::custom)
    })
}

/// An object body that may be absent or blank (then `T::default()`), for routes whose
/// published form has no body but that take optional fields.
pub fn optional_object<T: DeserializeOwned + Default + Send>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    raw(limit).and_then(|kind: Option<String>, bytes: Bytes| async move {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        read_object(kind.as_deref(), &bytes).map_err(warp::reject::custom)
    })
}

/// Any JSON body, for routes that check its shape themselves.
pub fn value(limit: u64) -> impl Filter<Extract = (Value,), Error = warp::Rejection> + Clone {
    raw(limit).and_then(|kind: Option<String>, bytes: Bytes| async move {
        parse(kind.as_deref(), &bytes).map_err(warp::reject::custom)
    })
}

/// A query string read into `T` (every value is a string there: numbers and booleans are
/// read from their text), with the same answers as bodies.
pub fn query<T: DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    warp::query::<Vec<(String, String)>>()
        .or(warp::any().map(Vec::new))
        .unify()
        .and_then(|pairs: Vec<(String, String)>| async move {
            from_query(&pairs).map_err(warp::reject::custom)
        })
}

/// A header's value as text whatever its bytes (read as lossy UTF-8), `None` when absent.
/// warp's typed reading rejects a value that is not visible ASCII, which only a 500 would
/// answer; read so, a strange `Content-Type` is simply not JSON (415).
pub fn header_text(
    name: &'static str,
) -> impl Filter<Extract = (Option<String>,), Error = std::convert::Infallible> + Clone {
    warp::header::value(name)
        .map(|v: warp::http::HeaderValue| Some(String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .or(warp::any().map(|| None))
        .unify()
}

/// The body's bytes and declared type, within `limit` bytes (413 past it).
fn raw(
    limit: u64,
) -> impl Filter<Extract = (Option<String>, Bytes), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |length: Option<u64>| async move {
            match length {
                Some(n) if n > limit => Err(warp::reject::custom(RpcError::payload_too_large())),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(header_text("content-type"))
        .and(warp::body::bytes())
        .and_then(move |kind: Option<String>, bytes: Bytes| async move {
            if bytes.len() as u64 > limit {
                return Err(warp::reject::custom(RpcError::payload_too_large()));
            }
            Ok((kind, bytes))
        })
        .untuple_one()
}

/// `bytes` as JSON, or the error to answer. A declared type other than JSON is refused
/// (415); none at all is read as JSON, as clients written against the reference send.
pub fn parse(kind: Option<&str>, bytes: &[u8]) -> Result<Value, RpcError> {
    let json = kind.is_none_or(|k| {
        k.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(RpcError::unsupported_media_type());
    }
    let value = serde_json::from_slice(bytes).map_err(|e| RpcError::parse_error(&e))?;
    let mut faults = Vec::new();
    nul_characters(&value, "", &mut faults);
    if faults.is_empty() {
        Ok(value)
    } else {
        Err(RpcError::invalid_params(faults))
    }
}

/// What no field of ours can hold: the character U+0000 (PostgreSQL refuses it in text and
/// in JSON, so it would otherwise fail deep in a store call). One entry per string, or key,
/// that contains it.
fn nul_characters(value: &Value, path: &str, faults: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains('\0') => faults.push(format!("{path}: {NUL_MESSAGE}")),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nul_characters(item, &format!("{path}/{i}"), faults);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    faults.push(format!("{path}: {NUL_MESSAGE} in a property name"));
                } else {
                    nul_characters(item, &format!("{path}/{key}"), faults);
                }
            }
        }
        _ => {}
    }
}

const NUL_MESSAGE: &str = "must not contain the character U+0000";

/// `bytes` as a JSON object read into `T`, or the error to answer.
pub fn read_object<T: DeserializeOwned>(kind: Option<&str>, bytes: &[u8]) -> Result<T, RpcError> {
    match parse(kind, bytes)? {
        value @ Value::Object(_) => from_value(value),
        _ => Err(RpcError::invalid_params(vec![
            ": must be object".to_owned(),
        ])),
    }
}

/// `value` as a `T`, or 400 `Invalid params` saying where and what.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, RpcError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| RpcError::invalid_params(vec![describe(&e)]))
}

/// A query's pairs as a `T`: a value that reads as a JSON number or boolean is offered as
/// one, and as its text again where the type wants a string, so `operator_id=12` fills an
/// integer, `name=12` a string, and `operator_id=x` is "must be integer". A name given twice
/// keeps its last value.
fn from_query<T: DeserializeOwned>(pairs: &[(String, String)]) -> Result<T, RpcError> {
    let faults: Vec<String> = pairs
        .iter()
        .filter(|(name, text)| name.contains('\0') || text.contains('\0'))
        .map(|(name, _)| format!("/{}: {NUL_MESSAGE}", name.replace('\0', "")))
        .collect();
    if !faults.is_empty() {
        return Err(RpcError::invalid_params(faults));
    }
    let mut object: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(name, text)| {
            let value = match serde_json::from_str::<Value>(text) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                _ => Value::String(text.clone()),
            };
            (name.clone(), value)
        })
        .collect();
    // Each retry turns one more value back into its text: at most one per pair.
    for _ in 0..=pairs.len() {
        let error = match serde_path_to_error::deserialize(Value::Object(object.clone())) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let wanted_text = error.inner().to_string().starts_with("invalid type: ")
            && json_type(expected(&error.inner().to_string())) == "string";
        let name = match error.path().iter().collect::<Vec<_>>().as_slice() {
            [serde_path_to_error::Segment::Map { key }] => key.clone(),
            _ => String::new(),
        };
        let text = pairs.iter().rev().find(|(n, _)| *n == name).map(|(_, t)| t);
        match (wanted_text, text) {
            (true, Some(text)) if object.get(&name) != Some(&Value::String(text.clone())) => {
                object.insert(name, Value::String(text.clone()));
            }
            _ => return Err(RpcError::invalid_params(vec![describe(&error)])),
        }
    }
    Err(RpcError::invalid_params(vec![": must be valid".to_owned()]))
}

/// What serde's "invalid type: …, expected …" expected.
fn expected(message: &str) -> &str {
    message.split_once(", expected ").map_or("", |(_, e)| e)
}

/// One `"<json path>: <message>"` entry for a value that did not fit its type.
pub fn describe(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let mut path = String::new();
    for segment in error.path().iter() {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Seq { index } => path.push_str(&format!("/{index}")),
            Segment::Map { key } => path.push_str(&format!("/{key}")),
            Segment::Enum { variant } => path.push_str(&format!("/{variant}")),
            Segment::Unknown => {}
        }
    }
    let message = error.inner().to_string();
    // Unknown fields are reported at the field itself; AJV reports them at their object.
    if let Some(field) = quoted_after(&message, "unknown field `") {
        let object = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        return format!("{object}: must NOT have additional properties ('{field}')");
    }
    format!("{path}: {}", wording(&message))
}

/// AJV's wording for one of serde's standard complaints; our own types' messages, already
/// in that wording, pass; anything else (a library's own text) becomes a plain sentence.
fn wording(message: &str) -> String {
    if let Some(field) = quoted_after(message, "missing field `") {
        return format!("must have required property '{field}'");
    }
    if message.starts_with("invalid type: ") {
        return format!("must be {}", json_type(expected(message)));
    }
    if message.starts_with("invalid value: ") {
        let expected = expected(message);
        return match json_type(expected) {
            "integer" => format!("must be an integer within the range of {expected}"),
            other => format!("must be a valid {other}"),
        };
    }
    if message.starts_with("unknown variant `") {
        return "must be equal to one of the allowed values".to_owned();
    }
    if message.starts_with("invalid length ") {
        return "must have the expected number of items".to_owned();
    }
    if message.starts_with("must ") {
        return message.to_owned();
    }
    "must be valid".to_owned()
}

/// The JSON type serde's "expected …" names (its visitors' `expecting` texts).
fn json_type(expected: &str) -> &'static str {
    let e = expected.trim_start_matches("a ").trim_start_matches("an ");
    match e {
        _ if e.starts_with('i') && e[1..].chars().all(|c| c.is_ascii_digit()) => "integer",
        _ if e.starts_with('u') && e[1..].chars().all(|c| c.is_ascii_digit()) => "integer",
        "isize" | "usize" | "integer" => "integer",
        "f32" | "f64" | "number" | "floating point" => "number",
        "boolean" | "bool" => "boolean",
        "sequence" | "tuple" | "array" => "array",
        _ if e.starts_with("struct ") || e.starts_with("map") || e.starts_with("object") => {
            "object"
        }
        _ if e.starts_with("tuple") => "array",
        _ => "string",
    }
}

/// The text between `start` and the next backquote.
fn quoted_after<'a>(message: &'a str, start: &str) -> Option<&'a str> {
    message.strip_prefix(start)?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        operator_id: Option<i64>,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        flag: Option<bool>,
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        id: Option<uuid::Uuid>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        kind: Kind,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Short,
    }

    fn error(value: Value) -> Vec<String> {
        let bytes = serde_json::to_vec(&value).expect("json");
        let e = read_object::<Body>(None, &bytes).expect_err("refused");
        match e.data {
            Some(Value::Array(entries)) => entries
                .into_iter()
                .map(|v| v.as_str().expect("string").to_owned())
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_content_type_that_is_not_text_is_not_json_rather_than_a_server_error() {
        let route = object::<Body>(1024)
            .map(|_: Body| "read")
            .recover(crate::error::recover);
        let bytes = warp::http::HeaderValue::from_bytes(b"application/json\x80").unwrap();
        let response = warp::test::request()
            .method("POST")
            .header("content-type", bytes)
            .body(r#"{"name":"x"}"#)
            .reply(&route)
            .await;
        assert_eq!(response.status(), 415);
        let plain = warp::test::request()
            .method("POST")
            .header("content-type", "application/json")
            .body(r#"{"name":"x"}"#)
            .reply(&route)
            .await;
        assert_eq!(plain.status(), 200);
    }

    #[test]
    fn the_nul_character_is_refused_wherever_it_is() {
        assert_eq!(
            error(json!({"name": "a\u{0}b"})),
            ["/name: must not contain the character U+0000"]
        );
        let deep = json!({"name": "x", "items": [{"kind": "short\u{0}"}]});
        assert_eq!(
            error(deep),
            ["/items/0/kind: must not contain the character U+0000"]
        );
        let value = br#"{"a": {"b\u0000": 1}}"#;
        let e = parse(None, value).expect_err("refused");
        assert_eq!(
            e.data,
            Some(json!([
                "/a: must not contain the character U+0000 in a property name"
            ]))
        );
        let pairs = [("limit".to_owned(), "1\u{0}".to_owned())];
        let e = from_query::<Body>(&pairs).expect_err("refused");
        assert_eq!(
            e.data,
            Some(json!(["/limit: must not contain the character U+0000"]))
        );
    }

    #[test]
    fn each_kind_of_mistake_is_said_in_the_references_words() {
        let cases = [
            (json!({}), ": must have required property 'name'"),
            (json!([]), ": must be object"),
            (json!("x"), ": must be object"),
            (json!({"name": 1}), "/name: must be string"),
            (
                json!({"name": "a", "operator_id": "wrong"}),
                "/operator_id: must be integer",
            ),
            (
                json!({"name": "a", "operator_id": 1.5}),
                "/operator_id: must be integer",
            ),
            (
                json!({"name": "a", "count": -1}),
                "/count: must be an integer within the range of u32",
            ),
            (
                json!({"name": "a", "flag": "yes"}),
                "/flag: must be boolean",
            ),
            (json!({"name": "a", "items": {}}), "/items: must be array"),
            (
                json!({"name": "a", "items": [{"kind": "long"}]}),
                "/items/0/kind: must be equal to one of the allowed values",
            ),
            (
                json!({"name": "a", "items": [{}]}),
                "/items/0: must have required property 'kind'",
            ),
            (
                json!({"name": "a", "extra": 1}),
                ": must NOT have additional properties ('extra')",
            ),
            (
                json!({"name": "a", "items": [{"kind": "short", "x": 1}]}),
                "/items/0: must NOT have additional properties ('x')",
            ),
            (
                json!({"name": "a", "id": "not-a-uuid"}),
                "/id: must be valid",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(error(value.clone()), vec![expected.to_owned()], "{value}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_gets_the_parse_error_without_the_parsers_text() {
        for bytes in [&b""[..], b"{", b"{\"name\": }", b"not json", b"{\"a\":1}}"] {
            let e = read_object::<Body>(Some("application/json"), bytes).expect_err("refused");
            assert_eq!(
                (e.status.as_u16(), e.code, e.message),
                (400, -32700, "Parse error")
            );
            let data = e.data.expect("data").to_string();
            assert!(data.starts_with("[\": must be valid JSON (line "), "{data}");
            for parser_words in ["EOF", "expected", "trailing", "deserialize"] {
                assert!(!data.contains(parser_words), "{data}");
            }
        }
    }

    #[test]
    fn queries_read_numbers_and_booleans_from_their_text() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let body: Body = from_query(&pairs(&[
            ("name", "12"),
            ("operator_id", "12"),
            ("flag", "true"),
        ]))
        .unwrap_or_else(|e| panic!("{:?}", e.data));
        assert_eq!(
            (body.name.as_str(), body.operator_id, body.flag),
            ("12", Some(12), Some(true))
        );
        let e = from_query::<Body>(&pairs(&[("name", "a"), ("operator_id", "x")])).expect_err("x");
        assert_eq!(e.data, Some(json!(["/operator_id: must be integer"])));
        let e = from_query::<Body>(&pairs(&[("name", "a"), ("other", "1")])).expect_err("other");
        assert_eq!(
            e.data,
            Some(json!([": must NOT have additional properties ('other')"]))
        );
    }
}
