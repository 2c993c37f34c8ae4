//! What a running batch tells its caller and asks of it: [`Observer`], the other side of
//! [`MusicGen::generate_observed`](super::MusicGen::generate_observed).

use std::ops::ControlFlow;

use super::{AudioChunkOut, GenerationStats};

/// The caller's side of a running batch. Request indices are positions in the batch.
pub trait Observer {
    /// Asked before every decoding step for each live request: whether it stops now (a
    /// disconnected client, a passed deadline).
    fn stop(&mut self, _request: usize) -> bool {
        false
    }

    /// A decoded chunk; `Break` stops that request within one step.
    fn chunk(&mut self, chunk: AudioChunkOut) -> ControlFlow<()>;

    /// The request is over (all its audio sent, or stopped): its figures are final, whatever later
    /// steps of the batch do.
    fn finished(&mut self, _request: usize, _stats: &GenerationStats) {}

    /// Called inside every decoding step, before the decoder runs: a seam for faults injected where
    /// libtorch really computes.
    fn step(&mut self, _step: usize) {}
}

/// A chunk callback as an [`Observer`].
pub(super) struct OnChunk<F>(pub F);

impl<F: FnMut(AudioChunkOut) -> ControlFlow<()>> Observer for OnChunk<F> {
    fn chunk(&mut self, chunk: AudioChunkOut) -> ControlFlow<()> {
        (self.0)(chunk)
    }
}
