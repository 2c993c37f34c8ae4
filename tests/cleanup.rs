//! Cleanup, reports and eviction through the real server with the tiny model, on a scripted 16 GB
//! machine whose memory the test drives.

mod common;

use std::time::Duration;

use common::{eventually, model_config, start_server_with, ScriptedSampler, TestServer, WITHIN};
use futures::StreamExt;
use maestro_proto as pb;

const TINY: &str = "maestro/musicgen-tiny";
const GB16: u64 = 16_000_000_000;

fn config() -> maestro::config::Config {
    let mut c = model_config();
    c.monitor.sample_interval = Duration::from_millis(100);
    c.resources.cleanup_cooldown = Duration::ZERO;
    c
}

async fn loaded(s: &mut TestServer) -> bool {
    let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    models.iter().any(|m| m.model == TINY && m.loaded)
}

async fn load(s: &mut TestServer) {
    let req =
        pb::LoadModelRequest { model: TINY.into(), device: "cpu".into(), dtype: String::new(), pin: false };
    s.generation.load_model(req).await.unwrap();
}

async fn auto_cleanups(s: &TestServer) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(s.metrics_addr).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("maestro_cleanups_total") && l.contains("trigger=\"auto\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The scripted process's RSS drop between two readings.
const RSS_STEP: u64 = 4096;

/// The tiny model's cache record, as `GetReport` lists it.
async fn cached_entry(s: &mut TestServer) -> pb::CachedModel {
    let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
    report.cached_models.into_iter().find(|m| m.model == TINY).expect("the tiny model is cached")
}

/// The bytes the cache accounts an entry at: measured at load (0 on the wire when not), else estimated.
fn accounted(entry: &pb::CachedModel) -> u64 {
    if entry.measured_bytes > 0 {
        entry.measured_bytes
    } else {
        entry.estimated_bytes
    }
}

#[tokio::test]
async fn cleanup_lists_and_evicts_idle_models_and_reports_measured_bytes() {
    let sampler = ScriptedSampler::with_total(GB16, 40.0).rss_falling_by(RSS_STEP);
    let mut s = start_server_with(config(), Box::new(sampler)).await;
    load(&mut s).await;
    // Just used: a plain cleanup spares it, a forced one takes it.
    let plain =
        s.resources.cleanup(pb::CleanupRequest { force: false, dry_run: true }).await.unwrap().into_inner();
    assert!(plain.dry_run && plain.actions.iter().all(|a| a.kind != "evict_model"), "{plain:?}");
    let forced =
        s.resources.cleanup(pb::CleanupRequest { force: true, dry_run: true }).await.unwrap().into_inner();
    let evict =
        forced.actions.iter().find(|a| a.kind == "evict_model").expect("forced dry run lists the model");
    assert_eq!(evict.target, TINY);
    assert!(evict.estimated_bytes > 0);
    assert!(loaded(&mut s).await, "a dry run changes nothing");
    assert_eq!(forced.host_bytes_freed, 0, "a dry run measures nothing: {forced:?}");
    assert!(forced.actions.iter().all(|a| a.host_bytes_freed == 0), "{forced:?}");

    let entry = cached_entry(&mut s).await;
    let accounted = accounted(&entry) as i64;
    let done =
        s.resources.cleanup(pb::CleanupRequest { force: true, dry_run: false }).await.unwrap().into_inner();
    assert!(!done.dry_run);
    assert!(!loaded(&mut s).await, "the forced cleanup evicted the idle model");
    // The eviction counts what the cache entry it removed accounted, not a difference of readings.
    let evicted = done.actions.iter().find(|a| a.kind == "evict_model").expect("eviction listed");
    assert_eq!((evicted.host_bytes_freed, evicted.gpu_bytes_freed), (accounted, 0), "{evicted:?}");
    // The trim and the whole run are measured: the scripted RSS falls at every reading, so each is a
    // positive whole number of steps, and the run (first reading to last) spans the trim's readings.
    let trim = done.actions.iter().find(|a| a.kind == "malloc_trim").expect("trim listed");
    let trimmed = trim.host_bytes_freed;
    assert!(trimmed > 0 && trimmed as u64 % RSS_STEP == 0, "trim measured {trimmed} B: {trim:?}");
    let freed = done.host_bytes_freed;
    assert!(freed > trimmed && freed as u64 % RSS_STEP == 0, "{freed} B overall, {trimmed} B by the trim");
}

/// A ten-minute lease of 1 MB of host memory.
fn host_lease(owner: &str) -> pb::AllocateRequest {
    pb::AllocateRequest {
        owner: owner.into(),
        cpu_memory_bytes: 1_000_000,
        gpu_memory_bytes: 0,
        gpu_index: None,
        ttl_seconds: 600,
    }
}

/// The samples of the whole history, as `(sequence, sampled_at)`.
async fn history(s: &mut TestServer) -> (u32, Vec<(u64, std::time::SystemTime)>) {
    let h = s.resources.get_history(pb::HistoryRequest { window_seconds: 300 }).await.unwrap().into_inner();
    let at = |p: &pb::Snapshot| std::time::SystemTime::try_from(p.sampled_at.unwrap()).unwrap();
    (h.window_seconds, h.samples.iter().map(|p| (p.sequence, at(p))).collect())
}

#[tokio::test]
async fn cleanup_leaves_the_history_and_the_alerts_as_they_were() {
    // Scheduled samples a minute apart; memory above the alert threshold from the first sample on,
    // which takes five samples in a row to raise an alert: only off-schedule samples could raise it
    // while the test runs.
    let interval = Duration::from_secs(60);
    let mut c = config();
    c.monitor.sample_interval = interval;
    c.alerts.host_memory_warning_percent = 30.0;
    c.alerts.min_samples = 5;
    let mut s = start_server_with(c, Box::new(ScriptedSampler::with_total(GB16, 40.0))).await;
    load(&mut s).await;
    let req = host_lease("history-test");
    s.resources.allocate(req).await.unwrap();
    let (window, before) = history(&mut s).await;

    for _ in 0..3 {
        s.resources.cleanup(pb::CleanupRequest { force: true, dry_run: false }).await.unwrap();
    }
    assert!(!loaded(&mut s).await, "the cleanups did their work");
    let (window_after, after) = history(&mut s).await;
    assert_eq!(window_after, window);
    // Only scheduled samples, an interval apart, may have joined the ones seen before.
    assert!(after.starts_with(&before[..before.len().min(after.len())]), "{before:?} then {after:?}");
    for pair in after.windows(2) {
        let gap = pair[1].1.duration_since(pair[0].1).unwrap_or_default();
        assert!(gap >= interval / 2, "an off-schedule sample entered the history: {after:?}");
    }
    let alerts = s.resources.list_alerts(pb::ListAlertsRequest::default()).await.unwrap().into_inner().alerts;
    assert!(alerts.is_empty(), "cleanup readings counted towards an alert: {alerts:?}");
}

#[tokio::test]
async fn the_report_shows_leases_models_and_suggestions() {
    let mut s = start_server_with(config(), Box::new(ScriptedSampler::with_total(GB16, 40.0))).await;
    load(&mut s).await;
    let req = host_lease("dashboard-test");
    let lease = s.resources.allocate(req).await.unwrap().into_inner();
    let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
    assert!(r.snapshot.is_some() && !r.window_stats.is_empty() && r.window_seconds > 0);
    let l = r.leases.iter().find(|l| l.lease_id == lease.lease_id).expect("lease listed");
    assert_eq!((l.owner.as_str(), l.cpu_memory_bytes), ("dashboard-test", 1_000_000));
    assert!(l.expires_at.is_some());
    let m = r.cached_models.iter().find(|m| m.model == TINY).expect("cached model listed");
    assert!(m.estimated_bytes > 0 && m.loaded_at.is_some());
    let cmp = r.requirements.iter().find(|c| c.model == TINY).expect("estimate beside measurement");
    assert!(cmp.estimated.is_some() && cmp.measured.is_some());
    let half = r.suggestions.iter().find(|x| x.kind == "use_half_precision").expect("f16 advice");
    assert_eq!(half.bytes_saved, decoder_f32_bytes() / 2, "f16 halves the decoder only: {half:?}");
    assert!(r.suggestions.iter().all(|x| x.kind != "evict_idle_model"), "just loaded, memory calm: {r:?}");
    assert_eq!(r.health(), pb::HealthLevel::Healthy);
    let sug = s.resources.get_optimization_suggestions(pb::SuggestionsRequest {}).await.unwrap().into_inner();
    assert!(!sug.suggestions.is_empty());
}

/// The tiny model's decoder weights in f32, from its header: every floating tensor under `decoder.`.
fn decoder_f32_bytes() -> u64 {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(TINY).join("model.safetensors");
    let file = maestro::checkpoint::Checkpoint::open(&path).unwrap();
    let decoder = file
        .tensors()
        .iter()
        .filter(|(k, i)| k.starts_with("decoder.") && maestro::checkpoint::is_float(i.dtype));
    decoder.map(|(_, i)| maestro::checkpoint::numel(i) * 4).sum()
}

#[tokio::test]
async fn suggestions_follow_the_configured_thresholds() {
    let mut c = config();
    c.resources.suggest_evict_idle = Duration::ZERO;
    let mut s = start_server_with(c, Box::new(ScriptedSampler::with_total(GB16, 40.0))).await;
    load(&mut s).await;
    let entry = cached_entry(&mut s).await;
    let sug = s.resources.get_optimization_suggestions(pb::SuggestionsRequest {}).await.unwrap().into_inner();
    let evict = sug.suggestions.iter().find(|x| x.kind == "evict_idle_model").expect("advised at once");
    assert!(evict.message.contains("unused for 0 s or more"), "{}", evict.message);
    assert!(
        evict.message.contains("Cleanup with force"),
        "just used: only a forced Cleanup takes it: {evict:?}"
    );
    assert_eq!(evict.bytes_saved, accounted(&entry), "what Cleanup frees");

    let mut c = config();
    c.health.warning_percent = 30.0;
    let mut s = start_server_with(c, Box::new(ScriptedSampler::with_total(GB16, 40.0))).await;
    load(&mut s).await;
    let sug = s.resources.get_optimization_suggestions(pb::SuggestionsRequest {}).await.unwrap().into_inner();
    let evict =
        sug.suggestions.iter().find(|x| x.kind == "evict_idle_model").expect("advised under pressure");
    assert!(evict.message.contains("host memory at 40 % (pressure from 30 %)"), "{}", evict.message);
}

#[tokio::test]
async fn memory_pressure_evicts_idle_models_but_never_one_in_use() {
    let sampler = ScriptedSampler::with_total(GB16, 40.0);
    let mut s = start_server_with(config(), Box::new(sampler.clone())).await;
    load(&mut s).await;

    // In use: a long generation holds the model while memory climbs past the cleanup threshold.
    let mut running = s
        .generation
        .generate(pb::GenerateRequest {
            model: TINY.into(),
            duration_s: 25.0,
            seed: Some(1),
            chunk_ms: 200,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(running.next().await.unwrap().is_ok(), "header");
    sampler.push_memory(&[92.0, 92.0, 92.0]);
    // The stream is not read, so the worker stays inside the generation; wait for the automatic
    // cleanup to have run (its counter), then check the model survived it.
    let ran = async || (auto_cleanups(&s).await >= 1.0).then_some(());
    eventually("the automatic cleanup under pressure", WITHIN, ran).await;
    assert!(loaded(&mut s).await, "a model in use is never evicted");
    drop(running);

    // Idle now: the next pressure sample evicts it.
    sampler.push_memory(&[50.0, 50.0]);
    eventually("pressure evicting the idle model", WITHIN, async || {
        sampler.push_memory(&[92.0]);
        (!loaded(&mut s).await).then_some(())
    })
    .await;
}

/// Emptying libtorch's CUDA cache is its own action: skipped with "no GPU" on a host without one;
/// with a GPU, asked of libtorch's allocator, which declines until this process has allocated on CUDA
/// (nothing here does, on any host: the scripted GPU is NVML's only) and then reports the bytes it
/// measured the cache give back.
#[cfg(feature = "torch")]
#[tokio::test]
async fn the_cuda_cache_action_says_what_the_allocator_did() {
    let cuda_action = |r: &pb::CleanupResult| {
        r.actions.iter().find(|a| a.kind == "empty_cuda_cache").expect("the action is listed").clone()
    };
    let mut s = start_server_with(config(), Box::new(ScriptedSampler::with_total(GB16, 20.0))).await;
    let r =
        s.resources.cleanup(pb::CleanupRequest { force: false, dry_run: false }).await.unwrap().into_inner();
    assert_eq!(cuda_action(&r).detail, "skipped: no GPU");

    let gpu = maestro::monitor::snapshot::GpuDevice {
        index: 0,
        memory_total_bytes: Some(GB16),
        memory_used_bytes: Some(1_000_000_000),
        memory_free_bytes: Some(GB16 - 1_000_000_000),
        compute_capability: (8, 0),
        ..Default::default()
    };
    let sampler = ScriptedSampler::with_total(GB16, 20.0).with_gpu(gpu);
    let mut s = start_server_with(config(), Box::new(sampler)).await;
    let r =
        s.resources.cleanup(pb::CleanupRequest { force: false, dry_run: false }).await.unwrap().into_inner();
    let action = cuda_action(&r);
    let why = if !maestro::cuda_alloc::built() {
        "the CUDA allocator shim is not built into this binary"
    } else if maestro::cuda_alloc::device_count() == 0 {
        "libtorch sees no CUDA device" // this CPU-only build machine: the scripted GPU is NVML's only
    } else {
        "CUDA is unused in this process"
    };
    assert_eq!(action.detail, format!("skipped: {why}"), "{action:?}");
    assert_eq!(action.gpu_bytes_freed, 0, "nothing was cached: {action:?}");
}
