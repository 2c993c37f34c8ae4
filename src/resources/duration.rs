//! The one rule for how much audio a request may ask for (`duration_s`): a finite number of seconds
//! above zero, and at most whichever limit is known where it is checked. The wire door knows none
//! yet, the generation service knows the server's `--max-duration-s`, a fit verdict and a loaded
//! model know the model's own maximum. Every check goes through [`check_duration`], so each says the
//! same thing: the field, the limit and where it comes from, and the value given.

use crate::error::Error;

/// The upper limit a duration is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDuration<'a> {
    /// None known yet: only the lower bound applies.
    Unknown,
    /// The server's `--max-duration-s`.
    Server(f64),
    /// A model's own maximum.
    Model {
        /// The model id.
        model: &'a str,
        /// Its longest generation, in seconds.
        max_s: f64,
    },
}

/// `duration_s` if it is a finite number of seconds > 0 and within `max`; otherwise INVALID_ARGUMENT
/// naming the field, the limit and the value.
pub fn check_duration(duration_s: f64, max: MaxDuration<'_>) -> Result<f64, Error> {
    let limit = match max {
        MaxDuration::Unknown => None,
        MaxDuration::Server(max_s) => Some((max_s, "--max-duration-s".to_string())),
        MaxDuration::Model { model, max_s } => Some((max_s, format!("the maximum of {model}"))),
    };
    let positive = duration_s.is_finite() && duration_s > 0.0;
    match limit {
        None if positive => Ok(duration_s),
        None => Err(Error::invalid(
            "duration_s",
            format!("must be a finite number of seconds > 0, got {duration_s}"),
        )),
        Some((max_s, _)) if positive && duration_s <= max_s => Ok(duration_s),
        Some((max_s, source)) => Err(Error::invalid(
            "duration_s",
            format!("must be a finite number of seconds > 0 and <= {max_s} ({source}), got {duration_s}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(duration_s: f64, max: MaxDuration<'_>) -> String {
        match check_duration(duration_s, max) {
            Err(Error::InvalidArgument { field: "duration_s", message }) => message,
            other => panic!("{duration_s} against {max:?}: {other:?}"),
        }
    }

    #[test]
    fn positive_finite_durations_within_the_limit_pass() {
        assert_eq!(check_duration(0.5, MaxDuration::Unknown).unwrap(), 0.5);
        assert_eq!(check_duration(1e6, MaxDuration::Unknown).unwrap(), 1e6);
        assert_eq!(check_duration(30.0, MaxDuration::Server(30.0)).unwrap(), 30.0);
        let model = MaxDuration::Model { model: "facebook/musicgen-small", max_s: 30.0 };
        assert_eq!(check_duration(12.5, model).unwrap(), 12.5);
    }

    #[test]
    fn every_bad_value_names_the_rule_and_the_value() {
        for bad in [0.0, -0.0, -3.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let m = message(bad, MaxDuration::Unknown);
            assert_eq!(m, format!("must be a finite number of seconds > 0, got {bad}"));
        }
        assert_eq!(
            message(31.0, MaxDuration::Server(30.0)),
            "must be a finite number of seconds > 0 and <= 30 (--max-duration-s), got 31"
        );
        let model = MaxDuration::Model { model: "maestro/musicgen-tiny", max_s: 8.0 };
        assert_eq!(
            message(8.5, model),
            "must be a finite number of seconds > 0 and <= 8 (the maximum of maestro/musicgen-tiny), got 8.5"
        );
        // A limit does not lift the lower bound.
        assert!(message(f64::NAN, MaxDuration::Server(30.0)).ends_with("got NaN"));
        assert!(message(-1.0, model).contains("> 0 and <= 8"));
    }
}
