//! What a checkpoint costs before loading it: parameters per part, stored dtypes and, per precision
//! option, the weights per part, the working set of a batch of a given duration, and what the CPU or
//! a GPU then needs. The figures are the server's own memory model
//! ([`crate::resources::requirements`]), so this report and `ValidateModel` agree. Reads only the
//! config files and the weights' headers (safetensors header, shard index, pickle records), and
//! says how the weights are laid out; for pickle weights it suggests `convert-checkpoint`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::config::{GenerationConfig, MusicgenConfig};
use super::error::Result;
use super::tokenizer::PromptTokenizer;
use super::weights::DType;
use crate::checkpoint::{self, Checkpoint};
use crate::resources::{
    device::Device,
    requirements::{self, ModelShape, ParameterCounts, Resident},
};

/// A human-readable report on the checkpoint in `dir` for `batch` requests of `duration_s` seconds.
pub fn inspect(dir: &Path, batch: usize, duration_s: f64) -> Result<String> {
    let cfg = MusicgenConfig::from_file(&dir.join("config.json"))?;
    let gen = GenerationConfig::from_file_or_default(&dir.join("generation_config.json"))?;
    crate::checkpoint::kind::check_config_file(&dir.join("config.json"))?;
    let file = Checkpoint::open_dir(dir)?;
    let mut out = String::new();
    let d = &cfg.decoder;
    let _ = writeln!(out, "model: {}", dir.display());
    let _ = writeln!(
        out,
        "decoder: hidden {} layers {} heads {} ffn {} codebooks {}x{}; {} Hz, {} channel(s), {} frames/s, max {:.1} s",
        d.hidden_size,
        d.num_hidden_layers,
        d.num_attention_heads,
        d.ffn_dim,
        d.num_codebooks,
        d.vocab_size,
        cfg.audio_encoder.sampling_rate,
        d.audio_channels,
        cfg.audio_encoder.frame_rate(),
        gen.max_length as f64 / cfg.audio_encoder.frame_rate() as f64
    );
    if cfg.is_melody() {
        let _ = writeln!(
            out,
            "melody: decoder-only, prefixed with {} chroma frames ({} pitch classes) and the text",
            cfg.chroma_length, cfg.num_chroma
        );
    }
    write_layout(&mut out, dir, &file);
    write_parameters(&mut out, &file);
    write_memory(&mut out, dir, batch as u32, duration_s)?;
    let tokenizer = match PromptTokenizer::from_file(&dir.join("tokenizer.json")) {
        Ok(t) => {
            format!("loads ({} tokens for \"test\")", t.encode("test").map(|ids| ids.len()).unwrap_or(0))
        }
        Err(e) => format!("does not load: {e}"),
    };
    let _ = writeln!(out, "tokenizer: {tokenizer}");
    Ok(out)
}

/// The layout, its files and, for pickle weights, the conversion that makes them load faster.
fn write_layout(out: &mut String, dir: &Path, file: &Checkpoint) {
    let files: Vec<String> =
        file.files().map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    let bytes: u64 =
        file.distinct_tensors().into_iter().map(|(_, info)| checkpoint::stored_bytes(info)).sum();
    let _ = writeln!(
        out,
        "weights: {} ({}), {} tensors, {} bytes stored",
        file.layout().as_str(),
        files.join(", "),
        file.tensors().len(),
        bytes
    );
    if file.layout().is_pickle() {
        let _ = writeln!(
            out,
            "  pickle weights are read without running pickle code, but not mapped: \
             `maestro-server convert-checkpoint {}` writes model.safetensors beside them, which loads faster",
            dir.display()
        );
    }
}

/// Parameters per part and the stored dtypes.
fn write_parameters(out: &mut String, file: &Checkpoint) {
    let counts = ParameterCounts::of(file);
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for (_, info) in file.distinct_tensors() {
        *stored.entry(info.dtype.to_string()).or_default() += checkpoint::numel(info);
    }
    let _ = writeln!(out, "parameters:");
    for (part, n) in [
        ("text encoder (T5)", counts.text_encoder),
        ("decoder", counts.decoder),
        ("audio decoder (EnCodec)", counts.audio_decoder),
        ("stored but unused", counts.unused),
    ] {
        let _ = writeln!(out, "  {part:<24} {:>14} ({:.1} M)", n, n as f64 / 1e6);
    }
    let stored: Vec<String> = stored.iter().map(|(k, v)| format!("{k} ({v} params)")).collect();
    let _ = writeln!(out, "stored dtype: {}", stored.join(", "));
}

/// Per precision option: weights per part, the working set's parts, and the CPU and GPU totals.
fn write_memory(out: &mut String, dir: &Path, batch: u32, duration_s: f64) -> Result<()> {
    let shape = ModelShape::read(&dir.join("config.json"))?;
    let frames = shape.frames(duration_s);
    let _ = writeln!(out, "memory for batch {batch}, {duration_s} s ({frames} frames), guidance on:");
    for dtype in DType::ALL {
        let r = requirements::from_checkpoint(dir, dtype, duration_s)?;
        let w = shape.working_set(dtype, u64::from(batch), duration_s);
        let parts = dtype.parts();
        let cpu = r.need(Device::Cpu, batch, Resident::default());
        let gpu = r.need(Device::Cuda(0), batch, Resident::default());
        let _ = writeln!(
            out,
            "  decoder {:<4} weights {:>7.1} MiB (T5 {} {:.1}, decoder {} {:.1}, EnCodec {} {:.1})  kv {:>7.1} MiB  cross {:>6.1} MiB  activations {:>6.1} MiB",
            dtype.as_str(),
            mib(r.weights_bytes()),
            parts.text_encoder,
            mib(r.weights.text_encoder),
            parts.decoder,
            mib(r.weights.decoder),
            parts.audio_decoder,
            mib(r.weights.audio_decoder),
            mib(w.kv_cache),
            mib(w.cross_cache),
            mib(w.activations),
        );
        let _ = writeln!(
            out,
            "    on the CPU {:>7.1} MiB host; on a GPU {:>7.1} MiB GPU (with the CUDA context) + {:.1} MiB host",
            mib(cpu.host_bytes()),
            mib(gpu.gpu_bytes()),
            mib(gpu.host_bytes())
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}
