//! Tests of `musicgen::decoder` against libtorch's own operations.

use std::path::Path;

use super::super::{with_unconditional, DType, MusicGen};
use super::*;

pub(super) fn fixture(name: &str, dtype: DType) -> MusicGen {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    MusicGen::load(&dir, Device::Cpu, dtype).expect("fixture loads")
}

/// A state for `prompts` (padded to the longest) with their unconditional rows, as generation
/// builds it.
pub(super) fn state(model: &MusicGen, prompts: &[&str], capacity: i64) -> DecoderState {
    let batch = model.tokenize(prompts).expect("prompts tokenize");
    let cond = model.conditioning(&batch.input_ids, &batch.attention_mask);
    let (states, mask) = with_unconditional(&cond, &batch.attention_mask);
    model.decoder.new_state(&states, &mask, capacity)
}

fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
    let (got, want) = (got.to_kind(Kind::Float), want.to_kind(Kind::Float));
    (got - &want).abs().max().double_value(&[]) / want.abs().max().double_value(&[])
}

/// The native step on every kernel path this CPU runs against the op-by-op libtorch step, step
/// after step from the same caches: padded prompts, fully masked unconditional rows, pad codes,
/// both fixture shapes, every dtype. f16 / bf16 differ by the libtorch path's rounding between ops,
/// which the native step skips.
#[test]
fn native_step_matches_the_libtorch_step() {
    for path in kernels::paths_here() {
        native_step_matches_on(path);
    }
}

fn native_step_matches_on(path: kernels::Path) {
    let prompts = ["a calm piano melody with soft strings", "drums", "80s pop track with synth"];
    for name in ["musicgen-tiny", "musicgen-tiny2"] {
        for (dtype, rows, tolerance) in [(DType::F32, 3, 1e-5), (DType::F16, 3, 5e-3), (DType::Bf16, 2, 4e-2)]
        {
            let model = fixture(name, dtype);
            let d = &model.decoder;
            let steps = 7;
            let (mut native, mut reference) =
                (state(&model, &prompts[..rows], steps), state(&model, &prompts[..rows], steps));
            let shape = [2 * rows as i64, d.cfg.num_codebooks, 1];
            let mut worst = 0f64;
            for step in 0..steps {
                let codes = Tensor::randint(d.cfg.vocab_size + 1, shape, (Kind::Int64, Device::Cpu));
                let got = d.native_step_on(path, &codes, &mut native).expect("the native step applies");
                native.pos += 1;
                let want = d.forward_libtorch(&codes, &mut reference);
                assert_eq!((got.size(), got.kind()), (want.size(), want.kind()));
                let err = relative_error(&got, &want);
                assert!(err <= tolerance, "{path}: {name} {dtype:?} step {step}: relative error {err}");
                worst = worst.max(err);
            }
            // The figures BENCHMARKS.md quotes: `-- --nocapture` shows them.
            eprintln!("{path}: {name} {dtype:?}: largest relative error {worst:.1e} (bound {tolerance:.0e})");
            let k = relative_error(&native.self_k[1], &reference.self_k[1]);
            assert!(k <= tolerance, "{path}: {name} {dtype:?}: cached keys differ by {k}");
        }
    }
}

#[test]
fn native_step_declines_what_it_does_not_handle() {
    let model = fixture("musicgen-tiny", DType::F32);
    let d = &model.decoder;
    let c = d.cfg.num_codebooks;
    let mut st = state(&model, &["drums"], 4);
    let out_of_range = Tensor::full([2, c, 1], d.cfg.vocab_size + 1, (Kind::Int64, Device::Cpu));
    assert!(d.native_step(&out_of_range, &mut st).is_none(), "a code beyond the pad id");
    let four = Tensor::zeros([4, c, 1], (Kind::Int64, Device::Cpu));
    assert!(d.native_step(&four, &mut st).is_none(), "more rows than the state holds");
    st.pos = 4;
    let pad = Tensor::full([2, c, 1], d.cfg.vocab_size, (Kind::Int64, Device::Cpu));
    assert!(d.native_step(&pad, &mut st).is_none(), "a full cache");
    let mut wide = state(&model, &["drums"; 5], 4);
    let nine = Tensor::zeros([10, c, 1], (Kind::Int64, Device::Cpu));
    assert!(d.native_step(&nine, &mut wide).is_none(), "more rows than the kernel takes");
}
