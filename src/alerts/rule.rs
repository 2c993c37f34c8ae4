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

    pub(super) fn recommendations(self) -> Vec<String> {
        let r: &[&str] = match self {
            Rule::HostMemory => &[
                "Evict idle models from the cache (ResourceService.Cleanup)",
                "Load models in f16 or bf16 to halve their weights",
                "Use a smaller variant (musicgen-small needs 3 GB of host memory)",
                "Reduce batch size or duration of generations",
            ],
            Rule::GpuMemory => &[
                "Empty libtorch's CUDA cache (ResourceService.Cleanup)",
                "Evict or offload idle models to the CPU",
                "Use f16 weights on the GPU",
                "Use a smaller variant or a smaller batch",
            ],
            Rule::GpuTemperature => &[
                "Check cooling and airflow of the card",
                "Reduce concurrent generations on this GPU",
                "Lower the power limit (nvidia-smi -pl)",
            ],
            Rule::ProcessRss => &[
                "Reduce the model cache (UnloadModel or Cleanup)",
                "Raise the RSS budget if this footprint is expected",
            ],
            Rule::MemoryLeak => &[
                "Run Cleanup and check whether RSS falls back",
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
