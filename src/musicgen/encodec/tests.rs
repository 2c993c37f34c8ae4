//! Tests of `musicgen::encodec` against libtorch's own operations.

use super::lstm::lstm_layer_libtorch;
use super::*;
use crate::musicgen::kernels;
use tch::Device;

/// The native layer and the op-by-op fallback against libtorch's own LSTM, on a size that is
/// not a multiple of 16, for one and several rows, from a non-zero state.
#[test]
fn lstm_layer_matches_libtorch() {
    let (frames, dim) = (9, 40);
    let f = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu)) * 0.5;
    let (w_ih, w_hh, b_ih, b_hh) = (f(&[4 * dim, dim]), f(&[4 * dim, dim]), f(&[4 * dim]), f(&[4 * dim]));
    for batch in [1, 3] {
        let (x, h0, c0) = (f(&[frames, batch, dim]), f(&[1, batch, dim]), f(&[1, batch, dim]));
        let params = [&w_ih, &w_hh, &b_ih, &b_hh];
        let (want, want_h, want_c) = x.lstm(&[&h0, &c0], &params, true, 1, 0.0, false, false, false);
        let projected = x.linear(&w_ih, Some(&(&b_ih + &b_hh)));
        let fallback = lstm_layer_libtorch(&projected, &w_hh, h0.get(0), c0.get(0));
        let mut paths = vec![("fallback".to_string(), fallback)];
        for path in kernels::paths_here() {
            let native =
                kernels::lstm_layer_on(path, &projected, &w_hh, &h0.get(0), &c0.get(0)).expect("applies");
            paths.push((format!("native {path}"), native));
        }
        for (name, (out, h, c)) in paths {
            let err = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
            assert!(err(&out, &want) < 1e-5, "{name}, {batch} rows: output off by {}", err(&out, &want));
            assert!(err(&h, &want_h.get(0)) < 1e-5, "{name}, {batch} rows: final h");
            assert!(err(&c, &want_c.get(0)) < 1e-5, "{name}, {batch} rows: final c");
        }
    }
}
