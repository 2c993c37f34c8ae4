//! Audio in, against transformers on the tiny mono and stereo fixtures (`audio_in.safetensors`): the
//! EnCodec encoder with residual vector quantisation gives `EncodecModel.encode`'s codes, and a
//! continuation prompted with them gives `generate(input_values=…)`'s greedy codes and audio.
#![cfg(feature = "torch")]

mod musicgen_common;

use std::ops::ControlFlow;

use maestro::musicgen::{AudioEncoder, DType, GenerationRequest, GenerationStats, MusicGen};
use musicgen_common::{fixture, interleaved, max_diff, reference_file, PROMPTS};
use tch::{Device, Tensor};

const FIXTURES: [&str; 2] = ["musicgen-tiny", "musicgen-stereo-tiny"];
/// `CONTINUE_TOKENS` of the script: decoder steps after the clip's columns.
const CONTINUE_TOKENS: usize = 20;

fn codes_tensor(codes: &[Vec<i64>]) -> Tensor {
    Tensor::from_slice(&codes.concat()).view([codes.len() as i64, -1])
}

fn continuation(model: &MusicGen, prompt_codes: Vec<Vec<i64>>, include_prompt: bool) -> GenerationRequest {
    let mut req = model.request(PROMPTS[1], 1.0);
    let channel_codebooks = model.num_codebooks() / model.channels();
    req.frames = CONTINUE_TOKENS + 1 - channel_codebooks;
    req.prompt_codes = prompt_codes;
    req.include_prompt = include_prompt;
    req.sampling.greedy = true;
    req.guidance_scale = 3.0;
    req.chunk_frames = 5;
    req
}

fn run(model: &MusicGen, requests: &[GenerationRequest]) -> Vec<(GenerationStats, Vec<f32>)> {
    let mut audio = vec![Vec::new(); requests.len()];
    let mut next = vec![0; requests.len()];
    let stats = model
        .generate(requests, |chunk| {
            assert_eq!(chunk.start_frame, next[chunk.request], "chunks follow each other");
            next[chunk.request] += chunk.frames;
            audio[chunk.request].extend_from_slice(&chunk.samples);
            ControlFlow::Continue(())
        })
        .unwrap();
    stats.into_iter().zip(audio).collect()
}

#[test]
fn the_encoder_gives_transformers_codes() {
    for name in FIXTURES {
        let r = reference_file(name, "audio_in.safetensors");
        let encoder = AudioEncoder::load(&fixture(name), Device::Cpu).unwrap();
        let codes = encoder.encode(&r["clip.audio"].get(0)).unwrap();
        assert!(
            codes_tensor(&codes).equal(&r["clip.codes"]),
            "{name}: codes differ from EncodecModel.encode"
        );
        let err = encoder.encode(&Tensor::zeros([3, 640], (tch::Kind::Float, Device::Cpu))).unwrap_err();
        assert!(err.to_string().contains("audio_prompt"), "{err}");
    }
}

#[test]
fn a_continuation_matches_transformers_generate_with_input_values() {
    for name in FIXTURES {
        let r = reference_file(name, "audio_in.safetensors");
        let model = MusicGen::load(&fixture(name), Device::Cpu, DType::F32).unwrap();
        let encoder = AudioEncoder::load(&fixture(name), Device::Cpu).unwrap();
        let prompt = encoder.encode(&r["clip.audio"].get(0)).unwrap();
        let prompt_frames = prompt[0].len();
        let whole = interleaved(&r["continue.audio"]);
        let (stats, audio) = run(&model, &[continuation(&model, prompt.clone(), true)]).pop().unwrap();
        assert!(codes_tensor(&stats.codes).equal(&r["continue.codes"]), "{name}: continuation codes differ");
        let diff = max_diff(&Tensor::from_slice(&audio), &whole);
        assert!(diff <= 1e-4, "{name}: the decode of prompt and continuation differs by {diff}");
        // By default the stream is the part after the prompt, of the same decode.
        let (tail_stats, tail) = run(&model, &[continuation(&model, prompt.clone(), false)]).pop().unwrap();
        assert_eq!(tail_stats.codes, stats.codes, "{name}: the prompt changed nothing else");
        let skip = (prompt_frames * encoder.hop() * model.channels()) as i64;
        let want = whole.narrow(0, skip, whole.size()[0] - skip);
        let diff = max_diff(&Tensor::from_slice(&tail), &want);
        assert!(diff <= 1e-4, "{name}: the streamed continuation differs from the decode's tail by {diff}");
        // Batched with a text-only request, each gets what it gets alone.
        let mut plain = model.request(PROMPTS[0], 1.0);
        (plain.frames, plain.sampling.greedy, plain.guidance_scale) = (30, true, 3.0);
        let batch = run(&model, &[plain.clone(), continuation(&model, prompt, false)]);
        assert_eq!(batch[1].0.codes, tail_stats.codes, "{name}: batching changed the continuation");
        assert_eq!(
            batch[0].0.codes,
            run(&model, &[plain])[0].0.codes,
            "{name}: batching changed the text row"
        );
    }
}

#[test]
fn bad_prompt_codes_are_refused() {
    let model = MusicGen::load(&fixture(FIXTURES[0]), Device::Cpu, DType::F32).unwrap();
    let mut req = continuation(&model, vec![vec![1; 5]; 3], false);
    let err = model.generate(std::slice::from_ref(&req), |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.to_string().contains("prompt_codes"), "{err}");
    req.prompt_codes = vec![vec![1_000; 5]; 4];
    let err = model.generate(&[req], |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.to_string().contains("within 0..64"), "{err}");
}
