//! Tests of `musicgen::encodec` against libtorch's own operations.

use super::lstm::lstm_layer_libtorch;
use super::*;
use crate::musicgen::kernels;
use tch::Device;

/// The native layer and the op-by-op fallback against libtorch's own LSTM, on a size that is
/// not a multiple of 16, for one and several rows, from a non-zero state; the native layer also
/// with f16 and bf16 hidden-to-hidden weights, against libtorch's LSTM on those weights widened.
#[test]
fn lstm_layer_matches_libtorch() {
    let (frames, dim) = (9, 40);
    let f = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu)) * 0.5;
    let (w_ih, w_hh, b_ih, b_hh) = (f(&[4 * dim, dim]), f(&[4 * dim, dim]), f(&[4 * dim]), f(&[4 * dim]));
    for batch in [1, 3] {
        let (x, h0, c0) = (f(&[frames, batch, dim]), f(&[1, batch, dim]), f(&[1, batch, dim]));
        let projected = x.linear(&w_ih, Some(&(&b_ih + &b_hh)));
        for kind in [Kind::Float, Kind::Half, Kind::BFloat16] {
            // libtorch's LSTM on the weights the kernel reads, widened back to f32.
            let narrow = w_hh.to_kind(kind);
            let params = [&w_ih, &narrow.to_kind(Kind::Float), &b_ih, &b_hh];
            let (want, want_h, want_c) = x.lstm(&[&h0, &c0], &params, true, 1, 0.0, false, false, false);
            let mut paths = Vec::new();
            if kind == Kind::Float {
                paths.push((
                    "fallback".to_string(),
                    lstm_layer_libtorch(&projected, &w_hh, h0.get(0), c0.get(0)),
                ));
            }
            for path in kernels::paths_here() {
                let native = kernels::lstm_layer_on(path, &projected, &narrow, &h0.get(0), &c0.get(0));
                paths.push((format!("native {path} {kind:?}"), native.expect("applies")));
            }
            check(paths, batch, (&want, &want_h, &want_c));
        }
    }
}

/// Every `(name, (out, h, c))` within 1e-5 of libtorch's `want`.
fn check(paths: Vec<(String, (Tensor, Tensor, Tensor))>, batch: i64, want: (&Tensor, &Tensor, &Tensor)) {
    let err = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    for (name, (out, h, c)) in paths {
        assert!(err(&out, want.0) < 1e-5, "{name}, {batch} rows: output off by {}", err(&out, want.0));
        assert!(err(&h, &want.1.get(0)) < 1e-5, "{name}, {batch} rows: final h");
        assert!(err(&c, &want.2.get(0)) < 1e-5, "{name}, {batch} rows: final c");
    }
}
