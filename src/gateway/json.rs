//! The proto3 JSON mapping, from the descriptors (prost-reflect): a request's query, path variables
//! and JSON body become one message; a response message becomes JSON. Emitted JSON uses
//! lowerCamelCase names, 64-bit integers as strings, enums by name, `Timestamp` as RFC 3339, and
//! **every field without presence, default-valued or not** (so a client never has to know a
//! default); fields with presence (`optional` scalars, messages) appear only when set. Parsing
//! accepts both spellings of every name and refuses unknown fields.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    SerializeOptions,
};
use serde_json::{Map, Value};

/// Why a request could not become a message: the field and what was wrong, for an INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// How responses are written.
pub const SERIALIZE: SerializeOptions = SerializeOptions::new().skip_default_fields(false);

/// A message as JSON.
pub fn to_json(message: &DynamicMessage) -> Value {
    message
        .serialize_with_options(serde_json::value::Serializer, &SERIALIZE)
        .expect("messages serialize to JSON")
}

/// Builds the request message from a JSON body (`None` = none) and `fields` (query parameters and
/// path variables, as `(name, value)` text). A field given twice or both ways is refused.
pub fn request(
    desc: &MessageDescriptor,
    body: Option<&[u8]>,
    fields: &[(String, String)],
) -> Result<DynamicMessage, JsonError> {
    let mut object = match body {
        Some(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(JsonError(format!("the body must be a JSON object, got {}", kind_of(&other))))
            }
            Err(e) => return Err(JsonError(format!("the body is not JSON: {e}"))),
        },
        _ => Map::new(),
    };
    for (name, text) in fields {
        let field = find_field(desc, name)?;
        let value = text_value(&field, text)?;
        let key = field.json_name().to_owned();
        let present = object.contains_key(&key) || object.contains_key(field.name());
        match object.get_mut(&key) {
            Some(Value::Array(items)) if field.is_list() => items.push(value),
            _ if present => return Err(JsonError(format!("{}: given more than once", field.name()))),
            _ if field.is_list() => {
                object.insert(key, Value::Array(vec![value]));
            }
            _ => {
                object.insert(key, value);
            }
        }
    }
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    // The path names the field a value was wrong for (`ttlSeconds: invalid value: ...`).
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(Value::Object(object), &mut track);
    DynamicMessage::deserialize_with_options(desc.clone(), tracked, &options).map_err(|e| {
        match track.path().to_string() {
            path if path == "." => JsonError(e.to_string()),
            path => JsonError(format!("{path}: {e}")),
        }
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The field a query parameter names, by its proto or JSON name.
fn find_field(desc: &MessageDescriptor, name: &str) -> Result<FieldDescriptor, JsonError> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
        .ok_or_else(|| JsonError(format!("{name}: no such field in {}", desc.name())))
}

/// A query parameter's text as the JSON value the mapping expects for `field`.
fn text_value(field: &FieldDescriptor, text: &str) -> Result<Value, JsonError> {
    let bad = |what: &str| JsonError(format!("{}: must be {what}, got {text:?}", field.name()));
    Ok(match field.kind() {
        Kind::Bool => match text {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Kind::Enum(e) => Value::String(enum_name(&e, text).ok_or_else(|| bad(&enum_choices(&e)))?),
        Kind::Double | Kind::Float => match text {
            "NaN" | "Infinity" | "-Infinity" => Value::String(text.into()),
            _ => Value::Number(
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .ok_or_else(|| bad("a number"))?,
            ),
        },
        Kind::Message(m) => {
            return Err(JsonError(format!("{}: a {} cannot be given in the query", field.name(), m.name())))
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            int::<i32>(text).ok_or_else(|| bad("a 32-bit integer"))?
        }
        Kind::Uint32 | Kind::Fixed32 => int::<u32>(text).ok_or_else(|| bad("an unsigned 32-bit integer"))?,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            int::<i64>(text).ok_or_else(|| bad("a 64-bit integer"))?
        }
        Kind::Uint64 | Kind::Fixed64 => int::<u64>(text).ok_or_else(|| bad("an unsigned 64-bit integer"))?,
        Kind::String | Kind::Bytes => Value::String(text.into()),
    })
}

/// An integer query value, as the string the mapping accepts for every width, once it parses.
fn int<T: std::str::FromStr>(text: &str) -> Option<Value> {
    text.parse::<T>().ok().map(|_| Value::String(text.into()))
}

/// An enum value's full name from its full name, its number, or (on Maestro's own router) its
/// lower-case short name: `critical` for `SEVERITY_CRITICAL`.
fn enum_name(e: &EnumDescriptor, text: &str) -> Option<String> {
    if let Some(v) = e.get_value_by_name(text) {
        return Some(v.name().to_owned());
    }
    if let Some(v) = text.parse::<i32>().ok().and_then(|n| e.get_value(n)) {
        return Some(v.name().to_owned());
    }
    let prefix = enum_prefix(e);
    e.values()
        .find(|v| v.name().strip_prefix(&prefix).is_some_and(|short| short.eq_ignore_ascii_case(text)))
        .map(|v| v.name().to_owned())
}

/// `SEVERITY_` for `Severity`: the prefix every value of an enum shares by convention.
pub fn enum_prefix(e: &EnumDescriptor) -> String {
    let mut prefix = String::new();
    for (i, c) in e.name().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(c.to_ascii_uppercase());
    }
    prefix.push('_');
    prefix
}

fn enum_choices(e: &EnumDescriptor) -> String {
    let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
    format!("one of {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: &str) -> MessageDescriptor {
        super::super::pool().get_message_by_name(&format!("maestro.v1.{name}")).unwrap()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn query_values_take_every_spelling() {
        let desc = message("ListAlertsRequest");
        for (key, value) in [("severity", "critical"), ("severity", "SEVERITY_CRITICAL"), ("severity", "3")] {
            let m = request(&desc, None, &fields(&[(key, value), ("activeOnly", "true"), ("limit", "5")]))
                .unwrap();
            let json = to_json(&m);
            assert_eq!(json["severity"], "SEVERITY_CRITICAL", "{key}={value}");
            assert_eq!((json["activeOnly"].clone(), json["limit"].clone()), (Value::Bool(true), 5.into()));
        }
        let err = request(&desc, None, &fields(&[("severity", "urgent")])).unwrap_err();
        assert!(err.0.contains("severity: must be one of SEVERITY_UNSPECIFIED"), "{err}");
        let err = request(&desc, None, &fields(&[("nope", "1")])).unwrap_err();
        assert!(err.0.contains("nope: no such field"), "{err}");
        let err = request(&desc, None, &fields(&[("limit", "-1")])).unwrap_err();
        assert!(!err.0.is_empty());
        let err = request(&desc, None, &fields(&[("limit", "1"), ("limit", "2")])).unwrap_err();
        assert!(err.0.contains("more than once"), "{err}");
    }

    #[test]
    fn bodies_take_both_names_and_refuse_unknown_fields() {
        let desc = message("AllocateRequest");
        let a =
            request(&desc, Some(br#"{"owner":"x","cpuMemoryBytes":"1000","ttl_seconds":60}"#), &[]).unwrap();
        let json = to_json(&a);
        assert_eq!(json["cpuMemoryBytes"], "1000", "64-bit integers as strings");
        assert_eq!(json["gpuMemoryBytes"], "0", "default-valued fields are emitted");
        assert!(json.get("gpuIndex").is_none(), "unset optional fields are not");
        for (body, says) in [
            (&br#"{"owner":"x","bogus":1}"#[..], "bogus"),
            (b"[1]", "must be a JSON object"),
            (b"{", "not JSON"),
            (br#"{"ttlSeconds":-1}"#, ""),
        ] {
            let err = request(&desc, Some(body), &[]).unwrap_err();
            assert!(err.0.contains(says), "{err}");
        }
        assert!(request(&desc, Some(b"  \n"), &[]).is_ok(), "a blank body is an empty message");
    }
}
