//! Options whose type is not what they are written in: durations given as a number of seconds or
//! milliseconds, and the decoder dtype given as a string. Each unit has the clap parser a flag or an
//! environment variable goes through and the serde pair the file and the layering go through, so the
//! three sources agree on what a value means.

use std::time::Duration;

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Seconds, fractions allowed (`--drain-deadline-s 2.5`).
pub(super) mod secs_f64 {
    use super::*;

    /// Parses a flag or environment value.
    pub fn parse(text: &str) -> Result<Duration, String> {
        from_f64(text.parse::<f64>().map_err(|e| format!("{e}: {text:?}"))?)
    }

    /// Writes the duration as seconds.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.as_secs_f64())
    }

    /// Reads seconds (an integer or a float).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_f64(f64::deserialize(d)?).map_err(D::Error::custom)
    }

    fn from_f64(seconds: f64) -> Result<Duration, String> {
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("must be a finite number of seconds ≥ 0, got {seconds}"))
    }
}

/// Declares a whole-number unit of time: `$from` makes the duration, `$to` reads it back.
macro_rules! whole_unit {
    ($(#[$doc:meta])* $name:ident, $from:path, $to:expr) => {
        $(#[$doc])*
        pub(super) mod $name {
            use super::*;

            /// Parses a flag or environment value.
            pub fn parse(text: &str) -> Result<Duration, String> {
                text.parse::<u64>().map($from).map_err(|e| format!("{e}: {text:?}"))
            }

            /// Writes the duration as a whole number.
            pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
                let to: fn(&Duration) -> u64 = $to;
                s.serialize_u64(to(value))
            }

            /// Reads a whole number.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
                u64::deserialize(d).map($from)
            }
        }
    };
}

whole_unit!(
    /// Whole seconds (`--keepalive-s 30`).
    secs,
    Duration::from_secs,
    |d| d.as_secs()
);
whole_unit!(
    /// Whole milliseconds (`--sample-interval-ms 1000`).
    millis,
    Duration::from_millis,
    |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
);

/// The decoder precision, `f32`, `f16`, `bf16`, `int8` or `int4`.
pub(super) mod dtype {
    use super::*;
    use crate::resources::requirements::DType;

    /// Parses a flag or environment value.
    pub fn parse(text: &str) -> Result<DType, String> {
        DType::parse(text).map_err(|e| e.to_string())
    }

    /// Writes the dtype's name.
    pub fn serialize<S: Serializer>(value: &DType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.as_str())
    }

    /// Reads a dtype's name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        DType::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}
