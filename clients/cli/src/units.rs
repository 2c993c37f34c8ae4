//! Human units for the tables: memory in GB (10^9 bytes, as the protocol's messages use) down to
//! MiB for smaller figures, percentages, °C, W, durations and timestamps; and the parser for sizes
//! typed on the command line.

use std::time::{Duration, SystemTime};

use maestro_proto as pb;

const GB: f64 = 1e9;
const MIB: f64 = 1024.0 * 1024.0;
const KIB: f64 = 1024.0;

/// The divisor, unit and decimals [`bytes`] uses for `n`.
fn scale(n: u64) -> (f64, &'static str, usize) {
    let x = n as f64;
    if x >= GB {
        (GB, "GB", 2)
    } else if x >= MIB {
        (MIB, "MiB", 1)
    } else if x >= KIB {
        (KIB, "KiB", 1)
    } else {
        (1.0, "B", 0)
    }
}

/// `12.30 GB`, `512.0 MiB`, `3.0 KiB` or `12 B`.
pub fn bytes(n: u64) -> String {
    bytes_like(n, n)
}

/// `n` in the unit [`bytes`] would pick for `reference`, so that a part and its whole read alike:
/// `0.95 GB / 1.00 GB` rather than `906.0 MiB / 1.00 GB`.
pub fn bytes_like(n: u64, reference: u64) -> String {
    let (divisor, unit, decimals) = scale(reference.max(n));
    format!("{:.*} {unit}", decimals, n as f64 / divisor)
}

/// `used / total` in one unit.
pub fn used_of(used: u64, total: u64) -> String {
    format!("{} / {}", bytes_like(used, total), bytes(total))
}

/// [`bytes`] with a sign (freed memory may be negative when usage grew meanwhile).
pub fn signed_bytes(n: i64) -> String {
    if n < 0 {
        format!("-{}", bytes(n.unsigned_abs()))
    } else {
        bytes(n as u64)
    }
}

/// What a table shows for a figure the server could not read.
pub const NOT_READ: &str = "n/a";

/// A sensor's figure as `show` writes it, or [`NOT_READ`] when the snapshot has none.
pub fn or_na<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| NOT_READ.into(), show)
}

/// A GPU's memory as `used / total`, or [`NOT_READ`].
pub fn gpu_memory(d: &pb::GpuDevice) -> String {
    or_na(d.memory_used_bytes.zip(d.memory_total_bytes), |(used, total)| used_of(used, total))
}

/// `51.2 %`.
pub fn percent(p: f64) -> String {
    format!("{p:.1} %")
}

/// `64 °C`.
pub fn celsius(c: f64) -> String {
    format!("{c:.0} °C")
}

/// `215 W`.
pub fn watts(w: f64) -> String {
    format!("{w:.0} W")
}

/// `850 ms`, `12.3 s`, `4m05s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A value in the unit a metric or check names (`bytes`, `percent`, `celsius`, ...).
pub fn in_unit(value: f64, unit: &str) -> String {
    match unit {
        "bytes" => {
            if value < 0.0 {
                format!("-{}", bytes((-value) as u64))
            } else {
                bytes(value as u64)
            }
        }
        "percent" | "%" => percent(value),
        "celsius" | "°C" => celsius(value),
        "watts" | "W" => watts(value),
        "ms" => millis(value),
        "" | "load" => format!("{value:.2}"),
        other => format!("{value:.2} {other}"),
    }
}

/// A protobuf timestamp as `2026-05-01T12:00:00Z` (whole seconds), or `-` when absent.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    match ts {
        Some(t) => prost_types::Timestamp { seconds: t.seconds, nanos: 0 }.to_string(),
        None => "-".into(),
    }
}

/// How long ago a timestamp was: `12s ago`, `3m05s ago`, or `-` when absent.
pub fn ago(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = ts else { return "-".into() };
    let Ok(then) = SystemTime::try_from(*t) else { return "-".into() };
    let age = SystemTime::now().duration_since(then).unwrap_or(Duration::ZERO);
    format!("{} ago", millis(age.as_millis() as f64))
}

/// `HEALTHY`, `MODERATE`, `WARNING`, `CRITICAL` or `UNKNOWN`.
pub fn health(level: i32) -> &'static str {
    match pb::HealthLevel::try_from(level).unwrap_or_default() {
        pb::HealthLevel::Healthy => "HEALTHY",
        pb::HealthLevel::Moderate => "MODERATE",
        pb::HealthLevel::Warning => "WARNING",
        pb::HealthLevel::Critical => "CRITICAL",
        pb::HealthLevel::Unspecified => "UNKNOWN",
    }
}

/// `INFO`, `WARNING`, `CRITICAL` or `-`.
pub fn severity(level: i32) -> &'static str {
    match pb::Severity::try_from(level).unwrap_or_default() {
        pb::Severity::Info => "INFO",
        pb::Severity::Warning => "WARNING",
        pb::Severity::Critical => "CRITICAL",
        pb::Severity::Unspecified => "-",
    }
}

/// `yes` / `no`.
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Parses a size typed by a person: `1073741824`, `512MiB`, `2GB`, `1.5G`, `64k` (K/M/G/T are powers
/// of 1000, Ki/Mi/Gi/Ti powers of 1024; a trailing `B` is optional).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a size (e.g. 512MiB, 2GB)"))?;
    let suffix = suffix.trim().to_ascii_lowercase();
    let unit = match suffix.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        "ki" => KIB,
        "mi" => MIB,
        "gi" => MIB * 1024.0,
        "ti" => MIB * MIB,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {suffix:?} (use B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let bytes = value * unit;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_in_gb_then_mib() {
        assert_eq!(bytes(24_000_000_000), "24.00 GB");
        assert_eq!(bytes(150 * 1024 * 1024), "150.0 MiB");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(signed_bytes(-2048), "-2.0 KiB");
        assert_eq!(used_of(950_000_000, 1_000_000_000), "0.95 GB / 1.00 GB");
    }

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_size("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn units_follow_the_metric() {
        assert_eq!(in_unit(51.23, "percent"), "51.2 %");
        assert_eq!(in_unit(64.4, "celsius"), "64 °C");
        assert_eq!(in_unit(2e9, "bytes"), "2.00 GB");
        assert_eq!(millis(125_000.0), "2m05s");
    }

    #[test]
    fn an_unread_figure_reads_n_a_not_zero() {
        assert_eq!(or_na(Some(64.4), celsius), "64 °C");
        assert_eq!(or_na(None, celsius), "n/a");
        let half = pb::GpuDevice {
            memory_used_bytes: Some(500_000_000),
            memory_total_bytes: Some(1_000_000_000),
            ..Default::default()
        };
        assert_eq!(gpu_memory(&half), "0.50 GB / 1.00 GB");
        assert_eq!(gpu_memory(&pb::GpuDevice { memory_total_bytes: None, ..half }), "n/a");
    }
}
