//! `--json` output: any generated message rendered by the protobuf JSON mapping through the server's
//! own descriptor set, so field names are the proto's (snake_case), enums are their names, 64-bit
//! integers are numbers and every field is present, default or not.

use std::sync::OnceLock;

use maestro_proto as pb;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The descriptor set is compiled into the library by the same build as the types, so a
        // failure here is a build defect, not a run-time condition.
        DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("the embedded descriptor set decodes")
    })
}

fn dynamic<M: prost::Message>(message: &M, name: &str) -> DynamicMessage {
    let full = format!("maestro.v1.{name}");
    let descriptor =
        pool().get_message_by_name(&full).unwrap_or_else(|| panic!("{full} is not in the descriptor set"));
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message re-decodes under its own descriptor")
}

const OPTIONS: SerializeOptions = SerializeOptions::new()
    .stringify_64_bit_integers(false)
    .use_proto_field_name(true)
    .skip_default_fields(false);

/// A generated message of `maestro.v1` with its short name (`"Snapshot"`) as a JSON value.
pub fn value<M: prost::Message>(message: &M, name: &str) -> Value {
    dynamic(message, name)
        .serialize_with_options(serde_json::value::Serializer, &OPTIONS)
        .expect("a message always serializes to JSON")
}

/// A message as pretty JSON (one document, fields in proto order), with a trailing newline.
pub fn pretty<M: prost::Message>(message: &M, name: &str) -> String {
    let mut buf = Vec::new();
    let mut serializer = serde_json::Serializer::pretty(&mut buf);
    dynamic(message, name)
        .serialize_with_options(&mut serializer, &OPTIONS)
        .expect("a message always serializes");
    buf.push(b'\n');
    String::from_utf8(buf).expect("JSON is UTF-8")
}

/// A message as one compact JSON line (for streams: one object per line).
pub fn line<M: prost::Message>(message: &M, name: &str) -> String {
    let mut buf = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut buf);
    dynamic(message, name)
        .serialize_with_options(&mut serializer, &OPTIONS)
        .expect("a message always serializes");
    buf.push(b'\n');
    String::from_utf8(buf).expect("JSON is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_proto_names_numbers_and_enum_names() {
        let snapshot = pb::Snapshot {
            sequence: 7,
            health: pb::HealthLevel::Warning as i32,
            sampled_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            ..Default::default()
        };
        let v = value(&snapshot, "Snapshot");
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["health"], "HEALTH_LEVEL_WARNING");
        assert_eq!(v["sampled_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["skipped"], 0, "default fields are present");
        let text = pretty(&snapshot, "Snapshot");
        assert!(text.find("sampled_at") < text.find("sequence"), "fields keep the proto's order");
        assert_eq!(serde_json::from_str::<Value>(line(&snapshot, "Snapshot").trim()).unwrap(), v);
    }
}
