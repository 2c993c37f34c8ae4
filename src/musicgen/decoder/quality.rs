//! What int8 weights cost: teacher forcing on the same code sequences, per-step guided logits of
//! the int8 decoder (on every kernel path this CPU runs) against the f32 decoder op by op through
//! libtorch. The bounds are issue 30's: mean correlation ≥ 0.999 and mean KL(f32 ‖ int8) ≤ 0.01
//! nats; top-1 agreement is printed (`-- --nocapture`), as near-tied random logits make it fragile.

use tch::{Device, Kind, Tensor};

use super::super::{with_unconditional, DType, MusicGen};
use super::tests::{fixture, state};
use crate::musicgen::kernels::{self, Path};

/// Guidance scale of the published models' generation config.
const GUIDANCE: f64 = 3.0;

/// Means over every (row, codebook, step) of one comparison.
#[derive(Debug, Default)]
pub(crate) struct Agreement {
    pub correlation: f64,
    pub kl: f64,
    pub top1: f64,
    count: f64,
}

impl Agreement {
    /// Adds logits `(rows, codebooks, 1, vocab)` of the reference and the candidate.
    pub fn add(&mut self, reference: &Tensor, candidate: &Tensor) {
        let v = *reference.size().last().expect("logits have a vocabulary");
        let (p, q) = (
            reference.to_kind(Kind::Double).reshape([-1, v]),
            candidate.to_kind(Kind::Double).reshape([-1, v]),
        );
        let centred = |t: &Tensor| t - t.mean_dim(-1, true, Kind::Double);
        let (pc, qc) = (centred(&p), centred(&q));
        let norm = |t: &Tensor| t.square().sum_dim_intlist(-1, false, Kind::Double).sqrt();
        let corr = (&pc * &qc).sum_dim_intlist(-1, false, Kind::Double) / (norm(&pc) * norm(&qc));
        let (lp, lq) = (p.log_softmax(-1, Kind::Double), q.log_softmax(-1, Kind::Double));
        let kl = (lp.exp() * (&lp - &lq)).sum_dim_intlist(-1, false, Kind::Double);
        let same = p.argmax(-1, false).eq_tensor(&q.argmax(-1, false)).to_kind(Kind::Double);
        let n = corr.size()[0] as f64;
        self.correlation += corr.sum(Kind::Double).double_value(&[]);
        self.kl += kl.sum(Kind::Double).double_value(&[]);
        self.top1 += same.sum(Kind::Double).double_value(&[]);
        self.count += n;
    }

    /// The means (correlation, KL in nats, top-1 agreement as a fraction).
    pub fn means(&self) -> (f64, f64, f64) {
        let n = self.count.max(1.0);
        (self.correlation / n, self.kl / n, self.top1 / n)
    }
}

/// Guided logits `(rows / 2, …)`: conditional rows first, unconditional after, as generation does.
fn guided(logits: &Tensor) -> Tensor {
    let half = logits.size()[0] / 2;
    let (cond, uncond) = (logits.narrow(0, 0, half), logits.narrow(0, half, half));
    &uncond + (cond - &uncond) * GUIDANCE
}

/// Teacher-forced steps of the `dtype` decoder on `path` against the f32 decoder through libtorch.
fn compare(name: &str, dtype: DType, path: Path, steps: i64) -> Agreement {
    compare_models(&fixture(name, DType::F32), &fixture(name, dtype), path, steps)
}

/// Teacher-forced steps of `candidate`'s native step on `path` against `reference` op by op.
fn compare_models(reference: &MusicGen, int8: &MusicGen, path: Path, steps: i64) -> Agreement {
    compare_on(reference, int8, path, &random_codes(reference, steps), 0)
}

/// The prompts of every comparison: one long, one short (padded).
const PROMPTS: [&str; 2] = ["a calm piano melody with soft strings", "drums"];

/// `steps` columns of random codes `(4, codebooks, 1)`: both prompts, conditional and unconditional.
fn random_codes(model: &MusicGen, steps: i64) -> Vec<Tensor> {
    tch::manual_seed(30);
    let shape = [2 * PROMPTS.len() as i64, model.decoder.cfg.num_codebooks, 1];
    (0..steps)
        .map(|_| Tensor::randint(model.decoder.cfg.vocab_size, shape, (Kind::Int64, Device::Cpu)))
        .collect()
}

/// `codes` fed to both decoders column by column; the guided logits compared from step `from` on.
fn compare_on(
    reference: &MusicGen,
    candidate: &MusicGen,
    path: Path,
    codes: &[Tensor],
    from: usize,
) -> Agreement {
    let capacity = codes.len() as i64;
    let (mut want_state, mut got_state) =
        (state(reference, &PROMPTS, capacity), state(candidate, &PROMPTS, capacity));
    let mut agreement = Agreement::default();
    for (t, codes) in codes.iter().enumerate() {
        let want = reference.decoder.forward_libtorch(codes, &mut want_state);
        let got =
            candidate.decoder.native_step_on(path, codes, &mut got_state).expect("the native step applies");
        got_state.pos += 1;
        if t >= from {
            agreement.add(&guided(&want), &guided(&got));
        }
    }
    agreement
}

/// `dtype` against f32 on both fixtures and every path this CPU runs: mean correlation at least
/// `min_correlation`, mean KL at most `max_kl` nats; each figure printed.
fn track_on_every_path(dtype: DType, min_correlation: f64, max_kl: f64) {
    for path in kernels::paths_here() {
        for name in ["musicgen-tiny", "musicgen-tiny2"] {
            let (correlation, kl, top1) = compare(name, dtype, path, 12).means();
            eprintln!(
                "{path}: {name} {dtype} vs f32, guided logits over 12 steps: correlation {correlation:.5}, \
                 KL {kl:.5} nats, top-1 agreement {:.1} %",
                top1 * 100.0
            );
            assert!(correlation >= min_correlation, "{path}: {name} {dtype} mean correlation {correlation}");
            assert!(kl <= max_kl, "{path}: {name} {dtype} mean KL {kl}");
        }
    }
}

#[test]
fn int8_logits_track_f32_on_every_path() {
    track_on_every_path(DType::Int8, 0.999, 0.01);
    // f16 on the same steps, for the comparison in docs/building.md.
    for name in ["musicgen-tiny", "musicgen-tiny2"] {
        let (correlation, kl, top1) = compare(name, DType::F16, kernels::active(), 12).means();
        eprintln!("f16: {name}: correlation {correlation:.6}, KL {kl:.6} nats, top-1 {:.1} %", top1 * 100.0);
    }
}

/// What int4 weights cost, on every path (each widens the codes to f32 and keeps f32 activations):
/// bounds looser than int8's, as 16 levels per group are: mean correlation ≥ 0.99 and mean KL ≤ 0.3
/// nats (measured 0.9925–0.994 and 0.14–0.23 on the fixtures, top-1 81–86 %). Beside it, printed: 4-bit rounding per channel and per group of 64, symmetric ±7 held in
/// f32 (`-- --nocapture`), for the choice of groups of 32 in docs/building.md.
#[test]
fn int4_logits_track_f32_on_every_path() {
    track_on_every_path(DType::Int4, 0.99, 0.3);
    for name in ["musicgen-tiny", "musicgen-tiny2"] {
        let reference = fixture(name, DType::F32);
        for group in [None, Some(64), Some(32)] {
            let mut candidate = fixture(name, DType::F32);
            candidate.decoder.fake_quantise(group, 7);
            let (correlation, kl, top1) =
                compare_models(&reference, &candidate, kernels::active(), 12).means();
            let scales = group.map_or("per channel".to_string(), |g| format!("groups of {g}"));
            eprintln!(
                "{name} weights rounded to ±7 {scales}: correlation {correlation:.6}, KL {kl:.6} nats, \
                 top-1 {:.1} %",
                top1 * 100.0
            );
        }
    }
}

/// Per-group scales beside per-channel, for the choice in docs/building.md ("What int8 costs"): the
/// f32 decoder with its projections and LM heads rounded to int8 per output row, or per group of
/// 128, 64 or 32 inputs, held dequantised in f32 and run on the active path with f32 activations,
/// so only the weights' rounding differs. Printed (`-- --nocapture`); bounded like int8 itself.
#[test]
fn per_group_scales_beside_per_channel() {
    let path = kernels::active();
    for name in ["musicgen-tiny", "musicgen-tiny2"] {
        let reference = fixture(name, DType::F32);
        for group in [None, Some(128), Some(64), Some(32)] {
            let mut candidate = fixture(name, DType::F32);
            candidate.decoder.fake_quantise(group, 127);
            let (correlation, kl, top1) = compare_models(&reference, &candidate, path, 12).means();
            let scales = group.map_or("per channel".to_string(), |g| format!("groups of {g}"));
            eprintln!(
                "{name} weights rounded {scales}, f32 activations ({path}): correlation {correlation:.6}, \
                 KL {kl:.6} nats, top-1 {:.1} %",
                top1 * 100.0
            );
            assert!(correlation >= 0.999 && kl <= 0.01, "{name} {scales}: {correlation}, {kl}");
        }
    }
}

/// The same two measurements on the musicgen-small shape (random weights, rows of 1024 and 4096
/// inputs, where groups of 32–128 differ from a whole row): int8 per channel on the VNNI path and
/// its f32-activation sibling, then per-group rounding with f32 activations. Ignored in `make
/// test` (a 2.2 GB checkpoint, made by the benchmarks); run it with
/// `cargo test -p maestro --lib small_shape_int8 -- --ignored --nocapture`.
#[test]
#[ignore]
fn small_shape_int8_and_groups() {
    let dir = std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".cache/maestro/musicgen-small-shape"));
    let Some(dir) = dir.filter(|d| d.join("config.json").exists()) else {
        eprintln!(
            "skipped: no ~/.cache/maestro/musicgen-small-shape (`cargo bench --bench cpu_paths` makes it)"
        );
        return;
    };
    let load = |dtype| MusicGen::load(&dir, Device::Cpu, dtype).expect("the small shape loads");
    let (reference, steps) = (load(DType::F32), 12);
    let report = |what: &str, a: Agreement| {
        let (correlation, kl, top1) = a.means();
        eprintln!(
            "small shape, {what}: correlation {correlation:.6}, KL {kl:.6} nats, top-1 {:.1} %",
            top1 * 100.0
        );
    };
    let paths = kernels::paths_here();
    let (int8, int4) = (load(DType::Int8), load(DType::Int4));
    // The generic path computes what its width's siblings do, only slower.
    for path in paths.iter().copied().filter(|p| *p != Path::Generic) {
        report(&format!("int8 per channel on {path}"), compare_models(&reference, &int8, path, steps));
        report(&format!("int4 groups of 32 on {path}"), compare_models(&reference, &int4, path, steps));
    }
    beside_onnx(&dir, &reference, &[("int8", &int8), ("int4", &int4)], &paths, report);
    drop((int8, int4));
    let f32_path = paths.into_iter().find(|p| !p.quantises_activations()).expect("generic runs everywhere");
    for group in [None, Some(128), Some(64), Some(32)] {
        let mut candidate = load(DType::F32);
        candidate.decoder.fake_quantise(group, 127);
        let scales = group.map_or("per channel".to_string(), |g| format!("groups of {g}"));
        report(
            &format!("weights rounded {scales}, f32 activations"),
            compare_models(&reference, &candidate, f32_path, steps),
        );
    }
}

/// Maestro's int8 and int4 and ONNX Runtime's int8, each against its own f32, on the same teacher-forced
/// steps: 24 columns of random codes after the same prompts' text-encoder states, guided logits from
/// step 1 on (ONNX Runtime's int8 export runs step 0 through its fp32 prefill session). The codes and
/// states go to `scripts/bench_onnx.py --forced` in the ONNX Runtime venv (`make bench` installs
/// it); without that venv this part says so and is skipped.
fn beside_onnx(
    dir: &std::path::Path,
    reference: &MusicGen,
    candidates: &[(&str, &MusicGen)],
    paths: &[Path],
    report: impl Fn(&str, Agreement),
) {
    let codes = random_codes(reference, 24);
    for &path in paths.iter().filter(|p| **p != Path::Generic) {
        for (name, candidate) in candidates {
            report(
                &format!("{name} on {path}, steps 1..23 of the steps shared with ONNX Runtime"),
                compare_on(reference, candidate, path, &codes, 1),
            );
        }
    }
    let cache = std::env::var_os("MAESTRO_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/maestro")));
    let Some(python) = cache.map(|c| c.join("onnx-venv/bin/python3")).filter(|p| p.exists()) else {
        eprintln!("ONNX Runtime on the same steps: skipped (no onnx-venv; `make bench-onnx` installs it)");
        return;
    };
    let out = std::env::temp_dir().join(format!("maestro-forced-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("a temporary directory");
    let batch = reference.tokenize(&PROMPTS).expect("prompts tokenize");
    let states = reference.encode_text(&batch.input_ids, &batch.attention_mask);
    let (states, mask) = with_unconditional(&states, &batch.attention_mask);
    Tensor::stack(&codes, 0).squeeze_dim(-1).write_npy(out.join("codes.npy")).expect("codes.npy");
    states.write_npy(out.join("states.npy")).expect("states.npy");
    mask.to_kind(Kind::Int64).write_npy(out.join("mask.npy")).expect("mask.npy");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_onnx.py");
    let status = std::process::Command::new(python).arg(script).arg(dir).arg("--forced").arg(&out).status();
    let _ = std::fs::remove_dir_all(&out);
    assert!(status.is_ok_and(|s| s.success()), "scripts/bench_onnx.py --forced failed");
}

/// The fallback (more rows than the kernel takes, op by op) runs int8 and int4 weights too, widened,
/// and agrees with the native step on the same weights.
#[test]
fn quantised_weights_run_op_by_op_where_the_step_declines() {
    for dtype in [DType::Int8, DType::Int4] {
        let model = fixture("musicgen-tiny", dtype);
        let d = &model.decoder;
        let mut st = state(&model, &["drums"], 3);
        let codes = Tensor::zeros([2, d.cfg.num_codebooks, 3], (Kind::Int64, Device::Cpu));
        let logits = d.forward(&codes, &mut st);
        assert_eq!(logits.size(), [2, d.cfg.num_codebooks, 3, d.cfg.vocab_size]);
        assert!(logits.isfinite().all().int64_value(&[]) == 1, "{dtype}: finite logits");
    }
}

/// Beside int8 or int4 weights the self-attention cache is f16 where the native step runs the state
/// (at most its rows), f32 where the op-by-op path would have to widen it every step; on every path
/// the native step and the op-by-op path (its quantised products on the same path) write and read
/// the same f16 cache alike.
/// `MusicGen::decoder_cache_bytes`, which the goals benchmark's floor counts, is what a state holds
/// per position: every layer's keys and values in the kind the cache takes at that row count.
#[test]
fn cache_bytes_are_what_the_state_holds() {
    for dtype in [DType::F32, DType::F16, DType::Int8, DType::Int4] {
        let model = fixture("musicgen-tiny", dtype);
        let capacity = 6;
        let held = state(&model, &PROMPTS, capacity);
        let rows = held.self_k[0].size()[0];
        let bytes: usize =
            held.self_k.iter().chain(&held.self_v).map(|t| t.numel() * t.kind().elt_size_in_bytes()).sum();
        assert_eq!(model.decoder_cache_bytes(rows, capacity as u64), bytes as u64, "{dtype}");
    }
}

#[test]
fn quantised_weights_keep_an_f16_cache_where_the_step_runs_it() {
    assert_eq!(fixture("musicgen-tiny", DType::F32).decoder.cache_kind(4), Kind::Float, "f32 weights");
    for dtype in [DType::Int8, DType::Int4] {
        let model = fixture("musicgen-tiny", dtype);
        let d = &model.decoder;
        let wide = state(&model, &["drums"; 5], 4);
        assert_eq!(wide.self_k[0].kind(), Kind::Float, "10 rows: more than the step takes");
        let (steps, prompts) = (6, PROMPTS);
        for path in kernels::paths_here() {
            let (mut native, mut reference) =
                (state(&model, &prompts, steps), state(&model, &prompts, steps));
            assert_eq!((native.self_k[0].kind(), native.self_v[0].kind()), (Kind::Half, Kind::Half));
            // The op-by-op path's quantised products run on the same path.
            let _path = kernels::PathGuard::new(path);
            tch::manual_seed(31);
            let mut worst = 0f64;
            for _ in 0..steps {
                let shape = [4, d.cfg.num_codebooks, 1];
                let codes = Tensor::randint(d.cfg.vocab_size, shape, (Kind::Int64, Device::Cpu));
                let got = d.native_step_on(path, &codes, &mut native).expect("the quantised step applies");
                native.pos += 1;
                let want = d.forward_libtorch(&codes, &mut reference);
                let err = (&got - &want).abs().max().double_value(&[]) / want.abs().max().double_value(&[]);
                worst = worst.max(err);
            }
            eprintln!(
                "{path}: {dtype} native step against op by op over an f16 cache: relative error {worst:.1e}"
            );
            assert!(worst <= 1e-3, "{path}: {dtype} relative error {worst}");
        }
    }
}
