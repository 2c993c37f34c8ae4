//! Tests of `musicgen::kernels` against libtorch's own operations.

use super::*;

/// The kernel on `path` against libtorch's f32 `linear` over the same (already rounded) values.
fn check(path: Path, kind: Kind, rows: i64, n: i64, k: i64, tolerance: f64) {
    let x = Tensor::randn([rows, k], (Kind::Float, Device::Cpu)).to_kind(kind);
    let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu)).to_kind(kind);
    let want = x.to_kind(Kind::Float).linear::<Tensor>(&w.to_kind(Kind::Float), None);
    let got =
        gemv_on(path, &x, &w).unwrap_or_else(|| panic!("{path}: {kind:?} {rows}×{k} · {n}×{k} applies"));
    assert_eq!((got.kind(), got.size()), (kind, vec![rows, n]));
    let err = (got.to_kind(Kind::Float) - &want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
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

#[test]
fn blocked_rows_match_libtorch() {
    for (kind, tolerance) in [(Kind::Float, 1e-5), (Kind::Half, 2e-3)] {
        for rows in [1, 9, 12, 13, 16, 17, 40] {
            let x = Tensor::randn([1, rows, 48], (Kind::Float, Device::Cpu)).to_kind(kind);
            let w = Tensor::randn([24, 48], (Kind::Float, Device::Cpu)).to_kind(kind);
            let y = linear_blocked(&x, &w);
            assert_eq!((y.kind(), y.size()), (kind, vec![1, rows, 24]));
            let want = x.to_kind(Kind::Float).linear::<Tensor>(&w.to_kind(Kind::Float), None);
            let scale = want.abs().max().double_value(&[]);
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

/// The int8 product on every path against libtorch's f32 `linear` over the dequantised weights.
#[test]
fn int8_matches_libtorch_on_every_path() {
    for path in paths_here() {
        for rows in 1..=MAX_PASS_ROWS {
            for (n, k) in [(1, 16), (5, 48), (67, 1024), (130, 96), (3, 40), (17, 7)] {
                let x = Tensor::randn([rows, k], (Kind::Float, Device::Cpu));
                let w = Tensor::randint_low(-127, 128, [n, k], (Kind::Int8, Device::Cpu));
                let scale = Tensor::rand([n], (Kind::Float, Device::Cpu)) * 0.01;
                let want = x.linear::<Tensor>(&(w.to_kind(Kind::Float) * scale.unsqueeze(1)), None);
                let got = gemv_i8_on(path, &x, &w, &scale).expect("applies");
                let err = (&got - &want).abs().max().double_value(&[]);
                let bound = 1e-5 * want.abs().max().double_value(&[]);
                assert!(err <= bound, "{path}: {rows}×{n}×{k}: error {err}, bound {bound}");
            }
        }
    }
}
