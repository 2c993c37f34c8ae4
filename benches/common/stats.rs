//! The benchmarks' one order statistic: every median and tail latency in their tables is a
//! nearest-rank percentile from here, so figures from different benchmarks mean the same thing.

/// The `p`-th percentile (0–100) of `values` by nearest rank: the smallest value that at least
/// `p` % of the values are at or below. NaN when there are no values. It sorts a copy, so the
/// values may come in any order.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
