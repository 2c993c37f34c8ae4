//! Tests of `musicgen::kernels` against libtorch's own operations.

use super::*;

/// The largest sum of absolute products `|x| · |w|ᵀ` in f64: the scale rounding errors grow with. The
/// largest output is no scale: a single output whose terms cancel (one row, one output, 16 terms)
/// can be a thousandth of them, and then f32's last bit of a term already exceeds 1e-5 of it.
fn magnitude(x: &Tensor, w: &Tensor) -> f64 {
    let abs = |t: &Tensor| t.to_kind(Kind::Double).abs();
    abs(x).linear::<Tensor>(&abs(w), None).max().double_value(&[])
}

/// The kernel on `path` against libtorch's f32 `linear` over the same (already rounded) values.
fn check(path: Path, kind: Kind, rows: i64, n: i64, k: i64, tolerance: f64) {
    let x = Tensor::randn([rows, k], (Kind::Float, Device::Cpu)).to_kind(kind);
    let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu)).to_kind(kind);
    let want = x.to_kind(Kind::Float).linear::<Tensor>(&w.to_kind(Kind::Float), None);
    let got =
        gemv_on(path, &x, &w).unwrap_or_else(|| panic!("{path}: {kind:?} {rows}×{k} · {n}×{k} applies"));
    assert_eq!((got.kind(), got.size()), (kind, vec![rows, n]));
    let err = (got.to_kind(Kind::Float) - &want).abs().max().double_value(&[]);
    let scale = magnitude(&x, &w);
    assert!(err <= tolerance * scale, "{path}: {kind:?} {rows}×{n}×{k}: max error {err}, scale {scale}");
}

/// Every path this CPU runs, side by side, for every dtype, row count and a few ragged sizes.
#[test]
fn every_path_matches_libtorch_for_every_dtype_row_count_and_ragged_size() {
    for path in paths_here() {
        for (kind, tolerance) in [(Kind::Float, 1e-5), (Kind::Half, 2e-3), (Kind::BFloat16, 1e-2)] {
            for rows in 1..=MAX_PASS_ROWS {
                for (n, k) in [(1, 16), (5, 48), (67, 1024), (130, 96), (3, 40), (17, 7)] {
                    check(path, kind, rows, n, k, tolerance);
                }
            }
        }
    }
}

#[test]
fn a_path_this_cpu_lacks_declines() {
    let x = Tensor::randn([1, 32], (Kind::Float, Device::Cpu));
    for path in Path::ALL {
        if let Some(why) = path.unavailable() {
            eprintln!("kernel path {path} declines here: {why}");
            assert!(gemv_on(path, &x, &x).is_none(), "{path} ran although {why}");
        }
    }
}

/// Every instruction-set level selects its own path, so `--cpu-isa avx512_vnni` (and `auto` on a
/// VNNI CPU) runs the VNNI kernels and only the VNNI paths quantise activations.
#[test]
fn every_level_selects_its_own_path() {
    use crate::cpu_isa::{CpuIsa, LEVELS};
    let paths: Vec<Path> = LEVELS.iter().map(|l| Path::of(*l)).collect();
    assert_eq!(paths, Path::ALL);
    let vnni: Vec<bool> = paths.iter().map(|p| p.quantises_activations()).collect();
    assert_eq!(vnni, [true, false, true, false, false]);
    assert_eq!(Path::of(CpuIsa::Auto), Path::of(CpuIsa::host()));
}

#[test]
fn blocked_rows_match_libtorch() {
    for (kind, tolerance) in [(Kind::Float, 1e-5), (Kind::Half, 2e-3)] {
        for rows in [1, 9, 12, 13, 16, 17, 40] {
            let x = Tensor::randn([1, rows, 48], (Kind::Float, Device::Cpu)).to_kind(kind);
            let w = Tensor::randn([24, 48], (Kind::Float, Device::Cpu)).to_kind(kind);
            let y = linear_blocked(&x, &w);
            assert_eq!((y.kind(), y.size()), (kind, vec![1, rows, 24]));
            let want = x.to_kind(Kind::Float).linear::<Tensor>(&w.to_kind(Kind::Float), None);
            let scale = magnitude(&x, &w);
            let err = (y.to_kind(Kind::Float) - want).abs().max().double_value(&[]);
            assert!(err <= tolerance * scale, "{kind:?}, {rows} rows: error {err}, scale {scale}");
        }
    }
}

#[test]
fn keeps_leading_dimensions() {
    if !supported() {
        eprintln!("skipped: the CPU kernels were not built");
        return;
    }
    let x = Tensor::randn([2, 1, 32], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([8, 32], (Kind::Float, Device::Cpu));
    let y = linear(&x, &w).expect("applies");
    assert_eq!(y.size(), vec![2, 1, 8]);
    let want = x.linear::<Tensor>(&w, None);
    assert!((y - want).abs().max().double_value(&[]) < 1e-4);
}

#[test]
fn declines_what_it_does_not_handle() {
    let f = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu));
    assert!(linear(&f(&[9, 32]), &f(&[8, 32])).is_none(), "more rows than MAX_ROWS");
    assert!(gemv(&f(&[17, 32]), &f(&[8, 32])).is_none(), "more rows than one pass takes");
    let bf16 = |s: &[i64]| f(s).to_kind(Kind::BFloat16);
    assert!(linear(&bf16(&[5, 32]), &bf16(&[8, 32])).is_none(), "bf16 beyond 4 rows goes to libtorch");
    assert!(linear(&f(&[32, 2]).tr(), &f(&[8, 32])).is_none(), "non-contiguous input");
    assert!(linear(&f(&[2, 32]), &f(&[8, 32]).to_kind(Kind::Half)).is_none(), "mixed dtypes");
    assert!(linear(&f(&[2, 32]).to_kind(Kind::Double), &f(&[8, 32]).to_kind(Kind::Double)).is_none());
}

/// The int8 product on every path against libtorch's f32 `linear` over the dequantised weights; on
/// a VNNI path over the activations quantised as the kernel does (per row, asymmetric, 8 bits) for
/// products of more than `QUANTISE_ABOVE_ROWS` rows.
#[test]
fn int8_matches_libtorch_on_every_path() {
    for path in paths_here() {
        for rows in 1..=MAX_PASS_ROWS {
            for (n, k) in [(1, 16), (5, 48), (67, 1024), (130, 96), (3, 40), (17, 7), (9, 200)] {
                let x = Tensor::randn([rows, k], (Kind::Float, Device::Cpu));
                let w = Tensor::randint_low(-127, 128, [n, k], (Kind::Int8, Device::Cpu));
                let scale = Tensor::rand([n], (Kind::Float, Device::Cpu)) * 0.01;
                let dequantised = w.to_kind(Kind::Float) * scale.unsqueeze(1);
                let input =
                    if path.quantises_activations_at(rows) { quantised_rows(&x) } else { x.shallow_clone() };
                let want =
                    input.to_kind(Kind::Double).linear::<Tensor>(&dequantised.to_kind(Kind::Double), None);
                let got = gemv_i8_on(path, &x, &w, &int8_scales(&w, &scale)).expect("applies");
                let err = (got.to_kind(Kind::Double) - &want).abs().max().double_value(&[]);
                let bound = 1e-5 * magnitude(&input, &dequantised);
                assert!(err <= bound, "{path}: {rows}×{n}×{k}: error {err}, bound {bound}");
            }
        }
    }
}

/// The int4 product on every path against libtorch's f32 `linear` over the unpacked weights (on the
/// paths that quantise the activations, over the rows as they quantise them), for every row count
/// and widths that are whole steps of the kernel, whole groups, ragged groups, below one group.
#[test]
fn int4_matches_libtorch_on_every_path() {
    for path in paths_here() {
        for rows in 1..=MAX_PASS_ROWS {
            for (n, k) in
                [(1, 32), (5, 48), (67, 1024), (130, 96), (3, 40), (17, 7), (9, 200), (4, 4096), (3, 160)]
            {
                let x = Tensor::randn([rows, k], (Kind::Float, Device::Cpu));
                let w = pack_int4(&(Tensor::randn([n, k], (Kind::Float, Device::Cpu)) * 0.05));
                let dequantised = unpack_int4(&w, k);
                let input =
                    if path.quantises_int4_activations() { symmetric_rows(&x) } else { x.shallow_clone() };
                let want =
                    input.to_kind(Kind::Double).linear::<Tensor>(&dequantised.to_kind(Kind::Double), None);
                let got = gemv_i4_on(path, &x, &w).expect("applies");
                let err = (got.to_kind(Kind::Double) - &want).abs().max().double_value(&[]);
                let bound = 1e-5 * magnitude(&input, &dequantised);
                assert!(err <= bound, "{path}: {rows}×{n}×{k}: error {err}, bound {bound}");
            }
        }
    }
}

/// `x (rows, k)` as the int4 kernels quantise it: each row to ±127 steps of its largest magnitude,
/// with the kernel's f32 roundings (a value times 127 / max, rounded).
fn symmetric_rows(x: &Tensor) -> Tensor {
    let peak = x.abs().amax([1], true);
    let inverse = peak.full_like(127.0) / &peak;
    (x * inverse).round().clamp(-127.0, 127.0) * (peak / 127.0)
}

/// A non-finite activation gives a non-finite int4 product on every path, quantised or not.
#[test]
fn int4_keeps_non_finite_activations_visible() {
    let w = pack_int4(&Tensor::randn([4, 80], (Kind::Float, Device::Cpu)));
    for path in paths_here() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let x = Tensor::randn([2, 80], (Kind::Float, Device::Cpu));
            let _ = x.get(0).get(70).fill_(bad);
            let y = gemv_i4_on(path, &x, &w).expect("applies");
            assert_eq!(y.get(0).isfinite().any().int64_value(&[]), 0, "{path}: row 0 is {y}");
            assert_eq!(y.get(1).isfinite().all().int64_value(&[]), 1, "{path}: row 1 stays finite");
        }
    }
}

/// Packing keeps what Q4_0 promises: each group's extreme value exactly, zero exactly, every other
/// weight within a step d of its group (half a step but beyond 7 steps on the side opposite the
/// extreme, where the codes stop); and the
/// packed rows are what `q4_row_bytes` says. A zero row packs to zeros.
#[test]
fn int4_packing_rounds_each_group_to_its_own_scale() {
    let (n, k) = (6, 70);
    let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu))
        * Tensor::logspace(-3.0, 1.0, n, 10.0, (Kind::Float, Device::Cpu)).unsqueeze(1);
    let _ = w.get(2).fill_(0.0);
    let _ = w.get(3).get(5).fill_(0.0);
    let packed = pack_int4(&w);
    assert_eq!((packed.kind(), packed.size()), (Kind::Uint8, vec![n, q4_row_bytes(k)]));
    assert_eq!(q4_row_bytes(k), 3 * 18);
    let back = unpack_int4(&packed, k);
    assert_eq!(back.get(2).abs().max().double_value(&[]), 0.0, "a zero row");
    assert_eq!(back.get(3).get(5).double_value(&[]), 0.0, "zero stays zero");
    for g in 0..3 {
        let width = (k - g * Q4_GROUP).min(Q4_GROUP);
        let (orig, got) = (w.narrow(1, g * Q4_GROUP, width), back.narrow(1, g * Q4_GROUP, width));
        let extreme = orig.abs().amax([1], false);
        let step = &extreme / 8.0;
        let err = (&got - &orig).abs().amax([1], false);
        // A step at most (the side opposite the extreme stops at 7 steps), plus the f16 rounding of
        // the scale carried over 8 steps.
        let within = err.le_tensor(&(&step + &extreme * 1e-3)).all().int64_value(&[]);
        assert_eq!(within, 1, "group {g}: errors {err:?} against steps {step:?}");
        let kept = got.abs().amax([1], false) - &extreme;
        assert!(kept.abs().max().double_value(&[]) <= 1e-3 * extreme.max().double_value(&[]), "group {g}");
    }
}

/// Where the int4 kernel declines: rows of another width, another dtype, too many rows.
#[test]
fn int4_declines_what_it_does_not_handle() {
    if !supported() {
        eprintln!("skipped: the CPU kernels were not built");
        return;
    }
    let w = pack_int4(&Tensor::randn([8, 64], (Kind::Float, Device::Cpu)));
    let x = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
    assert!(gemv_i4(&x, &w).is_some());
    assert!(gemv_i4(&Tensor::randn([2, 96], (Kind::Float, Device::Cpu)), &w).is_none(), "another width");
    assert!(gemv_i4(&x.to_kind(Kind::Half), &w).is_none(), "f16 activations");
    assert!(gemv_i4(&Tensor::randn([MAX_PASS_ROWS + 1, 64], (Kind::Float, Device::Cpu)), &w).is_none());
}

/// `x (rows, k)` as the VNNI kernels see it: each row's range, zero included, in 255 steps from a
/// zero point, with the kernel's f32 roundings.
fn quantised_rows(x: &Tensor) -> Tensor {
    let (hi, neg_lo) = (x.amax([1], true).clamp_min(0.0), x.neg().amax([1], true).clamp_min(0.0));
    let range = &hi + &neg_lo;
    let inv = range.full_like(255.0) / &range;
    let zero = (&neg_lo * &inv).round();
    let u = ((x * &inv).round() + &zero).clamp(0.0, 255.0);
    (u - zero) * (range / 255.0)
}

/// A non-finite activation gives a non-finite product on every path, quantised or not.
#[test]
fn int8_keeps_non_finite_activations_visible() {
    let w = Tensor::randint_low(-127, 128, [4, 64], (Kind::Int8, Device::Cpu));
    let scales = int8_scales(&w, &Tensor::ones([4], (Kind::Float, Device::Cpu)));
    for path in paths_here() {
        for bad in [f64::NAN, f64::INFINITY] {
            let x = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
            let _ = x.get(0).get(5).fill_(bad);
            let y = gemv_i8_on(path, &x, &w, &scales).expect("applies");
            assert_eq!(y.get(0).isfinite().any().int64_value(&[]), 0, "{path}: row 0 is {y}");
            assert_eq!(y.get(1).isfinite().all().int64_value(&[]), 1, "{path}: row 1 stays finite");
        }
    }
}

/// The thread team (`csrc/team.h`) covers every output row exactly once, whatever the split: its
/// products are bit for bit those of libtorch's `at::parallel_for` (each row is one thread's sum
/// either way), for ragged sizes, on four threads at once, each with a team of its own.
#[test]
fn the_thread_team_splits_every_product_exactly_once() {
    let cases: Vec<(i64, i64, i64)> =
        vec![(2, 1000, 96), (8, 4099, 64), (1, 65, 1024), (3, 129, 40), (5, 7, 33)];
    let inputs: Vec<(Tensor, Tensor)> = cases
        .iter()
        .map(|&(rows, n, k)| {
            (
                Tensor::randn([rows, k], (Kind::Float, Device::Cpu)),
                Tensor::randn([n, k], (Kind::Float, Device::Cpu)),
            )
        })
        .collect();
    let products = |inputs: &[(Tensor, Tensor)]| -> Vec<Tensor> {
        inputs.iter().map(|(x, w)| gemv_on(active(), x, w).expect("the kernel applies")).collect()
    };
    use_thread_team(false);
    let want = products(&inputs);
    use_thread_team(true);
    // Tensors are Send, not Sync: every thread gets handles of its own on the same storage.
    let copies = |ts: &[Tensor]| ts.iter().map(Tensor::shallow_clone).collect::<Vec<_>>();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mine: Vec<(Tensor, Tensor)> =
                inputs.iter().map(|(x, w)| (x.shallow_clone(), w.shallow_clone())).collect();
            let want = copies(&want);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    for (got, want) in products(&mine).iter().zip(&want) {
                        assert!(got.equal(want), "a product on the team differs from libtorch's split");
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a product thread panicked");
    }
}

/// One guided request's int8 products (2 rows) keep f32 activations on a VNNI path: the same
/// sums, bit for bit, as the same width's path without VNNI.
#[test]
fn two_row_int8_products_keep_f32_activations_on_vnni_paths() {
    for (vnni, plain) in [(Path::Avx512Vnni, Path::Avx512), (Path::Avx2Vnni, Path::Avx2)] {
        if let Some(why) = vnni.unavailable() {
            eprintln!("kernel path {vnni}: not tested here ({why})");
            continue;
        }
        let w = Tensor::randint_low(-127, 128, [130, 1024], (Kind::Int8, Device::Cpu));
        let scales = int8_scales(&w, &(Tensor::rand([130], (Kind::Float, Device::Cpu)) * 0.01));
        for rows in 1..=super::QUANTISE_ABOVE_ROWS {
            let x = Tensor::randn([rows, 1024], (Kind::Float, Device::Cpu));
            let (a, b) = (gemv_i8_on(vnni, &x, &w, &scales), gemv_i8_on(plain, &x, &w, &scales));
            assert!(a.expect("applies").equal(&b.expect("applies")), "{vnni} against {plain} at {rows} rows");
        }
    }
}
