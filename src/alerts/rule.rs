//! What each alert rule watches: its wire name, its unit, the sentence an alert carries and the
//! advice that goes with it.

/// What an alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Effective host memory %.
    HostMemory,
    /// GPU memory % per device.
    GpuMemory,
    /// GPU temperature per device.
    GpuTemperature,
    /// Server RSS against the budget.
    ProcessRss,
    /// Server RSS rising steadily.
    MemoryLeak,
}

impl Rule {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::HostMemory => "host_memory",
            Rule::GpuMemory => "gpu_memory",
            Rule::GpuTemperature => "gpu_temperature",
            Rule::ProcessRss => "process_rss",
            Rule::MemoryLeak => "memory_leak",
        }
    }

    pub(super) fn unit(self) -> &'static str {
        match self {
            Rule::HostMemory | Rule::GpuMemory | Rule::ProcessRss => "percent",
            Rule::GpuTemperature => "celsius",
            Rule::MemoryLeak => "MB/min",
        }
    }

    /// What to do about it. Each one names what the server does when followed: `Cleanup` evicts
    /// idle models (a forced one also pinned and recently used ones) and trims the heap, and does
    /// not empty libtorch's CUDA cache (no allocator shim is linked), so no advice says it does; f16
    /// halves the decoder's weights only. No text carries a model size: `ValidateModel` answers what
    /// a variant needs on this host, from the configured requirements table.
    pub(super) fn recommendations(self) -> Vec<String> {
        let r: &[&str] = match self {
            Rule::HostMemory => &[
                "Evict idle models (ResourceService.Cleanup; force also takes pinned and recently used ones)",
                "Reload models with dtype f16: the decoder's weights halve (T5 and EnCodec stay f32)",
                "Use a smaller variant (ValidateModel gives what each needs on this host)",
                "Reduce batch size or duration of generations",
            ],
            Rule::GpuMemory => &[
                "Evict idle models on this GPU (ResourceService.Cleanup)",
                "Reload idle models on the CPU (UnloadModel, then LoadModel with device cpu)",
                "Reload models with dtype f16: the decoder's weights halve (T5 and EnCodec stay f32)",
                "Use a smaller variant or a smaller batch (ValidateModel gives what each needs)",
            ],
            Rule::GpuTemperature => &[
                "Check cooling and airflow of the card",
                "Reduce concurrent generations on this GPU",
                "Lower the power limit (nvidia-smi -pl)",
            ],
            Rule::ProcessRss => &[
                "Reduce the model cache (UnloadModel or Cleanup)",
                "Raise the RSS budget (--alerts-rss-budget-bytes) if this footprint is expected",
            ],
            Rule::MemoryLeak => &[
                "Run Cleanup (it returns freed heap to the OS) and check whether RSS falls back",
                "Compare process_rss_bytes in GetHistory before and after traffic",
                "Restart the server in a quiet period if growth continues",
            ],
        };
        r.iter().map(|s| s.to_string()).collect()
    }

    /// The sentence an alert of this rule carries, for `value` against `threshold` on `resource`.
    pub(super) fn message(self, resource: &str, value: f64, threshold: f64) -> String {
        match self {
            Rule::HostMemory => format!("host memory at {value:.1} % (threshold {threshold} %)"),
            Rule::GpuMemory => format!("{resource} memory at {value:.1} % (threshold {threshold} %)"),
            Rule::GpuTemperature => format!("{resource} at {value:.0} °C (threshold {threshold} °C)"),
            Rule::ProcessRss => format!("server RSS at {value:.0} % of its budget"),
            Rule::MemoryLeak => {
                format!("possible memory leak: server RSS rising {value:.1} MB/min (threshold {threshold} MB/min)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rule;

    const ALL: [Rule; 5] =
        [Rule::HostMemory, Rule::GpuMemory, Rule::GpuTemperature, Rule::ProcessRss, Rule::MemoryLeak];

    #[test]
    fn no_advice_promises_what_cleanup_does_not_do_or_quotes_a_size() {
        for rule in ALL {
            for advice in rule.recommendations() {
                let lower = advice.to_lowercase();
                assert!(
                    !lower.contains("cuda cache"),
                    "{}: Cleanup does not empty it: {advice}",
                    rule.name()
                );
                assert!(!lower.contains(" gb"), "{}: sizes come from ValidateModel: {advice}", rule.name());
                if lower.contains("f16") {
                    assert!(
                        lower.contains("decoder"),
                        "{}: f16 halves the decoder only: {advice}",
                        rule.name()
                    );
                }
            }
        }
    }
}
