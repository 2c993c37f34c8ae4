//! Range checks on the merged configuration, whichever layer each value came from. An error names
//! the option's flag, environment variable and file key, the limit and the value.

use std::{fmt::Display, ops::RangeInclusive};

use super::{reference, Config, ConfigError};

/// Checks every option whose type admits values the server cannot use.
pub(super) fn validate(c: &Config) -> Result<(), ConfigError> {
    server(c)?;
    resources(c)?;
    generation(c)?;
    monitor(c)?;
    if c.models.roots.is_empty() {
        return Err(invalid("models.roots", "at least one model root is required".into()));
    }
    if tracing_subscriber::EnvFilter::try_new(&c.log.level).is_err() {
        return Err(invalid("log.level", format!("not a level or tracing filter: {:?}", c.log.level)));
    }
    Ok(())
}

fn server(c: &Config) -> Result<(), ConfigError> {
    let s = &c.server;
    within("server.drain_deadline_s", s.drain_deadline.as_secs_f64(), 0.0..=3600.0)?;
    within("server.drain_grace_s", s.drain_grace.as_secs_f64(), 0.0..=3600.0)?;
    within("server.tls_handshake_timeout_s", s.tls_handshake_timeout.as_secs_f64(), 0.1..=600.0)?;
    at_least_one("server.max_streams", s.max_streams)?;
    at_least_one("server.max_watches", s.max_watches)?;
    at_least_one("server.max_unary_message_bytes", s.max_unary_message_bytes)?;
    at_least_one("server.max_connections", s.max_connections)?;
    within("server.request_timeout_s", s.request_timeout.as_secs_f64(), 0.1..=3600.0)?;
    within("server.load_timeout_s", s.load_timeout.as_secs_f64(), 1.0..=86_400.0)?;
    if let Some(bad) = s.cors_origins.iter().find(|o| crate::grpc::auth::Origin::parse(o).is_none()) {
        let message = format!("must be scheme://host[:port] with scheme http or https, got {bad:?}");
        return Err(invalid("server.cors_origins", message));
    }
    match (&s.tls_cert, &s.tls_key, &s.tls_client_ca) {
        (Some(_), None, _) => Err(invalid("server.tls_key", "the TLS certificate needs its key".into())),
        (None, Some(_), _) => Err(invalid("server.tls_cert", "the TLS key needs its certificate".into())),
        (None, None, Some(_)) => Err(invalid(
            "server.tls_client_ca",
            "client certificates need TLS (a certificate and key)".into(),
        )),
        _ => Ok(()),
    }
}

fn resources(c: &Config) -> Result<(), ConfigError> {
    let r = &c.resources;
    within("resources.safety_margin", r.safety_margin, 0.0..=0.9)?;
    within("resources.cleanup_threshold", r.cleanup_threshold, 1.0..=100.0)?;
    at_least_one("resources.max_lease_ttl_s", r.max_lease_ttl.as_secs())
}

fn generation(c: &Config) -> Result<(), ConfigError> {
    let g = &c.generation;
    within("generation.max_batch", g.max_batch, 1..=64)?;
    within("generation.workers_per_device", g.workers_per_device, 1..=64)?;
    within("generation.stall_timeout_s", g.stall_timeout.as_secs_f64(), 0.1..=3600.0)?;
    within("generation.worker_stuck_after_s", g.worker_stuck_after.as_secs_f64(), 1.0..=86_400.0)?;
    if let Some(n) = g.workers {
        within("generation.workers", n, 0..=64)?;
        if g.workers_per_device != 1 && n.max(1) != g.workers_per_device {
            return Err(invalid(
                "generation.workers",
                format!(
                    "is the deprecated alias of --workers-per-device, which says {}; got {n}: give only --workers-per-device",
                    g.workers_per_device
                ),
            ));
        }
    }
    for (i, d) in g.devices.iter().enumerate() {
        if d.trim().is_empty() || g.devices[..i].contains(d) {
            return Err(invalid(
                "generation.devices",
                format!("must list NVML indices or UUIDs once each, got {:?}", g.devices.join(",")),
            ));
        }
    }
    at_least_one("generation.queue_capacity", g.queue_capacity)?;
    if let Some(why) = g.cpu_isa.missing_on_host() {
        return Err(invalid(
            "generation.cpu_isa",
            format!("{} is above what this host runs: {why}", g.cpu_isa),
        ));
    }
    let d = g.max_duration_s;
    if !d.is_finite() || d <= 0.0 || d > 600.0 {
        return Err(invalid("generation.max_duration_s", format!("must be within (0, 600], got {d}")));
    }
    let a = g.max_audio_input_s;
    if !a.is_finite() || a <= 0.0 || a > 600.0 {
        return Err(invalid("generation.max_audio_input_s", format!("must be within (0, 600], got {a}")));
    }
    at_least_one("generation.max_audio_input_bytes", g.max_audio_input_bytes)?;
    let needed = g.max_audio_input_bytes.saturating_add(AUDIO_MESSAGE_HEADROOM);
    if c.server.max_message_bytes < needed {
        return Err(invalid(
            "server.max_message_bytes",
            format!(
                "must be at least --max-audio-input-bytes ({}) + 64 KiB = {needed} so that audio up to the limit arrives, got {}",
                g.max_audio_input_bytes, c.server.max_message_bytes
            ),
        ));
    }
    let s = g.extend_stride_s;
    if !s.is_finite() || s <= 0.0 || s > 600.0 {
        return Err(invalid("generation.extend_stride_s", format!("must be within (0, 600], got {s}")));
    }
    Ok(())
}

fn monitor(c: &Config) -> Result<(), ConfigError> {
    within("monitor.sample_interval_ms", c.monitor.sample_interval.as_millis(), 50..=60_000)?;
    within("monitor.history_seconds", c.monitor.history.as_secs(), 1..=86_400)
}

/// `value` within `range`; NaN is outside every range, as `contains` says.
fn within<T: PartialOrd + Display>(key: &str, value: T, range: RangeInclusive<T>) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    let (lo, hi) = range.into_inner();
    Err(invalid(key, format!("must be within {lo}..={hi}, got {value}")))
}

/// What a request message needs besides its audio (model, prompts, fields).
const AUDIO_MESSAGE_HEADROOM: usize = 64 << 10;

fn at_least_one<T: PartialOrd + Display + From<u8>>(key: &str, value: T) -> Result<(), ConfigError> {
    if value >= T::from(1) {
        return Ok(());
    }
    Err(invalid(key, format!("must be at least 1, got {value}")))
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { option: reference::label(key), message }
}
