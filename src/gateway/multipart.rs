//! `multipart/form-data` bodies for calls that carry audio (`POST /api/v1/generate`), so a browser
//! form or `curl -F` can send a WAV file without base64: a part named `request` holds the request as
//! JSON, a file part named after an audio field (`audio_prompt`, `melody`) holds a WAV file for it,
//! and any other part is a field's value as text, as in a query. The body's size limit applies to
//! the whole form. Parsed with `multer` (axum's multipart parser).

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::json::JsonError;

/// The audio fields a file part may fill.
const AUDIO_FIELDS: [&str; 2] = ["audio_prompt", "melody"];

/// The JSON body and text fields of a form.
pub struct Form {
    /// The `request` part with the audio parts merged in, as JSON.
    pub body: Vec<u8>,
    /// The other parts, as `(name, text)`.
    pub fields: Vec<(String, String)>,
}

/// The boundary when `content_type` is `multipart/form-data`.
pub fn boundary(content_type: Option<&str>) -> Option<String> {
    let content_type = content_type?;
    content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
        .then(|| multer::parse_boundary(content_type).ok())?
}

/// Reads a whole form.
pub async fn read(bytes: Bytes, boundary: String) -> Result<Form, JsonError> {
    let bad = |e: multer::Error| JsonError(format!("the multipart body is malformed: {e}"));
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let (mut body, mut fields) = (Map::new(), Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.file_name().is_some();
        let data = field.bytes().await.map_err(bad)?;
        match name.as_str() {
            "request" => match serde_json::from_slice(&data) {
                Ok(Value::Object(map)) => body.extend(map),
                _ => return Err(JsonError("request: the part must be a JSON object".into())),
            },
            audio if AUDIO_FIELDS.contains(&audio) && is_file => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
                body.insert(
                    audio.to_owned(),
                    serde_json::json!({ "data": encoded, "encoding": "AUDIO_ENCODING_WAV" }),
                );
            }
            _ => {
                let text = String::from_utf8(data.to_vec())
                    .map_err(|_| JsonError(format!("{name}: a text part must be UTF-8")))?;
                fields.push((name, text));
            }
        }
    }
    Ok(Form { body: serde_json::to_vec(&Value::Object(body)).expect("JSON serializes"), fields })
}
