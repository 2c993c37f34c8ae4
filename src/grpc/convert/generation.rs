//! Generation-side domain → wire conversions: a stream's header, its audio chunks encoded as PCM, and
//! its summary.

use crate::grpc::pb;
use crate::{
    engine::SamplingMode,
    generation::{Admitted, Chunk, Summary},
    resources::device::Device,
};

/// Little-endian PCM of interleaved f32 samples: f32 as is, or 16-bit (clamped to ±1) otherwise.
pub fn encode_pcm(samples: &[f32], format: pb::AudioFormat) -> Vec<u8> {
    match format {
        pb::AudioFormat::PcmF32le => samples.iter().flat_map(|x| x.to_le_bytes()).collect(),
        _ => samples
            .iter()
            .flat_map(|x| ((x.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
            .collect(),
    }
}

/// The header that opens a generation's stream.
pub fn generate_header(a: &Admitted, format: pb::AudioFormat) -> pb::Header {
    let (f, r) = (&a.facts.checkpoint, &a.request);
    let hop = (f64::from(f.sample_rate) / f.frame_rate).round() as u64;
    pb::Header {
        request_id: a.request_id.clone(),
        model: a.model.clone(),
        sample_rate: f.sample_rate,
        channels: f.channels,
        format: format as i32,
        expected_samples: (r.frames + if r.include_prompt { a.prompt_frames } else { 0 }) as u64 * hop,
        chunk_samples: (r.chunk_frames as u64 * hop) as u32,
        queue_position: a.queue_position as u32,
        device: a.device.name(),
        params: Some(pb::GenerationParams {
            temperature: r.sampling.temperature,
            top_k: r.sampling.top_k as u32,
            top_p: r.sampling.top_p,
            guidance_scale: r.effective_guidance(),
            seed: r.seed,
            greedy: r.sampling.greedy,
            duration_s: r.frames as f64 / f.frame_rate,
            sampling_mode: match r.sampling.mode {
                SamplingMode::Transformers => pb::SamplingMode::Transformers,
                SamplingMode::Audiocraft => pb::SamplingMode::Audiocraft,
            } as i32,
        }),
        input_conversions: a.input_conversions.clone(),
        prompt_s: a.prompt_frames as f64 / f.frame_rate,
    }
}

/// A decoded chunk on the wire, in `format`.
pub fn audio_chunk(c: &Chunk, format: pb::AudioFormat) -> pb::AudioChunk {
    pb::AudioChunk {
        index: c.index,
        sample_offset: c.sample_offset,
        data: encode_pcm(&c.samples, format),
        frames_done: c.frames_done,
        frames_total: c.frames_total,
        progress: f64::from(c.frames_done) / f64::from(c.frames_total.max(1)),
    }
}

/// The summary that closes a generation's stream; `device` is where it ran.
pub fn generate_summary(s: &Summary, device: Device) -> pb::Summary {
    pb::Summary {
        time_to_first_chunk_ms: s.time_to_first_chunk_ms,
        total_ms: s.total_ms,
        frames: s.frames,
        steps_per_second: s.steps_per_second,
        real_time_factor: s.real_time_factor,
        device: device.name(),
        peak_host_memory_delta_bytes: s.peak_host_memory_delta_bytes,
        peak_gpu_memory_delta_bytes: s.peak_gpu_memory_delta_bytes,
        samples: s.samples,
        queue_wait_ms: s.queue_wait_ms,
        batch_size: s.batch_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_is_little_endian_and_16_bit_clamps() {
        let f32le = encode_pcm(&[0.5, -1.0], pb::AudioFormat::PcmF32le);
        assert_eq!(f32le, [0.5f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat());
        let s16 = encode_pcm(&[1.0, -2.0, 0.0], pb::AudioFormat::PcmS16le);
        assert_eq!(s16, [32767i16.to_le_bytes(), (-32767i16).to_le_bytes(), 0i16.to_le_bytes()].concat());
    }
}
