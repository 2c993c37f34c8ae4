//! The melody checkpoints' conditioning: a clip's chroma, computed exactly as transformers'
//! `MusicgenMelodyFeatureExtractor` computes it from raw audio (audiocraft strips the drums with demucs
//! first; Maestro does not).
//!
//! Power spectrogram (periodic Hann window of `n_fft`, `hop_length` hop, reflect-padded centred
//! frames, scaled by the window's L2 norm as torchaudio's `normalized=True`), projected on librosa's
//! chroma filter bank, each frame divided by its largest bin (∞-norm, floor 1e-6), then one-hot on its
//! argmax. A clip shorter than `n_fft` is zero-padded to it, centred; one longer than `chunk_length`
//! seconds is cut there. Pure Rust (`realfft`), so it needs no libtorch.

use std::path::Path;
use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use serde::Deserialize;

use crate::checkpoint::limits::{read_bounded, MAX_CONFIG_BYTES};
use crate::checkpoint::CheckpointError;

/// The feature extractor's settings, from a checkpoint's `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChromaConfig {
    /// Rate the extractor expects, in Hz.
    #[serde(default = "default_rate")]
    pub sampling_rate: u32,
    /// FFT size and window length.
    #[serde(default = "default_n_fft")]
    pub n_fft: usize,
    /// Samples between frames.
    #[serde(default = "default_hop")]
    pub hop_length: usize,
    /// Pitch classes.
    #[serde(default = "default_chroma")]
    pub num_chroma: usize,
    /// Longest clip read, in seconds.
    #[serde(default = "default_chunk")]
    pub chunk_length: usize,
}

impl Default for ChromaConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl ChromaConfig {
    /// Reads `path` (at most [`MAX_CONFIG_BYTES`]) and checks its settings, or the published
    /// defaults when it does not exist.
    pub fn from_file_or_default(path: &Path) -> Result<Self, String> {
        match read_bounded(path, MAX_CONFIG_BYTES, "preprocessor config") {
            Ok(text) => {
                let config: Self =
                    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                config.check().map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(config)
            }
            Err(CheckpointError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self::default())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Each setting within what an extractor can be built and run with. The upper bounds are far
    /// above the published settings (`n_fft` 2048 to 16 384, 12 classes, 30 s at 32 kHz); without them a hostile file made the
    /// window and filter bank terabytes (`n_fft`) or the clip limit overflow (`chunk_length`), found
    /// while fuzzing config files.
    fn check(&self) -> Result<(), String> {
        let rate = crate::audio_input::MAX_SAMPLE_RATE as usize;
        for (field, value, range) in [
            ("n_fft", self.n_fft, 4..=MAX_N_FFT),
            ("hop_length", self.hop_length, 1..=MAX_N_FFT),
            ("num_chroma", self.num_chroma, 1..=MAX_CHROMA),
            ("sampling_rate", self.sampling_rate as usize, 1..=rate),
            ("chunk_length", self.chunk_length, 1..=MAX_CHUNK_S),
        ] {
            if !range.contains(&value) {
                let (low, high) = range.into_inner();
                return Err(format!("preprocessor_config {field} must be {low}..={high}, got {value}"));
            }
        }
        Ok(())
    }
}

/// Largest `n_fft` (and hop) read: four times transformers' default of 16 384.
pub const MAX_N_FFT: usize = 1 << 16;
/// Most pitch classes read (the published extractor has 12).
pub const MAX_CHROMA: usize = 96;
/// Longest `chunk_length` read, in seconds (the published one is 30).
pub const MAX_CHUNK_S: usize = 600;

/// A chroma extractor with its window, filter bank and FFT plan built once.
pub struct ChromaExtractor {
    config: ChromaConfig,
    window: Vec<f64>,
    /// `num_chroma × (n_fft/2 + 1)`, row-major.
    filters: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for ChromaExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromaExtractor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ChromaExtractor {
    /// An extractor for `config`.
    pub fn new(config: ChromaConfig) -> Result<Self, String> {
        config.check()?;
        let n = config.n_fft;
        let window =
            (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).collect();
        let filters = filter_bank(config.sampling_rate as f64, n, config.num_chroma);
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        Ok(Self { config, window, filters, fft })
    }

    /// The settings.
    pub fn config(&self) -> &ChromaConfig {
        &self.config
    }

    /// Chroma frames normalised by their largest bin, `frames × num_chroma`, of mono `samples` at
    /// the extractor's rate (before the argmax).
    pub fn normalized(&self, samples: &[f32]) -> Vec<Vec<f32>> {
        let n = self.config.n_fft;
        let limit = self.config.chunk_length * self.config.sampling_rate as usize;
        let mut wave: Vec<f64> = samples[..samples.len().min(limit)].iter().map(|&s| s as f64).collect();
        if wave.len() < n {
            let pad = n - wave.len();
            let mut padded = vec![0.0; pad / 2];
            padded.extend_from_slice(&wave);
            padded.resize(n, 0.0);
            wave = padded;
        }
        let padded = reflect_pad(&wave, n / 2);
        let frames = 1 + (padded.len() - n) / self.config.hop_length;
        let scale = self.window.iter().map(|w| w * w).sum::<f64>();
        let bins = n / 2 + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut power = vec![0.0; bins];
        (0..frames)
            .map(|t| {
                let start = t * self.config.hop_length;
                for (i, x) in input.iter_mut().enumerate() {
                    *x = padded[start + i] * self.window[i];
                }
                self.fft.process(&mut input, &mut spectrum).expect("buffers come from the plan");
                for (p, c) in power.iter_mut().zip(&spectrum) {
                    *p = c.norm_sqr() / scale;
                }
                let raw: Vec<f64> = self
                    .filters
                    .chunks(bins)
                    .map(|row| row.iter().zip(&power).map(|(f, p)| f * p).sum())
                    .collect();
                let top = raw.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
                raw.iter().map(|v| (v / top) as f32).collect()
            })
            .collect()
    }

    /// The one-hot chroma the model is conditioned on, `frames × num_chroma`: 1 on each frame's
    /// largest bin (the first of equals), 0 elsewhere.
    pub fn one_hot(&self, samples: &[f32]) -> Vec<Vec<f32>> {
        self.normalized(samples).into_iter().map(|frame| one_hot(&frame)).collect()
    }
}

/// 1 at the first largest value of `frame`, 0 elsewhere.
pub fn one_hot(frame: &[f32]) -> Vec<f32> {
    let best = (0..frame.len()).fold(0, |best, i| if frame[i] > frame[best] { i } else { best });
    (0..frame.len()).map(|i| if i == best { 1.0 } else { 0.0 }).collect()
}

/// torch's `reflect` padding by `pad` on both sides (the edge sample is not repeated).
fn reflect_pad(x: &[f64], pad: usize) -> Vec<f64> {
    let n = x.len();
    let at = |i: isize| -> f64 {
        let period = 2 * (n as isize - 1);
        let mut j = i.rem_euclid(period.max(1));
        if j >= n as isize {
            j = period - j;
        }
        x[j as usize]
    };
    (-(pad as isize)..(n + pad) as isize).map(at).collect()
}

/// transformers' `chroma_filter_bank(num_frequency_bins=n_fft, tuning=0, power=2, weighting (5, 2),
/// start_at_c_chroma=True)` (librosa's), keeping the `n_fft/2 + 1` non-aliased columns.
fn filter_bank(rate: f64, n_fft: usize, num_chroma: usize) -> Vec<f64> {
    let nc = num_chroma as f64;
    let octave = |f: f64| (f / (440.0 / 16.0)).log2();
    let mut freq_bins: Vec<f64> = (1..n_fft).map(|k| nc * octave(k as f64 * rate / n_fft as f64)).collect();
    freq_bins.insert(0, freq_bins[0] - 1.5 * nc);
    let mut widths: Vec<f64> = freq_bins.windows(2).map(|w| (w[1] - w[0]).max(1.0)).collect();
    widths.push(1.0);
    // numpy's round is half-to-even; num_chroma / 2 is an integer or a half.
    let half = (nc / 2.0).round_ties_even();
    let columns = n_fft;
    let mut bank = vec![0.0; num_chroma * columns];
    for (i, (&fb, &width)) in freq_bins.iter().zip(&widths).enumerate() {
        let bumps: Vec<f64> = (0..num_chroma)
            .map(|c| {
                let d = (fb - c as f64 + half + 10.0 * nc).rem_euclid(nc) - half;
                (-0.5 * (2.0 * d / width).powi(2)).exp()
            })
            .collect();
        let norm = bumps.iter().map(|b| b * b).sum::<f64>().sqrt();
        let weight = (-0.5 * ((fb / nc - 5.0) / 2.0).powi(2)).exp();
        for (c, b) in bumps.iter().enumerate() {
            bank[c * columns + i] = b / norm * weight;
        }
    }
    // Start at C: row c takes what librosa computed for row c + 3 (A-based).
    let shift = 3 * (num_chroma / 12);
    let keep = 1 + n_fft / 2;
    (0..num_chroma)
        .flat_map(|c| {
            let row = (c + shift) % num_chroma;
            bank[row * columns..row * columns + keep].to_vec()
        })
        .collect()
}

fn default_rate() -> u32 {
    32_000
}
fn default_n_fft() -> usize {
    16_384
}
fn default_hop() -> usize {
    4_096
}
fn default_chroma() -> usize {
    12
}
fn default_chunk() -> usize {
    30
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing finds: settings that made the extractor terabytes or overflowed are refused by name.
    #[test]
    fn unusable_settings_are_refused_naming_the_field() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/config_file");
        for (file, needle) in [
            ("huge-n-fft.json", "n_fft must be 4..=65536, got 1099511627776"),
            ("huge-chunk-length.json", "chunk_length must be 1..=600, got 18446744073709551615"),
        ] {
            let err = ChromaConfig::from_file_or_default(&dir.join(file)).unwrap_err();
            assert!(err.contains(needle), "{file}: {err}");
        }
    }

    #[test]
    fn a_pure_tone_lands_on_its_pitch_class() {
        let config = ChromaConfig { n_fft: 4096, hop_length: 1024, ..ChromaConfig::default() };
        let extractor = ChromaExtractor::new(config).unwrap();
        // A4 = 440 Hz is pitch class 9 counted from C.
        let tone: Vec<f32> =
            (0..32_000).map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 32_000.0).sin()).collect();
        let frames = extractor.one_hot(&tone);
        assert_eq!(frames.len(), 1 + 32_000 / 1024);
        let middle = &frames[frames.len() / 2];
        assert_eq!(middle.iter().position(|&v| v == 1.0), Some(9), "{middle:?}");
        assert_eq!(middle.iter().sum::<f32>(), 1.0);
    }

    #[test]
    fn reflect_padding_does_not_repeat_the_edge() {
        assert_eq!(reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2), vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]);
    }

    #[test]
    fn unusable_settings_are_refused() {
        let config = ChromaConfig { hop_length: 0, ..ChromaConfig::default() };
        assert!(ChromaExtractor::new(config).unwrap_err().contains("hop_length must be 1..=65536, got 0"));
    }
}
