//! `[health]` and `[alerts]`: the thresholds of the health level and of the alert rules. Their
//! defaults are the ones [`HealthThresholds`] and [`AlertConfig`] declare, so the rules and the options
//! cannot disagree; these structs only add the flag, the environment variable and the file key.

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{alerts::AlertConfig, monitor::health_level::HealthThresholds};

/// Thresholds of the health level and of readiness.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Health (file section [health])")]
pub struct HealthConfig {
    /// Memory % (worst of host and GPUs) at which the health level is MODERATE.
    #[arg(
        id = "health.moderate_percent",
        long = "health-moderate-percent",
        env = "MAESTRO_HEALTH_MODERATE_PERCENT",
        value_name = "PERCENT",
        default_value_t = HealthThresholds::default().moderate_percent
    )]
    pub moderate_percent: f64,
    /// Memory % at which the health level is WARNING.
    #[arg(
        id = "health.warning_percent",
        long = "health-warning-percent",
        env = "MAESTRO_HEALTH_WARNING_PERCENT",
        value_name = "PERCENT",
        default_value_t = HealthThresholds::default().warning_percent
    )]
    pub warning_percent: f64,
    /// Memory % at which the health level is CRITICAL and the server reports not ready.
    #[arg(
        id = "health.critical_percent",
        long = "health-critical-percent",
        env = "MAESTRO_HEALTH_CRITICAL_PERCENT",
        value_name = "PERCENT",
        default_value_t = HealthThresholds::default().critical_percent
    )]
    pub critical_percent: f64,
    /// GPU temperature (°C) at which the health level is WARNING.
    #[arg(
        id = "health.gpu_temp_warning_c",
        long = "health-gpu-temp-warning-c",
        env = "MAESTRO_HEALTH_GPU_TEMP_WARNING_C",
        value_name = "CELSIUS",
        default_value_t = HealthThresholds::default().gpu_temp_warning_c
    )]
    pub gpu_temp_warning_c: f64,
    /// GPU temperature (°C) at which the health level is CRITICAL.
    #[arg(
        id = "health.gpu_temp_critical_c",
        long = "health-gpu-temp-critical-c",
        env = "MAESTRO_HEALTH_GPU_TEMP_CRITICAL_C",
        value_name = "CELSIUS",
        default_value_t = HealthThresholds::default().gpu_temp_critical_c
    )]
    pub gpu_temp_critical_c: f64,
    /// Readiness returns only once every figure is this far below its critical threshold.
    #[arg(
        id = "health.hysteresis",
        long = "health-hysteresis",
        env = "MAESTRO_HEALTH_HYSTERESIS",
        value_name = "POINTS",
        default_value_t = HealthThresholds::default().hysteresis
    )]
    pub hysteresis: f64,
}

impl HealthConfig {
    /// The thresholds the monitor applies.
    pub fn thresholds(&self) -> HealthThresholds {
        HealthThresholds {
            moderate_percent: self.moderate_percent,
            warning_percent: self.warning_percent,
            critical_percent: self.critical_percent,
            gpu_temp_warning_c: self.gpu_temp_warning_c,
            gpu_temp_critical_c: self.gpu_temp_critical_c,
            hysteresis: self.hysteresis,
        }
    }
}

/// Thresholds and timing of the alert rules.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Alerts (file section [alerts])")]
pub struct AlertsConfig {
    /// Host memory % that raises a WARNING alert.
    #[arg(
        id = "alerts.host_memory_warning_percent",
        long = "alerts-host-memory-warning-percent",
        env = "MAESTRO_ALERTS_HOST_MEMORY_WARNING_PERCENT",
        value_name = "PERCENT",
        default_value_t = AlertConfig::default().host_memory[0]
    )]
    pub host_memory_warning_percent: f64,
    /// Host memory % that raises a CRITICAL alert.
    #[arg(
        id = "alerts.host_memory_critical_percent",
        long = "alerts-host-memory-critical-percent",
        env = "MAESTRO_ALERTS_HOST_MEMORY_CRITICAL_PERCENT",
        value_name = "PERCENT",
        default_value_t = AlertConfig::default().host_memory[1]
    )]
    pub host_memory_critical_percent: f64,
    /// GPU memory % (per device) that raises a WARNING alert.
    #[arg(
        id = "alerts.gpu_memory_warning_percent",
        long = "alerts-gpu-memory-warning-percent",
        env = "MAESTRO_ALERTS_GPU_MEMORY_WARNING_PERCENT",
        value_name = "PERCENT",
        default_value_t = AlertConfig::default().gpu_memory[0]
    )]
    pub gpu_memory_warning_percent: f64,
    /// GPU memory % (per device) that raises a CRITICAL alert.
    #[arg(
        id = "alerts.gpu_memory_critical_percent",
        long = "alerts-gpu-memory-critical-percent",
        env = "MAESTRO_ALERTS_GPU_MEMORY_CRITICAL_PERCENT",
        value_name = "PERCENT",
        default_value_t = AlertConfig::default().gpu_memory[1]
    )]
    pub gpu_memory_critical_percent: f64,
    /// GPU temperature (°C) that raises a WARNING alert.
    #[arg(
        id = "alerts.gpu_temp_warning_c",
        long = "alerts-gpu-temp-warning-c",
        env = "MAESTRO_ALERTS_GPU_TEMP_WARNING_C",
        value_name = "CELSIUS",
        default_value_t = AlertConfig::default().gpu_temperature[0]
    )]
    pub gpu_temp_warning_c: f64,
    /// GPU temperature (°C) that raises a CRITICAL alert.
    #[arg(
        id = "alerts.gpu_temp_critical_c",
        long = "alerts-gpu-temp-critical-c",
        env = "MAESTRO_ALERTS_GPU_TEMP_CRITICAL_C",
        value_name = "CELSIUS",
        default_value_t = AlertConfig::default().gpu_temperature[1]
    )]
    pub gpu_temp_critical_c: f64,
    /// Server RSS in bytes that raises an alert; 0 = 75 % of the effective memory limit.
    #[arg(
        id = "alerts.rss_budget_bytes",
        long = "alerts-rss-budget-bytes",
        env = "MAESTRO_ALERTS_RSS_BUDGET_BYTES",
        value_name = "BYTES",
        default_value_t = AlertConfig::default().rss_budget_bytes
    )]
    pub rss_budget_bytes: u64,
    /// Leak alert: RSS slope, in MB per minute, above which memory counts as leaking.
    #[arg(
        id = "alerts.leak_slope_mb_per_min",
        long = "alerts-leak-slope-mb-per-min",
        env = "MAESTRO_ALERTS_LEAK_SLOPE_MB_PER_MIN",
        value_name = "MB",
        default_value_t = AlertConfig::default().leak_slope_mb_per_min
    )]
    pub leak_slope_mb_per_min: f64,
    /// Leak alert: seconds the slope must hold before the alert is raised.
    #[arg(
        id = "alerts.leak_sustain_s",
        long = "alerts-leak-sustain-s",
        env = "MAESTRO_ALERTS_LEAK_SUSTAIN_S",
        value_name = "SECONDS",
        default_value_t = AlertConfig::default().leak_sustain.as_secs()
    )]
    pub leak_sustain_s: u64,
    /// Points below its threshold a figure must fall for its alert to clear.
    #[arg(
        id = "alerts.hysteresis",
        long = "alerts-hysteresis",
        env = "MAESTRO_ALERTS_HYSTERESIS",
        value_name = "POINTS",
        default_value_t = AlertConfig::default().hysteresis
    )]
    pub hysteresis: f64,
    /// Consecutive samples a rule needs before it raises or clears an alert.
    #[arg(
        id = "alerts.min_samples",
        long = "alerts-min-samples",
        env = "MAESTRO_ALERTS_MIN_SAMPLES",
        value_name = "N",
        default_value_t = AlertConfig::default().min_samples
    )]
    pub min_samples: u32,
    /// Alerts the log keeps (active and resolved).
    #[arg(
        id = "alerts.log_capacity",
        long = "alerts-log-capacity",
        env = "MAESTRO_ALERTS_LOG_CAPACITY",
        value_name = "N",
        default_value_t = AlertConfig::default().log_capacity
    )]
    pub log_capacity: usize,
}

impl AlertsConfig {
    /// The rules the alert engine applies.
    pub fn rules(&self) -> AlertConfig {
        AlertConfig {
            host_memory: [self.host_memory_warning_percent, self.host_memory_critical_percent],
            gpu_memory: [self.gpu_memory_warning_percent, self.gpu_memory_critical_percent],
            gpu_temperature: [self.gpu_temp_warning_c, self.gpu_temp_critical_c],
            rss_budget_bytes: self.rss_budget_bytes,
            leak_slope_mb_per_min: self.leak_slope_mb_per_min,
            leak_sustain: Duration::from_secs(self.leak_sustain_s),
            hysteresis: self.hysteresis,
            min_samples: self.min_samples,
            log_capacity: self.log_capacity,
        }
    }
}
