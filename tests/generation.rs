//! GenerationService through the real gRPC server with the tiny random model shipped in `models/`.

mod common;

use common::{eventually, model_config, start_server, TestServer, WITHIN};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::Code;

const TINY: &str = "maestro/musicgen-tiny";

fn request(duration: f64, seed: u64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: TINY.into(),
        prompt: "a calm piano".into(),
        duration_s: duration,
        seed: Some(seed),
        chunk_ms: 200,
        ..Default::default()
    }
}

struct Run {
    header: pb::Header,
    chunks: Vec<pb::AudioChunk>,
    summary: pb::Summary,
}

impl Run {
    fn audio(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
    }
}

async fn generate(server: &mut TestServer, req: pb::GenerateRequest) -> Result<Run, tonic::Status> {
    let mut stream = server.generation.generate(req).await?.into_inner();
    let mut header = None;
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item?.payload.unwrap() {
            Payload::Header(h) => {
                assert!(header.is_none() && chunks.is_empty(), "one header, first");
                header = Some(h);
            }
            Payload::Chunk(c) => chunks.push(c),
            Payload::Summary(summary) => {
                assert!(stream.next().await.is_none(), "the summary is last");
                return Ok(Run { header: header.unwrap(), chunks, summary });
            }
        }
    }
    panic!("stream ended without a summary")
}

#[tokio::test]
async fn generate_streams_header_chunks_and_summary() {
    let mut s = start_server(model_config()).await;
    let run = generate(&mut s, request(1.0, 7)).await.unwrap();
    let h = &run.header;
    assert_eq!((h.model.as_str(), h.format()), (TINY, pb::AudioFormat::PcmS16le));
    assert!(h.sample_rate > 0 && h.channels >= 1 && !h.request_id.is_empty());
    assert_eq!(h.params.as_ref().unwrap().seed, 7);
    let samples: u64 = run.audio().len() as u64 / 2 / u64::from(h.channels);
    let expected = h.sample_rate as f64 * 1.0;
    let frame = f64::from(h.sample_rate) / 50.0;
    assert!((samples as f64 - expected).abs() <= frame, "{samples} samples for 1 s at {} Hz", h.sample_rate);
    assert_eq!(samples, h.expected_samples);
    assert_eq!(run.summary.samples, samples);
    assert!(run.chunks.len() > 1, "several chunks at 200 ms");
    let mut offset = 0;
    for (i, c) in run.chunks.iter().enumerate() {
        assert_eq!((c.index as usize, c.sample_offset), (i, offset));
        offset += c.data.len() as u64 / 2 / u64::from(h.channels);
        assert!(c.progress > 0.0 && c.progress <= 1.0);
    }
    assert_eq!(run.chunks.last().unwrap().progress, 1.0);
    let sum = &run.summary;
    assert!(sum.frames > 0 && sum.steps_per_second > 0.0 && sum.real_time_factor > 0.0 && sum.total_ms > 0.0);
    assert!(sum.time_to_first_chunk_ms <= sum.total_ms);
    assert_eq!(sum.device, "cpu");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_bytes_and_formats_agree() {
    let mut s = start_server(model_config()).await;
    let a = generate(&mut s, request(0.6, 42)).await.unwrap();
    let b = generate(&mut s, request(0.6, 42)).await.unwrap();
    assert!(a.audio() == b.audio(), "the same seed gives the same bytes");
    let c = generate(&mut s, request(0.6, 43)).await.unwrap();
    assert!(a.audio() != c.audio(), "another seed, other audio");
    // Chunking does not change the audio, and f32 is the same audio as s16.
    let whole = generate(&mut s, pb::GenerateRequest { chunk_ms: 10_000, ..request(0.6, 42) }).await.unwrap();
    assert_eq!(whole.chunks.len(), 1);
    // Streamed decoding matches the whole decode to 1e-4, so 16-bit samples may differ by one step.
    let (w, s16) = (samples_i16(&whole.audio()), samples_i16(&a.audio()));
    assert_eq!(w.len(), s16.len());
    let worst = w.iter().zip(&s16).map(|(x, y)| (i32::from(*x) - i32::from(*y)).abs()).max().unwrap();
    assert!(worst <= 4, "chunked and whole audio differ by {worst} steps of 1/32767");
    let f32 = generate(
        &mut s,
        pb::GenerateRequest { format: pb::AudioFormat::PcmF32le as i32, ..request(0.6, 42) },
    )
    .await
    .unwrap();
    let as_s16: Vec<u8> = f32
        .audio()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .flat_map(|x| ((x.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    assert!(as_s16 == a.audio(), "f32 audio quantised to s16 equals the s16 audio");
}

fn samples_i16(bytes: &[u8]) -> Vec<i16> {
    bytes.chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

#[tokio::test]
async fn bad_generation_requests_name_the_field() {
    let mut s = start_server(model_config()).await;
    let base = request(1.0, 1);
    let cases: Vec<(pb::GenerateRequest, &str, Code)> = vec![
        (pb::GenerateRequest { model: String::new(), ..base.clone() }, "model", Code::InvalidArgument),
        (pb::GenerateRequest { model: "../x".into(), ..base.clone() }, "model", Code::InvalidArgument),
        (pb::GenerateRequest { model: "nobody/none".into(), ..base.clone() }, "nobody/none", Code::NotFound),
        (pb::GenerateRequest { prompt: "x".repeat(2001), ..base.clone() }, "prompt", Code::InvalidArgument),
        (pb::GenerateRequest { duration_s: 0.0, ..base.clone() }, "duration_s", Code::InvalidArgument),
        (pb::GenerateRequest { duration_s: f64::NAN, ..base.clone() }, "duration_s", Code::InvalidArgument),
        (
            pb::GenerateRequest { duration_s: 121.0, ..base.clone() },
            "<= 120 (--max-duration-s)",
            Code::InvalidArgument,
        ),
        (
            pb::GenerateRequest { temperature: Some(0.0), ..base.clone() },
            "temperature",
            Code::InvalidArgument,
        ),
        (
            pb::GenerateRequest { temperature: Some(f64::INFINITY), ..base.clone() },
            "temperature",
            Code::InvalidArgument,
        ),
        (
            pb::GenerateRequest { temperature: Some(10.5), ..base.clone() },
            "temperature",
            Code::InvalidArgument,
        ),
        (pb::GenerateRequest { top_k: Some(1_000_000), ..base.clone() }, "top_k", Code::InvalidArgument),
        (pb::GenerateRequest { top_p: Some(1.0), ..base.clone() }, "top_p", Code::InvalidArgument),
        (pb::GenerateRequest { top_p: Some(-0.1), ..base.clone() }, "top_p", Code::InvalidArgument),
        (
            pb::GenerateRequest { guidance_scale: Some(0.5), ..base.clone() },
            "guidance_scale",
            Code::InvalidArgument,
        ),
        (
            pb::GenerateRequest { guidance_scale: Some(21.0), ..base.clone() },
            "guidance_scale",
            Code::InvalidArgument,
        ),
        (pb::GenerateRequest { chunk_ms: 5, ..base.clone() }, "chunk_ms", Code::InvalidArgument),
        (pb::GenerateRequest { chunk_ms: 10_001, ..base.clone() }, "chunk_ms", Code::InvalidArgument),
        (pb::GenerateRequest { format: 7, ..base.clone() }, "format", Code::InvalidArgument),
    ];
    for (req, needle, code) in cases {
        let err = match s.generation.generate(req.clone()).await {
            Err(e) => e,
            Ok(stream) => stream.into_inner().next().await.unwrap().unwrap_err(),
        };
        assert_eq!(err.code(), code, "{needle}: {err:?}");
        assert!(err.message().contains(needle), "{:?} lacks {needle}", err.message());
    }
    // Every refusal, the model's own limits included (top_k against its codebook, a chunk shorter
    // than one of its frames), came before anything was loaded.
    let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    assert!(models.iter().all(|m| !m.loaded), "a refused request loaded a model: {models:?}");
    // Nothing was lost: a valid request still runs.
    generate(&mut s, request(0.2, 1)).await.unwrap();
}

#[tokio::test]
async fn models_load_unload_and_list() {
    let mut s = start_server(model_config()).await;
    let list = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    let tiny = list.iter().find(|m| m.model == TINY).expect("tiny model listed");
    assert!(tiny.weights_present && !tiny.loaded);
    let small = list.iter().find(|m| m.model == "facebook/musicgen-small").expect("table model listed");
    assert!(!small.weights_present);
    assert_eq!(small.requirements.as_ref().unwrap().source(), pb::RequirementSource::Table);

    let req =
        pb::LoadModelRequest { model: TINY.into(), device: "cpu".into(), dtype: String::new(), pin: true };
    let info = s.generation.load_model(req).await.unwrap().into_inner();
    assert!(info.loaded && info.pinned && info.device == "cpu");
    let missing = pb::LoadModelRequest { model: "facebook/musicgen-small".into(), ..Default::default() };
    let err = s.generation.load_model(missing).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let out =
        s.generation.unload_model(pb::UnloadModelRequest { model: TINY.into(), force: false }).await.unwrap();
    assert!(out.into_inner().unloaded);
    let again = s.generation.unload_model(pb::UnloadModelRequest { model: TINY.into(), force: false }).await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_model_in_use_cannot_be_unloaded_and_a_full_queue_refuses_at_once() {
    let mut c = model_config();
    c.generation.queue_capacity = 1;
    let mut s = start_server(c).await;
    let mut running = s.generation.generate(request(20.0, 3)).await.unwrap().into_inner();
    assert!(matches!(running.next().await.unwrap().unwrap().payload, Some(Payload::Header(_))));
    let busy = s.generation.unload_model(pb::UnloadModelRequest { model: TINY.into(), force: false }).await;
    assert_eq!(busy.unwrap_err().code(), Code::FailedPrecondition);
    let full = match s.generation.generate(request(1.0, 4)).await {
        Err(e) => e,
        Ok(stream) => stream.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");
    assert!(full.message().contains("queue"), "{}", full.message());
    let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
    assert!(report.leases.iter().any(|l| l.kind == "generation"), "a running generation holds a lease");
    // Cancelling the running request releases its lease and frees the queue; the next request runs.
    drop(running);
    eventually("the cancelled generation releasing its lease", WITHIN, async || {
        let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        report.leases.is_empty().then_some(())
    })
    .await;
    eventually("the cancelled request giving its queue slot back", WITHIN, async || {
        match generate(&mut s, request(0.2, 5)).await {
            Ok(run) => Some(run),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                None
            }
        }
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_gets_its_own_audio() {
    let mut c = model_config();
    c.generation.max_batch = 4;
    let mut s = start_server(c).await;
    // A blocker fills its stream buffer (one frame per chunk, never read), so the worker waits inside it
    // while three more requests queue up behind it.
    let blocker = pb::GenerateRequest { chunk_ms: 20, ..request(20.0, 99) };
    let mut blocked = s.generation.generate(blocker).await.unwrap().into_inner();
    // Header, then a first chunk: the worker is inside the blocker before anything else is queued.
    assert!(blocked.next().await.unwrap().is_ok());
    assert!(matches!(blocked.next().await.unwrap().unwrap().payload, Some(Payload::Chunk(_))));
    let variants = [
        pb::GenerateRequest { prompt: "drums".into(), ..request(0.6, 1) },
        pb::GenerateRequest { prompt: "a slow cello line".into(), ..request(0.4, 2) },
        pb::GenerateRequest { prompt: String::new(), guidance_scale: Some(1.0), ..request(0.5, 3) },
    ];
    let mut tasks = Vec::new();
    for v in variants.clone() {
        let mut client = s.generation.clone();
        tasks.push(tokio::spawn(async move { client.generate(v).await.map(|r| r.into_inner()) }));
    }
    let mut streams = Vec::new();
    for t in tasks {
        streams.push(t.await.unwrap().unwrap());
    }
    drop(blocked);
    for (v, mut stream) in variants.into_iter().zip(streams) {
        let mut audio = Vec::new();
        let mut batch = 0;
        while let Some(item) = stream.next().await {
            match item.unwrap().payload.unwrap() {
                Payload::Chunk(c) => audio.extend(c.data),
                Payload::Summary(sum) => batch = sum.batch_size,
                Payload::Header(_) => {}
            }
        }
        assert_eq!(batch, 3, "the three queued requests ran as one batch");
        let alone = generate(&mut s, v).await.unwrap();
        assert_eq!(alone.summary.batch_size, 1);
        let (a, b) = (samples_i16(&audio), samples_i16(&alone.audio()));
        assert_eq!(a.len(), b.len());
        let worst = a.iter().zip(&b).map(|(x, y)| (i32::from(*x) - i32::from(*y)).abs()).max().unwrap();
        assert!(worst <= 4, "batched and alone differ by {worst} steps");
    }
}

#[tokio::test]
async fn the_header_reports_the_conditioning_and_sampling_that_ran() {
    let mut s = start_server(model_config()).await;
    let params = |run: &Run| run.header.params.unwrap();
    let guided = pb::GenerateRequest { guidance_scale: Some(3.0), ..request(0.2, 5) };
    let p = params(&generate(&mut s, guided.clone()).await.unwrap());
    assert_eq!((p.guidance_scale, p.sampling_mode()), (3.0, pb::SamplingMode::Transformers));
    // An empty prompt is the null condition: nothing for guidance to contrast.
    let uncond = pb::GenerateRequest { prompt: String::new(), ..guided.clone() };
    assert_eq!(params(&generate(&mut s, uncond.clone()).await.unwrap()).guidance_scale, 1.0);
    let steered = pb::GenerateRequest { negative_prompt: "drums".into(), ..uncond };
    assert_eq!(params(&generate(&mut s, steered).await.unwrap()).guidance_scale, 3.0);
    // audiocraft's rules: top-k 250 (at most the codebook) unless top-p is on, which replaces it.
    let audiocraft = pb::GenerateRequest { sampling_mode: pb::SamplingMode::Audiocraft as i32, ..guided };
    let p = params(&generate(&mut s, audiocraft.clone()).await.unwrap());
    assert_eq!((p.sampling_mode(), p.top_k, p.top_p), (pb::SamplingMode::Audiocraft, 64, 1.0));
    let nucleus = pb::GenerateRequest { top_p: Some(0.9), top_k: Some(10), ..audiocraft };
    let p = params(&generate(&mut s, nucleus).await.unwrap());
    assert_eq!((p.top_k, p.top_p), (0, 0.9));
}

#[tokio::test]
async fn a_stereo_checkpoint_streams_interleaved_channels() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("maestro/musicgen-stereo-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/musicgen-stereo-tiny");
    for file in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
    }
    let mut c = model_config();
    c.models.roots = vec![root.path().to_owned()];
    let mut s = start_server(c).await;
    let req = pb::GenerateRequest { model: "maestro/musicgen-stereo-tiny".into(), ..request(0.4, 3) };
    let run = generate(&mut s, req).await.unwrap();
    assert_eq!(run.header.channels, 2);
    let samples = samples_i16(&run.audio());
    assert_eq!(samples.len() as u64, 2 * run.header.expected_samples, "two samples per instant");
    let (left, right): (Vec<i16>, Vec<i16>) = samples.chunks(2).map(|lr| (lr[0], lr[1])).unzip();
    assert_ne!(left, right, "each channel has its own codebooks");
}

#[tokio::test]
async fn a_generation_past_the_window_streams_it_all_and_is_sized_as_one_window() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("maestro/short-window");
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(TINY);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny.join(file), dir.join(file)).unwrap();
    }
    // A one-second window (50 frames), so a short request already spans three windows.
    let generation = r#"{"do_sample": true, "guidance_scale": 3.0, "max_length": 50, "pad_token_id": 64}"#;
    std::fs::write(dir.join("generation_config.json"), generation).unwrap();
    let mut c = model_config();
    c.models.roots = vec![root.path().to_owned()];
    c.generation.extend_stride_s = 0.6;
    let mut s = start_server(c).await;
    let model = "maestro/short-window";
    let run = generate(&mut s, pb::GenerateRequest { model: model.into(), ..request(2.5, 9) }).await.unwrap();
    assert_eq!(run.header.expected_samples, 2 * 32_000 + 16_000);
    assert_eq!(samples_i16(&run.audio()).len() as u64, run.header.expected_samples);
    assert_eq!(run.summary.frames, 125);
    let verdict = |duration_s: f64| {
        let mut resources = s.resources.clone();
        let req =
            pb::ValidateRequest { model: model.into(), batch_size: 1, duration_s, ..Default::default() };
        async move { resources.validate_model(req).await.unwrap().into_inner().requirements.unwrap() }
    };
    let (window, long) = (verdict(1.0).await, verdict(100.0).await);
    assert_eq!(window.max_duration_s, 1.0);
    assert_eq!(long.working_set_bytes, window.working_set_bytes, "one window's working set");
    assert!(verdict(0.5).await.working_set_bytes < window.working_set_bytes);
}

/// A client that answers pings but never opens its receive window (a phone in the background, a
/// proxy with a full buffer): a raw HTTP/2 stream with a window of 0 and one gRPC `Generate` frame.
/// Returns what keeps the connection and the stream open.
async fn stalled_reader(
    addr: std::net::SocketAddr,
    req: pb::GenerateRequest,
) -> (h2::client::SendRequest<bytes::Bytes>, h2::RecvStream) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) =
        h2::client::Builder::new().initial_window_size(0).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
    // Driven, the connection answers pings and keepalives; its streams' windows stay shut.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/maestro.v1.GenerationService/Generate"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    let message = prost::Message::encode_to_vec(&req);
    let mut frame = vec![0u8];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend(message);
    send.send_data(bytes::Bytes::from(frame), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("grpc-status").is_none(), "refused at once: {:?}", response.headers());
    (client, response.into_body())
}

/// Four clients that stop reading their 30 s generations beside a polite one: the polite one is
/// served, and once the stall timeout passes each stalled generation is stopped and gives back its
/// lease, its queue slot and its model, while its connection is still open.
#[tokio::test]
async fn a_stalled_reader_costs_only_itself() {
    let mut c = model_config();
    c.generation.stall_timeout = std::time::Duration::from_secs(1);
    let mut s = start_server(c).await;
    let long = pb::GenerateRequest { duration_s: 30.0, chunk_ms: 20, ..request(30.0, 7) };
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(stalled_reader(s.addr, long.clone()).await);
    }
    let polite = tokio::time::timeout(WITHIN, generate(&mut s, request(1.0, 1))).await;
    polite.expect("the polite client was held up by the stalled ones").unwrap();
    let ended = eventually("the stalled generations stopped and everything given back", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        let stopped: Vec<_> =
            r.recent_generations.iter().filter(|g| g.error.contains("--stall-timeout-s")).cloned().collect();
        let idle = r.cached_models.iter().all(|m| m.in_flight == 0);
        (stopped.len() == 4 && r.leases.is_empty() && r.queue.is_empty() && idle).then_some(stopped)
    })
    .await;
    assert!(ended.iter().all(|g| g.outcome == "failed"), "{ended:?}");
    // The connections were open all along; they go now.
    drop(stalled);
    generate(&mut s, request(0.2, 2)).await.expect("the server serves on");
}

/// Watches have their own budget: a flood of them is refused naming `--max-watches` while a
/// generation still runs, and a generation is refused naming `--max-streams` only past its own.
#[tokio::test]
async fn a_watch_flood_never_refuses_a_generation() {
    let mut c = model_config();
    (c.server.max_watches, c.server.max_streams) = (3, 1);
    let mut s = start_server(c).await;
    let mut watches = Vec::new();
    for _ in 0..3 {
        let watch = s.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap();
        watches.push(watch.into_inner());
    }
    let err = s.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::ResourceExhausted, "too many open watch streams: limit 3 reached (--max-watches)")
    );
    generate(&mut s, request(0.2, 1)).await.expect("a generation beside a full watch budget");
    let mut open = s.generation.generate(request(5.0, 2)).await.unwrap().into_inner();
    assert!(open.next().await.unwrap().is_ok(), "header");
    let err = s.generation.generate(request(0.2, 3)).await.unwrap_err();
    let want = "too many open generation streams: limit 1 reached (--max-streams)";
    assert_eq!((err.code(), err.message()), (Code::ResourceExhausted, want));
    drop((open, watches));
}
