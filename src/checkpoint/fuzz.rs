//! Fuzzing entry points of the checkpoint readers: bytes read as a `data.pkl` pickle, as a model
//! folder's weight files (layout, safetensors headers, shard indexes, `torch.save` archives), and as
//! its JSON configs. Whatever the bytes, each reader gives a value or an error, never a panic, an
//! abort or an allocation the bytes do not pay for. Shared by the `cargo fuzz` targets (`fuzz/`)
//! and the property tests in `make test`.

use std::path::Path;

use super::config::{GenerationConfig, MusicgenConfig};
use super::{kind, layout, numel, pickle, stored_bytes, Checkpoint};
use crate::chroma::{ChromaConfig, ChromaExtractor};

/// Separates the files of one [`layout`] input. Each part is a file name, a newline, then the
/// file's bytes; a text separator keeps seeds readable and lets mutations split or join files.
pub const FILE_SEPARATOR: &[u8] = b"\n--maestro-file--\n";

/// Most files one [`layout`] input writes.
const MAX_FILES: usize = 8;

/// Largest tensor read back after opening. A strided pickle view may legitimately repeat a small
/// storage (a stride of 0), so its row-major size is not bounded by the file; the fuzzer reads only
/// what it can afford.
const MAX_READ_BYTES: u64 = 1 << 20;

/// Reads `bytes` as a pickled state dict, and measures the views of what it rebuilds.
pub fn pickle(bytes: &[u8]) {
    if let Ok(tensors) = pickle::read_state_dict(bytes) {
        for (_, tensor) in &tensors {
            let _ = (tensor.is_contiguous(), pickle::span(&tensor.shape, &tensor.strides));
        }
    }
}

/// Splits `bytes` into files (see [`FILE_SEPARATOR`]), writes them into the scratch folder `dir`
/// (emptied first) and opens the folder as the loader does: its layout, its index, every file's
/// header, then every tensor small enough to read back.
pub fn layout(bytes: &[u8], dir: &Path) {
    empty(dir);
    for part in split(bytes, FILE_SEPARATOR).take(MAX_FILES) {
        let Some(at) = part.iter().position(|&b| b == b'\n') else { continue };
        let Some(name) = std::str::from_utf8(&part[..at]).ok().filter(|n| is_scratch_name(n)) else {
            continue;
        };
        std::fs::write(dir.join(name), &part[at + 1..]).expect("the scratch folder is writable");
    }
    let _ = layout::weight_files(dir);
    let safetensors = dir.join("model.safetensors");
    if safetensors.is_file() {
        let _ = Checkpoint::open(&safetensors);
    }
    let Ok(checkpoint) = Checkpoint::open_dir(dir) else { return };
    for (name, info) in checkpoint.distinct_tensors() {
        let _ = numel(info);
        if stored_bytes(info) <= MAX_READ_BYTES {
            if let Ok(read) = checkpoint.read(info) {
                assert_eq!(read.len() as u64, stored_bytes(info), "`{name}` read at another size");
            }
        }
    }
}

/// Writes `bytes` as each of a model folder's JSON configs into the scratch folder `dir` and reads
/// them as a model's facts and a load read them: the kind check, the typed `config.json` and what
/// is derived from it, `generation_config.json`, and the chroma extractor `preprocessor_config.json`
/// describes.
pub fn model_config(bytes: &[u8], dir: &Path) {
    let file = |name: &str| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("the scratch folder is writable");
        path
    };
    let config = file("config.json");
    let _ = kind::check_config_file(&config);
    if let Ok(c) = MusicgenConfig::from_file(&config) {
        let codec = &c.audio_encoder;
        let _ = (codec.hop_length(), codec.frame_rate(), codec.codebook_dim(), c.is_melody());
        let _ = (c.decoder.pad_id(), c.decoder.head_dim(), c.decoder.channel_codebooks());
    }
    let _ = GenerationConfig::from_file_or_default(&file("generation_config.json"));
    if let Ok(chroma) = ChromaConfig::from_file_or_default(&file("preprocessor_config.json")) {
        let extractor = ChromaExtractor::new(chroma).expect("a checked config builds an extractor");
        let _ = extractor.one_hot(&[0.25; 64]);
    }
}

/// Runs a configuration file's bytes through its readers: a model folder's JSON configs
/// ([`model_config`]) when the first non-blank byte opens a JSON object, the server's TOML file
/// ([`crate::config::fuzz::check`]) otherwise (a TOML file cannot start with `{`). Split so that the
/// cheap JSON readers are not paced by the server's start-up, which builds its flags anew each time.
pub fn config_file(bytes: &[u8], dir: &Path) {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => model_config(bytes, dir),
        _ => crate::config::fuzz::check(bytes, dir),
    }
}

/// The parts of `bytes` between separators (all of it when there is none).
pub fn split<'a>(bytes: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(separator.len()).position(|w| w == separator) {
            Some(at) => {
                rest = Some(&current[at + separator.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// A name a fuzzed file may take: a plain file name of a few safe characters, so a mutation can
/// never write outside the scratch folder.
fn is_scratch_name(name: &str) -> bool {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    (1..=64).contains(&name.len()) && name != "." && name != ".." && name.chars().all(safe)
}

fn empty(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("the scratch folder exists").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
}
