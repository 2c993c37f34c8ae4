//! Guidance and code picking for a batch: guided logits (each request with its own scale, unguided rows
//! untouched), then argmax or a seeded draw per request.

use tch::{Kind, Tensor};

use super::error::Result;
use super::rows::Row;
use super::sampling::{draw, to_vec_f32, to_vec_i64, SamplingParams};
use super::{GenerationRequest, MusicGen};

/// Guidance and code picking for a batch, with the per-request scales and temperatures as tensors.
pub(super) struct Picker {
    n: i64,
    cfg_scale: Option<Tensor>,
    cfg_rows: Option<Tensor>,
    temperature: Tensor,
    params: Vec<SamplingParams>,
    vocab: i64,
}

impl Picker {
    pub fn new(model: &MusicGen, requests: &[&GenerationRequest], any_cfg: bool) -> Result<Self> {
        let dev = model.options.device;
        let n = requests.len() as i64;
        let column = |v: Vec<f64>| Tensor::from_slice(&v).to_kind(Kind::Float).view([n, 1, 1]).to_device(dev);
        let all_cfg = requests.iter().all(|r| r.guided());
        let cfg_rows = (any_cfg && !all_cfg).then(|| {
            let rows: Vec<bool> = requests.iter().map(|r| r.guided()).collect();
            Tensor::from_slice(&rows).view([n, 1, 1]).to_device(dev)
        });
        Ok(Self {
            n,
            cfg_scale: any_cfg.then(|| column(requests.iter().map(|r| r.effective_guidance()).collect())),
            cfg_rows,
            temperature: column(requests.iter().map(|r| r.sampling.temperature).collect()),
            params: requests.iter().map(|r| r.sampling).collect(),
            vocab: model.codebook_size() as i64,
        })
    }

    /// Codes `[row][codebook]` from decoder logits `(rows[·2], codebooks, vocab)`.
    pub fn pick(&self, logits: &Tensor, rows: &mut [&mut Row]) -> Result<Vec<Vec<i64>>> {
        let logits = logits.to_kind(Kind::Float);
        let cond = logits.narrow(0, 0, self.n);
        let guided = match &self.cfg_scale {
            Some(scale) => {
                let uncond = logits.narrow(0, self.n, self.n);
                let mixed = &uncond + (&cond - &uncond) * scale;
                match &self.cfg_rows {
                    Some(rows) => mixed.where_self(rows, &cond),
                    None => mixed,
                }
            }
            None => cond,
        };
        let c = guided.size()[1] as usize;
        let greedy = if self.params.iter().any(|p| p.greedy) {
            to_vec_i64(&guided.argmax(-1, false))?
        } else {
            vec![]
        };
        let width = self.params.iter().filter(|p| !p.greedy).map(|p| p.candidates(self.vocab)).max();
        let sampled = match width {
            Some(width) => {
                let (values, indices) = (guided / &self.temperature).topk(width, -1, true, true);
                Some((to_vec_f32(&values)?, to_vec_i64(&indices)?, width as usize))
            }
            None => None,
        };
        let mut out = Vec::with_capacity(rows.len());
        for (i, (row, p)) in rows.iter_mut().zip(&self.params).enumerate() {
            out.push(match (&sampled, p.greedy) {
                (Some((vals, idx, w)), false) => {
                    let span = i * c * w..(i + 1) * c * w;
                    let keep = p.candidates(self.vocab) as usize;
                    draw(&vals[span.clone()], &idx[span], *w, keep, (p.top_p, p.mode), &mut row.rng)
                }
                _ => greedy[i * c..(i + 1) * c].to_vec(),
            });
        }
        Ok(out)
    }
}
