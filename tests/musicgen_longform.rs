//! Generation past the checkpoint's window, against transformers on every tiny fixture: windows every
//! stride, each prompted with the previous window's codes past the stride, as audiocraft extends; the
//! reference (`longform.safetensors`) runs the same windowing over transformers' `generate` with the
//! prompt as `decoder_input_ids`. The stream is the full decode of the concatenated codes.
#![cfg(feature = "torch")]

mod musicgen_common;

use std::ops::ControlFlow;
use std::path::Path;

use maestro::musicgen::{DType, GenerationRequest, MusicGen};
use musicgen_common::{fixture, interleaved, max_diff, reference_file, FIXTURES, PROMPTS};
use tch::{Device, Tensor};

/// The script's window and stride in frames (`LONG_WINDOW`, `LONG_STRIDE`).
const WINDOW: usize = 40;
const STRIDE: usize = 24;

/// The fixture with its window cut to [`WINDOW`] frames (`max_length` in `generation_config.json`).
fn short_window_copy(name: &str, into: &Path) -> MusicGen {
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(name).join(file), into.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(fixture(name).join("generation_config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["max_length"] = WINDOW.into();
    std::fs::write(into.join("generation_config.json"), config.to_string()).unwrap();
    let mut model = MusicGen::load(into, Device::Cpu, DType::F32).unwrap();
    model.set_extend_stride_s(STRIDE as f64 / model.frame_rate());
    assert_eq!((model.window_frames(), model.extend_stride_frames()), (WINDOW, STRIDE));
    model
}

fn greedy(model: &MusicGen, prompt: &str, frames: usize) -> GenerationRequest {
    let mut req = model.request(prompt, 1.0);
    req.frames = frames;
    req.sampling.greedy = true;
    req.guidance_scale = 3.0;
    req.chunk_frames = 7;
    req
}

#[test]
fn long_generations_extend_window_by_window_as_audiocraft() {
    for name in FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let model = short_window_copy(name, dir.path());
        let r = reference_file(name, "longform.safetensors");
        let want: Vec<Tensor> = (0..2).map(|i| r[&format!("long{i}.codes")].shallow_clone()).collect();
        let frames: Vec<usize> = want.iter().map(|c| c.size()[1] as usize).collect();
        assert!(frames.iter().all(|&f| f > WINDOW), "{name}: the references are longer than a window");
        // Both in one batch, of different lengths: their last windows differ.
        let requests: Vec<_> = (0..2).map(|i| greedy(&model, PROMPTS[i], frames[i])).collect();
        let mut audio = vec![Vec::new(); 2];
        let mut next = [0; 2];
        let stats = model
            .generate(&requests, |chunk| {
                assert_eq!(chunk.start_frame, next[chunk.request], "chunks follow each other, no seam");
                next[chunk.request] += chunk.frames;
                audio[chunk.request].extend_from_slice(&chunk.samples);
                ControlFlow::Continue(())
            })
            .unwrap();
        for i in 0..2 {
            assert_eq!(stats[i].frames, frames[i]);
            let codes = Tensor::from_slice(&stats[i].codes.concat()).view([-1, frames[i] as i64]);
            assert!(codes.equal(&want[i]), "{name} request {i}: codes differ from the windowed reference");
            let diff = max_diff(&Tensor::from_slice(&audio[i]), &interleaved(&r[&format!("long{i}.audio")]));
            assert!(
                diff <= 1e-4,
                "{name} request {i}: streamed audio differs from the full decode by {diff}"
            );
        }
        // Alone, a long request gets the same codes.
        let alone = model.generate(&requests[1..], |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(alone[0].codes, stats[1].codes, "{name}: batching changed a long request");
    }
}

#[test]
fn a_stop_in_a_later_window_ends_the_request_there() {
    let dir = tempfile::tempdir().unwrap();
    let model = short_window_copy(FIXTURES[0], dir.path());
    let mut chunks = 0;
    let stats = model
        .generate(&[greedy(&model, PROMPTS[0], 100)], |chunk| {
            chunks += 1;
            if chunk.start_frame + chunk.frames > WINDOW + 10 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(stats[0].stopped && stats[0].frames > WINDOW && stats[0].frames < 100, "{:?}", stats[0].frames);
    assert_eq!(stats[0].codes[0].len(), stats[0].frames);
}
