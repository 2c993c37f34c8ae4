//! The OpenAPI 3.1 document of the HTTP API, generated from the same descriptors the router reads:
//! the `google.api.http` annotations give the operations, the messages give the schemas, the proto
//! comments give the descriptions. Served at `/api/v1/openapi.json`; `docs/openapi.json` is a copy
//! `tests/openapi.rs` keeps current.
//!
//! Schemas follow the JSON the API writes ([`super::json`]): lowerCamelCase names, 64-bit integers
//! as strings (a number is accepted in requests), enums by name, `Timestamp` as `date-time`. Every
//! field without presence is always written, so response schemas list those as `required`; request
//! messages require nothing (every field has a default).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use super::routes::{Route, Routes};

/// The document.
pub fn document(pool: &DescriptorPool, routes: &Routes) -> Value {
    let comments = Comments::new(pool);
    let inputs = reachable(routes.iter().map(|r| r.rpc.input()));
    let mut schemas = BTreeMap::new();
    let outputs: Vec<MessageDescriptor> = routes.iter().map(|r| r.rpc.output()).collect();
    for message in reachable(routes.iter().map(|r| r.rpc.input()).chain(outputs)) {
        schemas.insert(
            schema_name(&message),
            message_schema(&message, &comments, !inputs.contains(message.full_name())),
        );
    }
    schemas.insert("Status".into(), status_schema());
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes.iter() {
        let operation = operation(route, &comments);
        paths
            .entry(route.template.clone())
            .or_default()
            .insert(route.method.as_str().to_lowercase(), operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Maestro HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP/JSON mapping of Maestro's gRPC services (the google.api.http annotations of proto/maestro/v1), served on the gRPC port. JSON follows the proto3 JSON mapping: lowerCamelCase names (both spellings accepted), 64-bit integers as strings, enums by name, timestamps in RFC 3339; every field without presence is written, default-valued or not.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "A token of --auth-token-file; reads need none under --public-telemetry." } },
        },
        "security": [ {}, { "bearer": [] } ],
    })
}

fn schema_name(message: &MessageDescriptor) -> String {
    message.full_name().trim_start_matches("maestro.v1.").replace('.', "_")
}

fn reference(message: &MessageDescriptor) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", schema_name(message)) })
}

/// Every message reachable from `roots`, well-known types excepted (they have JSON forms of their own).
fn reachable(roots: impl Iterator<Item = MessageDescriptor>) -> BTreeSetByName {
    let mut seen = BTreeSetByName::default();
    let mut stack: Vec<MessageDescriptor> = roots.collect();
    while let Some(message) = stack.pop() {
        if well_known(&message).is_some() || !seen.insert(message.clone()) {
            continue;
        }
        for field in message.fields() {
            if let Kind::Message(m) = field.kind() {
                stack.push(m);
            }
        }
    }
    seen
}

/// Messages by full name, in name order.
#[derive(Default)]
struct BTreeSetByName(BTreeMap<String, MessageDescriptor>);

impl BTreeSetByName {
    fn insert(&mut self, m: MessageDescriptor) -> bool {
        self.0.insert(m.full_name().to_owned(), m).is_none()
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl IntoIterator for BTreeSetByName {
    type Item = MessageDescriptor;
    type IntoIter = std::collections::btree_map::IntoValues<String, MessageDescriptor>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_values()
    }
}

fn well_known(message: &MessageDescriptor) -> Option<Value> {
    match message.full_name() {
        "google.protobuf.Timestamp" => Some(json!({ "type": "string", "format": "date-time" })),
        "google.protobuf.Duration" => Some(json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$" })),
        "google.protobuf.Empty" => Some(json!({ "type": "object" })),
        _ => None,
    }
}

fn message_schema(message: &MessageDescriptor, comments: &Comments, response: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in message.fields() {
        let mut schema = field_schema(&field);
        if let Some(text) = comments.of(field.parent_file().name(), field.path()) {
            schema = with_description(schema, text);
        }
        properties.insert(field.json_name().to_owned(), schema);
        if response && !field.supports_presence() {
            required.push(field.json_name().to_owned());
        }
    }
    let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": false });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    match comments.of(message.parent_file().name(), message.path()) {
        Some(text) => with_description(schema, text),
        None => schema,
    }
}

/// A `$ref` cannot carry siblings in every tool: a described reference is wrapped.
fn with_description(mut schema: Value, text: &str) -> Value {
    if schema.get("$ref").is_some() {
        return json!({ "allOf": [schema], "description": text });
    }
    schema["description"] = json!(text);
    schema
}

fn field_schema(field: &FieldDescriptor) -> Value {
    let one = scalar_schema(&field.kind());
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!("map fields are entry messages") };
        let value = entry.map_entry_value_field();
        return json!({ "type": "object", "additionalProperties": scalar_schema(&value.kind()) });
    }
    if field.is_list() {
        return json!({ "type": "array", "items": one });
    }
    one
}

fn scalar_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
        Kind::Double | Kind::Float => {
            json!({ "type": ["number", "string"], "description": "a number, or \"NaN\", \"Infinity\", \"-Infinity\"" })
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX })
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({ "type": "integer", "format": "int32", "minimum": 0, "maximum": u32::MAX })
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({ "type": ["string", "integer"], "format": "int64", "pattern": "^-?[0-9]{1,19}$" })
        }
        Kind::Uint64 | Kind::Fixed64 => {
            json!({ "type": ["string", "integer"], "format": "uint64", "pattern": "^[0-9]{1,20}$", "minimum": 0 })
        }
        Kind::Enum(e) => {
            json!({ "type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>() })
        }
        Kind::Message(m) => well_known(m).unwrap_or_else(|| reference(m)),
    }
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "An error: the gRPC status code's number, its message (naming the field, the limit and the value), and details (empty).",
        "properties": {
            "code": { "type": "integer", "description": "The gRPC code (3 INVALID_ARGUMENT, 5 NOT_FOUND, 7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED, 16 UNAUTHENTICATED, ...)." },
            "message": { "type": "string" },
            "details": { "type": "array", "items": { "type": "object" } },
        },
        "required": ["code", "message", "details"],
        "additionalProperties": false,
    })
}

fn operation(route: &Route, comments: &Comments) -> Value {
    let rpc = &route.rpc;
    let mut op = Map::new();
    op.insert("operationId".into(), json!(rpc.name()));
    op.insert("tags".into(), json!([rpc.parent_service().name()]));
    if let Some(text) = comments.of(rpc.parent_file().name(), rpc.path()) {
        op.insert("description".into(), json!(text));
    }
    op.insert("parameters".into(), Value::Array(parameters(route, comments)));
    if route.body == "*" {
        op.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": reference(&rpc.input()) } } }),
        );
    }
    let mut ok = json!({ "description": "OK", "content": success_content(route) });
    if rpc.name() == "Allocate" {
        ok["links"] = json!({ "Release": {
            "operationId": "Release",
            "parameters": { "lease_id": "$response.body#/leaseId" },
            "description": "The lease's id releases it.",
        }});
    }
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    for (status, text) in ERRORS {
        responses.insert(
            status.to_string(),
            json!({ "description": text, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Status" } } } }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The error answers every operation may give.
const ERRORS: [(u16, &str); 10] = [
    (400, "INVALID_ARGUMENT or FAILED_PRECONDITION: the message names the field, the limit and the value"),
    (401, "UNAUTHENTICATED: a token is needed, or the one sent is unknown"),
    (403, "PERMISSION_DENIED: the token lacks the role, or the browser origin is not allowed"),
    (404, "NOT_FOUND"),
    (405, "the path is served for another method"),
    (413, "the body is over the size limit"),
    (429, "RESOURCE_EXHAUSTED: a queue, budget or memory limit; Retry-After says when to try again"),
    (500, "INTERNAL"),
    (501, "UNIMPLEMENTED"),
    (503, "UNAVAILABLE: the server is draining; Retry-After says when to try again"),
];

fn success_content(route: &Route) -> Value {
    let output = reference(&route.rpc.output());
    if !route.streams() {
        return json!({ "application/json": { "schema": output } });
    }
    if route.rpc.full_name() == super::GENERATE {
        let mut content = Map::new();
        for container in crate::audio_out::Container::ALL {
            let description = format!(
                "The music as {}, streamed as it is generated; its facts in the X-Maestro-* headers.",
                container.extension()
            );
            content.insert(container.mime().into(), json!({ "schema": { "type": "string", "contentMediaType": container.mime(), "description": description } }));
        }
        content.insert("application/octet-stream".into(), json!({ "schema": { "type": "string", "description": "Raw little-endian PCM, when the body's format is AUDIO_FORMAT_PCM_S16LE or AUDIO_FORMAT_PCM_F32LE." } }));
        content.insert("application/x-ndjson".into(), json!({ "schema": { "type": "string", "description": "With Accept: application/x-ndjson (and no audio type): one GenerateResponse (JSON) per line, as a transcoding proxy gives." } }));
        return Value::Object(content);
    }
    json!({
        "text/event-stream": { "schema": { "type": "string", "description": format!("Server-Sent Events: `retry:` first, then one `data:` event per {} (JSON) with an increasing `id:`, heartbeat comments while idle, and `event: error` with a Status if the call fails.", route.rpc.output().name()) } },
        "application/x-ndjson": { "schema": { "type": "string", "description": format!("One {} (JSON) per line; a last line {{\"error\": Status}} if the call fails.", route.rpc.output().name()) } },
    })
}

/// Query and path parameters: every field of the request that is not a message.
fn parameters(route: &Route, comments: &Comments) -> Vec<Value> {
    let in_path: BTreeSet<&str> = route.path_fields().collect();
    let mut out = Vec::new();
    if route.rpc.full_name() == super::GENERATE {
        out.push(json!({
            "name": "format", "in": "query", "required": false,
            "description": "The audio's format; before Accept and the body's format. Default WAV.",
            "schema": { "type": "string", "enum": ["wav", "flac", "opus", "ogg", "mp3"] },
        }));
    }
    for field in route.rpc.input().fields() {
        let place = if in_path.contains(field.name()) {
            "path"
        } else if route.body.is_empty() && !matches!(field.kind(), Kind::Message(_)) {
            "query"
        } else {
            continue;
        };
        let mut parameter = json!({ "name": field.name(), "in": place, "required": place == "path", "schema": field_schema(&field) });
        if let Kind::Enum(e) = field.kind() {
            let prefix = super::json::enum_prefix(&e);
            let short: Vec<String> =
                e.values().filter_map(|v| v.name().strip_prefix(&prefix).map(str::to_lowercase)).collect();
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            parameter["schema"] =
                json!({ "type": "string", "enum": names.into_iter().chain(short).collect::<Vec<_>>() });
        }
        if let Some(text) = comments.of(field.parent_file().name(), field.path()) {
            parameter["description"] = json!(text);
        }
        out.push(parameter);
    }
    out
}

/// The leading comments of the protos, by file and descriptor path, each joined into one line. The
/// API reference (`docs/api.md`, written by `tests/api_docs.rs`) reads them too, so both documents
/// describe the wire with the same words.
pub struct Comments(HashMap<(String, Vec<i32>), String>);

impl Comments {
    /// The comments of every file in `pool` (which must carry source info to have any).
    pub fn new(pool: &DescriptorPool) -> Self {
        let mut map = HashMap::new();
        for file in pool.files() {
            let proto = file.file_descriptor_proto();
            for location in proto.source_code_info.iter().flat_map(|s| &s.location) {
                if let Some(text) = location.leading_comments.as_deref().map(clean).filter(|t| !t.is_empty())
                {
                    map.insert((file.name().to_owned(), location.path.clone()), text);
                }
            }
        }
        Self(map)
    }

    /// The comment of the element at `path` (a descriptor's `path()`) in `file`, if it has one.
    pub fn of(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.0.get(&(file.to_owned(), path.to_vec())).map(String::as_str)
    }
}

fn clean(text: &str) -> String {
    text.lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_owned()
}
