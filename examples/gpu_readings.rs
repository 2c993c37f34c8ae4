//! Prints what Maestro's NVML sampler reads of every GPU, as CSV (one line a GPU; `absent` for a
//! sensor that could not be read), for `scripts/gpu-check.sh` to compare with nvidia-smi. Built
//! without libtorch (`--no-default-features`), so it runs on a GPU host that has neither Rust nor
//! this libtorch.

use maestro::monitor::sampler::{GpuSource, NvmlSource};

fn main() {
    let stats = match NvmlSource::init().read() {
        Ok(stats) if stats.available => stats,
        Ok(stats) => fail(&stats.unavailable_reason),
        Err(e) => fail(&e),
    };
    println!(
        "index,uuid,name,memory_total_bytes,memory_used_bytes,temperature_celsius,power_watts,\
         utilization_gpu_percent"
    );
    for d in &stats.devices {
        println!(
            "{},{},{},{},{},{},{},{}",
            d.index,
            d.uuid,
            d.name,
            show(d.memory_total_bytes),
            show(d.memory_used_bytes),
            show(d.temperature_celsius),
            show(d.power_watts),
            show(d.utilization_gpu_percent)
        );
    }
}

/// A reading, or `absent` for a sensor that did not answer.
fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| v.to_string())
}

fn fail(reason: &str) -> ! {
    eprintln!("gpu_readings: NVML unavailable: {reason}");
    std::process::exit(2)
}
