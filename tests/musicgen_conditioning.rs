//! What generation is conditioned on, against transformers on every tiny fixture (mono and stereo):
//! an empty prompt is the null condition of `get_unconditional_inputs` (guidance then off), a negative
//! prompt replaces guidance's unconditional row, and batches may mix both. Plus the sampling modes'
//! rules on real logits.
#![cfg(feature = "torch")]

mod musicgen_common;

use maestro::musicgen::{DType, GenerationRequest, GenerationStats, MusicGen, SamplingMode};
use musicgen_common::{codes_tensor, fixture, interleaved, max_diff, reference_file, run, FIXTURES, PROMPTS};
use tch::{Device, Kind, Tensor};

/// The negative prompts `scripts/make_reference.py` pairs with the first two prompts.
const NEGATIVE: [&str; 2] = ["calm piano", ""];

fn load(name: &str) -> MusicGen {
    MusicGen::load(&fixture(name), Device::Cpu, DType::F32).expect("fixture loads")
}

fn greedy(model: &MusicGen, prompt: &str, negative: &str, frames: usize) -> GenerationRequest {
    let mut req = model.request(prompt, 1.0);
    req.negative_prompt = negative.into();
    req.frames = frames;
    req.sampling.greedy = true;
    req.guidance_scale = 3.0;
    req.chunk_frames = 4;
    req
}

fn assert_matches(name: &str, what: &str, got: &(GenerationStats, Vec<f32>), codes: &Tensor, audio: &Tensor) {
    assert!(codes_tensor(&got.0).equal(codes), "{name} {what}: codes differ from transformers");
    let diff = max_diff(&Tensor::from_slice(&got.1), &interleaved(audio));
    assert!(diff <= 1e-4, "{name} {what}: audio differs by {diff}");
}

#[test]
fn empty_prompt_is_transformers_unconditional_generation() {
    for name in FIXTURES {
        let model = load(name);
        let r = reference_file(name, "conditioning.safetensors");
        let frames = r["uncond.codes"].size()[2] as usize;
        let req = greedy(&model, "", "", frames);
        assert_eq!(req.effective_guidance(), 1.0, "nothing to contrast: guidance off");
        let got = run(&model, std::slice::from_ref(&req)).pop().unwrap();
        assert_matches(name, "unconditional", &got, &r["uncond.codes"].get(0), &r["uncond.audio"].get(0));
        // Beside guided requests, in one batch, it gets the same codes.
        let batch = run(&model, &[greedy(&model, PROMPTS[0], "", frames), req]);
        assert_eq!(batch[1].0.codes, got.0.codes, "{name}: batching changed the unconditional row");
    }
}

#[test]
fn negative_prompts_replace_the_unconditional_row() {
    for name in FIXTURES {
        let model = load(name);
        let r = reference_file(name, "conditioning.safetensors");
        let frames = r["neg.codes"].size()[2] as usize;
        let requests: Vec<_> =
            PROMPTS[..2].iter().zip(NEGATIVE).map(|(p, n)| greedy(&model, p, n, frames)).collect();
        for (row, got) in run(&model, &requests).iter().enumerate() {
            let (codes, audio) = (r["neg.codes"].get(row as i64), r["neg.audio"].get(row as i64));
            assert_matches(name, &format!("negative row {row}"), got, &codes, &audio);
        }
        // The negative prompt changes the music; unguided, it changes nothing.
        let plain = run(&model, &[greedy(&model, PROMPTS[0], "", frames)]).pop().unwrap().0.codes;
        assert_ne!(run(&model, &requests[..1])[0].0.codes, plain, "{name}: the negative prompt was ignored");
        let unguided = |negative: &str| {
            let mut req = greedy(&model, PROMPTS[0], negative, frames);
            req.guidance_scale = 1.0;
            run(&model, &[req]).pop().unwrap().0.codes
        };
        assert_eq!(unguided("calm piano"), unguided(""), "{name}: a negative prompt without guidance");
    }
}

#[test]
fn an_empty_prompt_with_a_negative_prompt_stays_guided() {
    let model = load(FIXTURES[0]);
    let req = greedy(&model, "", "calm piano", 12);
    assert_eq!(req.effective_guidance(), 3.0);
    let guided = run(&model, std::slice::from_ref(&req)).pop().unwrap().0.codes;
    let null = run(&model, &[greedy(&model, "", "", 12)]).pop().unwrap().0.codes;
    assert_ne!(guided, null, "steering away from the negative prompt changes the codes");
}

#[test]
fn audiocraft_mode_lets_top_p_replace_top_k() {
    let model = load(FIXTURES[0]);
    let sampled = |mode, top_k, top_p| {
        let mut req = greedy(&model, PROMPTS[1], "", 20);
        req.sampling.greedy = false;
        req.sampling.temperature = 1.0;
        req.sampling.top_k = top_k;
        req.sampling.top_p = top_p;
        req.sampling.mode = mode;
        req.seed = 11;
        run(&model, &[req]).pop().unwrap().0.codes
    };
    let argmax = run(&model, &[greedy(&model, PROMPTS[1], "", 20)]).pop().unwrap().0.codes;
    // top-k 1 is argmax in transformers' order, and in audiocraft's while top-p is off.
    assert_eq!(sampled(SamplingMode::Transformers, 1, 0.95), argmax);
    assert_eq!(sampled(SamplingMode::Audiocraft, 1, 1.0), argmax);
    // With top-p on, audiocraft ignores top-k: the draws leave the argmax.
    assert_ne!(sampled(SamplingMode::Audiocraft, 1, 0.95), argmax);
    let again = sampled(SamplingMode::Audiocraft, 1, 0.95);
    assert_eq!(again, sampled(SamplingMode::Audiocraft, 1, 0.95), "seeded");
}

#[test]
fn stereo_fixture_is_stored_like_the_published_stereo_files() {
    let name = "musicgen-stereo-tiny";
    let stored = Tensor::read_safetensors(fixture(name).join("model.safetensors")).unwrap();
    let floats: Vec<_> = stored.iter().filter(|(_, t)| t.is_floating_point()).collect();
    assert!(!floats.is_empty() && floats.iter().all(|(_, t)| t.kind() == Kind::Half), "stored in f16");
    let model = load(name);
    assert_eq!((model.channels(), model.num_codebooks()), (2, 8));
    let (stats, audio) = run(&model, &[greedy(&model, PROMPTS[0], "", 10)]).pop().unwrap();
    assert_eq!(audio.len(), stats.frames * model.hop_length() * 2, "two interleaved channels");
    let (left, right): (Vec<f32>, Vec<f32>) = audio.chunks(2).map(|lr| (lr[0], lr[1])).unzip();
    assert_ne!(left, right, "left and right are decoded from their own codebooks");
}
