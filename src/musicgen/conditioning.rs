//! What the decoder cross-attends to for a batch: each request's prompt as its conditional row and, when
//! guidance is on, its negative prompt (or the null condition) as its unconditional row.
//!
//! The null condition is what transformers' `get_unconditional_inputs` and audiocraft's null
//! conditioner give: zero states under an all-zero mask. An empty prompt is that condition, not the T5
//! encoding of a lone `</s>`. Every non-empty text of the batch goes through T5 in one padded call; a
//! row's padding is masked and zeroed, so the batch's width never changes a row's result.

use tch::{Kind, Tensor};

use super::error::Result;
use super::generate::GenerationRequest;
use super::MusicGen;

/// Encoder states `(rows, seq, hidden)` in the decoder's kind and their mask `(rows, seq)`: the
/// conditional rows, then (when `guided`) the unconditional rows, request by request.
pub(crate) struct Conditioning {
    /// Projected, masked states.
    pub states: Tensor,
    /// 1 on attended positions, 0 elsewhere.
    pub mask: Tensor,
}

impl MusicGen {
    /// The batch's conditioning; `guided` adds the unconditional rows (a negative prompt where the
    /// request has one, the null condition otherwise).
    pub(crate) fn condition(&self, requests: &[&GenerationRequest], guided: bool) -> Result<Conditioning> {
        let mut slots: Vec<&str> = requests.iter().map(|r| r.prompt.as_str()).collect();
        if guided {
            slots.extend(requests.iter().map(|r| if r.guided() { r.negative_prompt.as_str() } else { "" }));
        }
        self.encode_slots(&slots)
    }

    /// Conditioning rows for `texts`, an empty text being the null condition.
    pub(crate) fn encode_slots(&self, texts: &[&str]) -> Result<Conditioning> {
        let dev = self.options.device;
        let present: Vec<&str> = texts.iter().copied().filter(|t| !t.is_empty()).collect();
        let (states, mask) = if present.is_empty() {
            let d = self.config.decoder.hidden_size;
            let states = Tensor::zeros([1, 1, d], (self.decoder.kind(), dev));
            (states, Tensor::zeros([1, 1], (Kind::Int64, dev)))
        } else {
            let batch = self.tokenize(&present)?;
            let states = self.conditioning(&batch.input_ids, &batch.attention_mask);
            // One null row after the encoded ones, for every empty slot to point at.
            let null = states.narrow(0, 0, 1).zeros_like();
            let null_mask = batch.attention_mask.narrow(0, 0, 1).zeros_like();
            (Tensor::cat(&[states, null], 0), Tensor::cat(&[batch.attention_mask, null_mask], 0))
        };
        let null = states.size()[0] - 1;
        let mut next = 0;
        let rows: Vec<i64> = texts
            .iter()
            .map(|t| {
                if t.is_empty() {
                    null
                } else {
                    next += 1;
                    next - 1
                }
            })
            .collect();
        let index = Tensor::from_slice(&rows).to_device(dev);
        Ok(Conditioning { states: states.index_select(0, &index), mask: mask.index_select(0, &index) })
    }
}
