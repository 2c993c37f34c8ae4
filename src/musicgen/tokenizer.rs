//! Prompt tokenization with the checkpoint's own `tokenizer.json` (its post-processor appends `</s>` for
//! T5), padded into a batch with an attention mask the way transformers' tokenizer pads.

use std::path::Path;

use tch::{Device, Tensor};
use tokenizers::Tokenizer;

use super::error::{MusicgenError, Result};

/// Token ids and attention mask of a batch of prompts, right-padded with id 0 (T5's `<pad>`).
#[derive(Debug)]
pub struct PromptBatch {
    /// `(batch, longest)` int64 ids.
    pub input_ids: Tensor,
    /// `(batch, longest)` int64 mask: 1 on tokens, 0 on padding.
    pub attention_mask: Tensor,
}

/// The text tokenizer of a MusicGen checkpoint.
pub struct PromptTokenizer {
    inner: Tokenizer,
    pad_id: i64,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| MusicgenError::Tokenizer(format!("{}: {e}", path.display())))?;
        let pad_id = inner.token_to_id("<pad>").map_or(0, i64::from);
        Ok(Self { inner, pad_id })
    }

    /// Token ids of one prompt, special tokens included.
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(prompt, true).map_err(|e| MusicgenError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().iter().map(|&id| i64::from(id)).collect())
    }

    /// Encodes and right-pads several prompts onto `device`.
    pub fn encode_batch(&self, prompts: &[&str], device: Device) -> Result<PromptBatch> {
        let encoded = prompts.iter().map(|p| self.encode(p)).collect::<Result<Vec<_>>>()?;
        let width = encoded.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id; encoded.len() * width];
        let mut mask = vec![0i64; encoded.len() * width];
        for (row, tokens) in encoded.iter().enumerate() {
            ids[row * width..row * width + tokens.len()].copy_from_slice(tokens);
            mask[row * width..row * width + tokens.len()].fill(1);
        }
        let shape = [encoded.len() as i64, width as i64];
        Ok(PromptBatch {
            input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
        })
    }
}
