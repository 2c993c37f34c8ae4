//! Turning guided logits into codes: greedy argmax, or temperature → top-k → top-p (transformers'
//! order) or temperature → top-p else top-k (audiocraft's) → a draw from a per-request seeded generator. The draw happens on the host from the few surviving candidates, so a seed
//! gives the same codes whatever else shares the batch, and on any device that computes the same logits.

use tch::{Kind, Tensor};

use super::error::Result;
pub use crate::engine::request::{SamplingMode, SamplingParams};

/// xoshiro256** seeded through splitmix64: small, fast, and identical on every platform.
#[derive(Debug, Clone)]
pub struct SeededRng {
    s: [u64; 4],
}

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self { s: [next(), next(), next(), next()] }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws one code per row from `values` (sorted descending, already divided by the temperature) and the
/// matching `indices`, both `rows × width`, keeping `keep` candidates and applying `top_p` by `mode`.
pub fn draw(
    values: &[f32],
    indices: &[i64],
    width: usize,
    keep: usize,
    (top_p, mode): (f64, SamplingMode),
    rng: &mut SeededRng,
) -> Vec<i64> {
    values
        .chunks(width)
        .zip(indices.chunks(width))
        .map(|(vals, idx)| {
            let probs = nucleus(&vals[..keep], top_p, mode);
            let total: f64 = probs.iter().sum();
            let mut target = rng.next_f64() * total;
            for (p, &code) in probs.iter().zip(idx) {
                if target < *p {
                    return code;
                }
                target -= p;
            }
            idx[probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)]
        })
        .collect()
}

/// Softmax of descending `vals` with `mode`'s top-p rule (see [`SamplingMode`]), always keeping the
/// most likely code.
fn nucleus(vals: &[f32], top_p: f64, mode: SamplingMode) -> Vec<f64> {
    let max = f64::from(vals[0]);
    let mut probs: Vec<f64> = vals.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    if top_p >= 1.0 {
        return probs;
    }
    match mode {
        SamplingMode::Transformers => {
            let mut tail = 0.0;
            for i in (1..probs.len()).rev() {
                tail += probs[i];
                if tail <= 1.0 - top_p {
                    probs[i] = 0.0;
                }
            }
        }
        SamplingMode::Audiocraft => {
            let mut before = 0.0;
            for p in probs.iter_mut() {
                let mass = *p;
                if before > top_p {
                    *p = 0.0;
                }
                before += mass;
            }
        }
    }
    probs
}

/// Copies a tensor to a host `Vec<f32>`.
pub fn to_vec_f32(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let mut out = vec![0f32; t.numel()];
    t.f_copy_data(&mut out, t.numel())?;
    Ok(out)
}

/// Copies a tensor to a host `Vec<i64>`.
pub fn to_vec_i64(t: &Tensor) -> Result<Vec<i64>> {
    let t = t.f_to_kind(Kind::Int64)?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let mut out = vec![0i64; t.numel()];
    t.f_copy_data(&mut out, t.numel())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (SeededRng::new(7), SeededRng::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(SeededRng::new(7).next_u64(), SeededRng::new(8).next_u64());
    }

    #[test]
    fn top_p_keeps_the_head() {
        let probs = nucleus(&[3.0, 1.0, 0.0, -1.0], 0.5, SamplingMode::Transformers);
        assert!(probs[0] > 0.0 && probs[1..].iter().all(|&p| p == 0.0));
        let all = nucleus(&[3.0, 1.0, 0.0, -1.0], 1.0, SamplingMode::Transformers);
        assert!(all.iter().all(|&p| p > 0.0));
    }

    /// Both rules keep the codes whose more likely codes hold less than top_p of the mass (they part
    /// only where that mass equals top_p exactly).
    #[test]
    fn top_p_rules_keep_the_nucleus() {
        let vals: Vec<f32> = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        for mode in [SamplingMode::Transformers, SamplingMode::Audiocraft] {
            assert_eq!(nucleus(&vals, 0.8, mode).iter().filter(|&&p| p > 0.0).count(), 3, "{mode:?}");
            assert_eq!(nucleus(&vals, 0.35, mode).iter().filter(|&&p| p > 0.0).count(), 1, "{mode:?}");
        }
    }

    #[test]
    fn audiocraft_top_p_replaces_top_k() {
        let p = |mode, top_p| SamplingParams { greedy: false, temperature: 1.0, top_k: 2, top_p, mode };
        assert_eq!(p(SamplingMode::Transformers, 0.9).candidates(64), 2);
        assert_eq!(p(SamplingMode::Audiocraft, 0.9).candidates(64), 64);
        assert_eq!(p(SamplingMode::Audiocraft, 1.0).candidates(64), 2);
    }

    #[test]
    fn draw_respects_top_k() {
        let mut rng = SeededRng::new(1);
        let vals = [1.0f32, 0.9, 0.8, 0.7];
        let idx = [10i64, 11, 12, 13];
        for _ in 0..50 {
            let code = draw(&vals, &idx, 4, 2, (1.0, SamplingMode::Transformers), &mut rng)[0];
            assert!(code == 10 || code == 11);
        }
    }
}
