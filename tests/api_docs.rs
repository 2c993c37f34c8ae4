//! `docs/api.md`, the API reference, is generated from the protos: every service and RPC with its
//! comment, its HTTP routes (the `google.api.http` annotations the server itself serves) and the role it
//! needs, then every message with its fields and every enum with its values, each with its comment.
//! The descriptors are the ones the server embeds, with their source info, so the page says what the
//! wire says. `UPDATE_DOCS=1 cargo test --no-default-features --test api_docs` rewrites the page
//! (`UPDATE_API_DOCS=1` too); otherwise a stale page fails with the first line that differs.

use std::fmt::Write as _;

use maestro::{
    gateway::{openapi::Comments, pool, routes::Routes},
    grpc::auth::{required_role, Role},
};
use prost_reflect::{
    EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, MethodDescriptor,
};

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
const PACKAGE: &str = "maestro.v1";
/// The RPC whose HTTP answer is a file rather than JSON.
const GENERATE: &str = "maestro.v1.GenerationService.Generate";

/// The comment of a descriptor (its file and path), or nothing.
fn comment_of(comments: &Comments, file: &FileDescriptor, path: &[i32]) -> String {
    comments.of(file.name(), path).unwrap_or_default().to_owned()
}

/// `text` safe inside a Markdown table cell: comments are prose, not Markdown, so `<index>` must not
/// become an HTML tag nor `*_ms` emphasis. Code spans keep their text; a `|`
/// anywhere would end the cell.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => in_code = !in_code,
            '|' => out.push('\\'),
            '<' | '>' | '*' | '[' | ']' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A message's or enum's name within the package (`Snapshot`, `AlertEvent.Kind`).
fn local_name(full_name: &str) -> &str {
    full_name.strip_prefix(PACKAGE).and_then(|n| n.strip_prefix('.')).unwrap_or(full_name)
}

/// The heading anchor of a name: GitHub lower-cases it and drops the dots.
fn anchor(name: &str) -> String {
    name.to_lowercase().replace('.', "")
}

/// A type as a link to its section, or as code when it is not this package's.
fn type_link(full_name: &str) -> String {
    match full_name.strip_prefix(PACKAGE).and_then(|n| n.strip_prefix('.')) {
        Some(name) => format!("[`{name}`](#{})", anchor(name)),
        None => format!("`{full_name}`"),
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => type_link(m.full_name()),
        Kind::Enum(e) => type_link(e.full_name()),
        scalar => format!("`{}`", format!("{scalar:?}").to_lowercase()),
    }
}

fn field_type(field: &FieldDescriptor) -> String {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!("map fields are entry messages") };
        let (key, value) = (entry.map_entry_key_field().kind(), entry.map_entry_value_field().kind());
        return format!("map of {} to {}", kind_name(&key), kind_name(&value));
    }
    let base = kind_name(&field.kind());
    if field.is_list() {
        return format!("repeated {base}");
    }
    match field.containing_oneof() {
        Some(oneof) if !oneof.is_synthetic() => format!("{base}, one of `{}`", oneof.name()),
        _ if field.supports_presence() && !matches!(field.kind(), Kind::Message(_)) => {
            format!("optional {base}")
        }
        _ => base,
    }
}

fn role_text(role: Option<Role>) -> String {
    match role {
        None => "none".into(),
        Some(Role::Read) => "`read` (no token needed under `--public-telemetry true`, the default)".into(),
        Some(role) => format!("`{role}`"),
    }
}

fn routes_of(routes: &Routes, rpc: &MethodDescriptor) -> Vec<String> {
    routes
        .iter()
        .filter(|r| r.rpc.full_name() == rpc.full_name())
        .map(|r| {
            let fields = match (r.body.as_str(), r.path_fields().next().is_some()) {
                ("*", _) => "the request as a JSON body",
                (_, true) => "path variables, the other fields in the query",
                _ => "the request's fields in the query",
            };
            let answer = if rpc.full_name() == GENERATE {
                ", or `multipart/form-data` with the audio inputs as files; the answer is the audio itself: \
                 [Music over plain HTTP](http-api.md#music-over-plain-http)"
            } else if rpc.is_server_streaming() {
                "; the answer streams as Server-Sent Events or NDJSON: [Streams](http-api.md#streams)"
            } else {
                ""
            };
            format!("`{} {}` ({fields}{answer})", r.method, r.template)
        })
        .collect()
}

fn write_rpc(out: &mut String, rpc: &MethodDescriptor, routes: &Routes, comments: &Comments) {
    let service = rpc.parent_service();
    let path = format!("/{}/{}", service.full_name(), rpc.name());
    let streams = if rpc.is_server_streaming() { "a stream of " } else { "" };
    let _ = writeln!(out, "### `{}.{}`\n", service.name(), rpc.name());
    let comment = comment_of(comments, &rpc.parent_file(), rpc.path());
    if !comment.is_empty() {
        let _ = writeln!(out, "{}\n", escape(&comment));
    }
    let _ = writeln!(out, "- **gRPC**: `{path}`");
    let _ = writeln!(
        out,
        "- **Request** {}, **response** {streams}{}",
        type_link(rpc.input().full_name()),
        type_link(rpc.output().full_name())
    );
    let http = routes_of(routes, rpc);
    let http = if http.is_empty() { "none".to_string() } else { http.join("; ") };
    let _ = writeln!(out, "- **HTTP**: {http}");
    let _ = writeln!(out, "- **Role**: {}\n", role_text(required_role(&path)));
}

fn write_service_summary(out: &mut String, rpcs: &[MethodDescriptor], routes: &Routes, comments: &Comments) {
    out.push_str("| RPC | HTTP | role | what it does |\n|---|---|---|---|\n");
    for rpc in rpcs {
        let service = rpc.parent_service();
        let heading = format!("{}.{}", service.name(), rpc.name());
        let http: Vec<String> = routes
            .iter()
            .filter(|r| r.rpc.full_name() == rpc.full_name())
            .map(|r| format!("`{} {}`", r.method, r.template))
            .collect();
        let role = required_role(&format!("/{}/{}", service.full_name(), rpc.name()));
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} | {} |",
            rpc.name(),
            anchor(&heading),
            http.join(", "),
            role.map_or("none".to_string(), |r| format!("`{r}`")),
            escape(&comment_of(comments, &rpc.parent_file(), rpc.path()))
        );
    }
    out.push('\n');
}

/// A type's heading and, when the proto has one, its comment.
fn write_heading(out: &mut String, full_name: &str, comment: &str) {
    let _ = writeln!(out, "### `{}`\n", local_name(full_name));
    if !comment.is_empty() {
        let _ = writeln!(out, "{}\n", escape(comment));
    }
}

fn write_message(out: &mut String, message: &MessageDescriptor, comments: &Comments) {
    write_heading(out, message.full_name(), &comment_of(comments, &message.parent_file(), message.path()));
    if message.fields().len() == 0 {
        out.push_str("No fields.\n\n");
        return;
    }
    out.push_str("| field | JSON | number | type | meaning |\n|---|---|---:|---|---|\n");
    for field in message.fields() {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {} | {} |",
            field.name(),
            field.json_name(),
            field.number(),
            field_type(&field),
            escape(&comment_of(comments, &field.parent_file(), field.path()))
        );
    }
    out.push('\n');
}

fn write_enum(out: &mut String, e: &EnumDescriptor, comments: &Comments) {
    write_heading(out, e.full_name(), &comment_of(comments, &e.parent_file(), e.path()));
    out.push_str("| value | number | meaning |\n|---|---:|---|\n");
    for value in e.values() {
        let text = comment_of(comments, &value.parent_file(), value.path());
        let _ = writeln!(out, "| `{}` | {} | {} |", value.name(), value.number(), escape(&text));
    }
    out.push('\n');
}

/// Every message of `message`'s subtree, itself first, map entries left out (they are types of fields).
fn with_nested(
    message: MessageDescriptor,
    out: &mut Vec<MessageDescriptor>,
    enums: &mut Vec<EnumDescriptor>,
) {
    if message.is_map_entry() {
        return;
    }
    enums.extend(message.child_enums());
    let children: Vec<MessageDescriptor> = message.child_messages().collect();
    out.push(message);
    for child in children {
        with_nested(child, out, enums);
    }
}

/// The page, from the embedded descriptors.
fn generate() -> String {
    let pool = pool();
    let routes = Routes::from_pool(&pool);
    let comments = Comments::new(&pool);
    let files: Vec<FileDescriptor> = pool.files().filter(|f| f.package_name() == PACKAGE).collect();
    let mut out = String::from(HEADER);
    for service in files.iter().flat_map(|f| f.services()) {
        let _ = writeln!(out, "## {}\n", service.name());
        let comment = comment_of(&comments, &service.parent_file(), service.path());
        if !comment.is_empty() {
            let _ = writeln!(out, "{}\n", escape(&comment));
        }
        let rpcs: Vec<MethodDescriptor> = service.methods().collect();
        write_service_summary(&mut out, &rpcs, &routes, &comments);
        for rpc in &rpcs {
            write_rpc(&mut out, rpc, &routes, &comments);
        }
    }
    let (mut messages, mut enums) = (Vec::new(), Vec::new());
    for file in &files {
        enums.extend(file.enums());
        for message in file.messages() {
            with_nested(message, &mut messages, &mut enums);
        }
    }
    out.push_str("## Messages\n\n");
    for message in &messages {
        write_message(&mut out, message, &comments);
    }
    out.push_str("## Enums\n\nEnums are written by name in JSON; the HTTP API's queries also take the number or the short lower-case name (`critical` for `SEVERITY_CRITICAL`).\n\n");
    for e in &enums {
        write_enum(&mut out, e, &comments);
    }
    out.trim_end().to_string() + "\n"
}

const HEADER: &str = "# API reference

<!-- Generated from proto/maestro/v1/*.proto by tests/api_docs.rs; do not edit by hand. After changing
the protos: UPDATE_DOCS=1 cargo test --no-default-features --test api_docs -->

Every RPC of Maestro's two services, with its HTTP route and the role it needs, then every message and
enum, each with the comment the protos give it. This page is generated from the protos in
[`proto/maestro/v1`](../proto/maestro/v1), and `make test` fails when it is stale.

- gRPC clients in any language build from those protos; the server also serves reflection
  (`grpcurl -plaintext localhost:50051 list`) and the standard health service `grpc.health.v1.Health`,
  both open without a token.
- The HTTP routes are served on the gRPC port under `/api/v1/`; the JSON is the proto3 JSON mapping
  (the **JSON** column), errors and streams are described in [the HTTP API](http-api.md), and
  [`openapi.json`](openapi.json) is the same API as an OpenAPI 3.1 document.
- Roles matter only on a server with `--auth-token-file` ([Tokens and roles](security.md#tokens-and-roles));
  what each refusal means is in [Troubleshooting](troubleshooting.md).
- Units: memory in bytes (GB means 10⁹ bytes), temperatures in °C, power in W, percentages 0–100.

";

#[test]
fn the_api_reference_is_current() {
    let generated = generate();
    if ["UPDATE_DOCS", "UPDATE_API_DOCS"].iter().any(|v| std::env::var_os(v).is_some()) {
        std::fs::write(PAGE, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(PAGE).unwrap_or_default();
    if committed != generated {
        let (line, (have, want)) = committed
            .lines()
            .chain(std::iter::repeat(""))
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((generated.lines().count(), ("", "")));
        panic!(
            "docs/api.md is not what the protos generate, from line {}:\n  page:   {have:?}\n  wanted: {want:?}\n\
             Run `UPDATE_DOCS=1 cargo test --no-default-features --test api_docs` to regenerate it.",
            line + 1
        );
    }
}

/// Every RPC of the package is on the page with its route and role, and every message has a section
/// its links can reach.
#[test]
fn every_rpc_message_and_enum_has_a_section() {
    let page = generate();
    let pool = pool();
    for service in pool.services().filter(|s| s.package_name() == PACKAGE) {
        for rpc in service.methods() {
            let heading = format!("### `{}.{}`", service.name(), rpc.name());
            let section = page.split(&heading).nth(1).unwrap_or_else(|| panic!("{heading} on the page"));
            let section = section.split("\n### ").next().unwrap();
            assert!(section.contains("- **HTTP**: `"), "{heading} has an HTTP route");
            assert!(section.contains("- **Role**: "), "{heading} names its role");
        }
    }
    for message in pool.all_messages().filter(|m| m.package_name() == PACKAGE && !m.is_map_entry()) {
        assert!(
            page.contains(&format!("### `{}`\n", local_name(message.full_name()))),
            "{}",
            message.full_name()
        );
    }
    for e in pool.all_enums().filter(|e| e.package_name() == PACKAGE) {
        assert!(page.contains(&format!("### `{}`\n", local_name(e.full_name()))), "{}", e.full_name());
    }
    assert_eq!(escape("gpu:<index> | *_ms `a|<b>`"), "gpu:\\<index\\> \\| \\*_ms `a\\|<b>`");
}
