//! The HTTP/JSON API on the main port, through the real server and the real `curl`: the six paths of
//! the system Maestro replaces, answers equal to gRPC's in the proto3 JSON mapping, errors with
//! grpc-gateway's statuses, roles, and streams as Server-Sent Events and NDJSON.

mod common;

use std::time::Duration;

use common::{scrape, start_server, test_config, TestServer};
use maestro_proto as pb;
use prost::Message;
use serde_json::Value;

/// What `curl` got: the status, the response headers (lower-case), the body.
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
struct Answer {
    status: u16,
    headers: String,
    body: String,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::trim)
    }
}

/// Runs `curl` against the server's main port with `args` (the path last); bounded by `--max-time`.
async fn curl(s: &TestServer, args: &[&str]) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let (headers, body) = (dir.path().join("headers"), dir.path().join("body"));
    let (path, options) = args.split_last().unwrap();
    let url = format!("http://{}{path}", s.addr);
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(options)
        .arg(&url)
        .output()
        .await
        .expect("curl runs (scripts/provision-tools.sh installs it)");
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    let headers = std::fs::read_to_string(&headers).unwrap_or_default().to_lowercase();
    let bytes = std::fs::read(&body).unwrap_or_default();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Answer { status, headers, body, bytes }
}

/// A gRPC answer in the proto3 JSON mapping, as the HTTP API writes it, read back from its text as
/// curl's answer is (serde_json's default float parsing may land one ULP off: both sides get it).
fn proto_json<M: Message>(message: &M, name: &str) -> Value {
    let desc = maestro::gateway::pool().get_message_by_name(&format!("maestro.v1.{name}")).unwrap();
    let dynamic = prost_reflect::DynamicMessage::decode(desc, message.encode_to_vec().as_slice()).unwrap();
    serde_json::from_str(&maestro::gateway::json::to_json(&dynamic).to_string()).unwrap()
}

async fn server() -> TestServer {
    let mut config = test_config();
    config.monitor.sample_interval = Duration::from_millis(200);
    start_server(config).await
}

#[tokio::test]
async fn the_six_monitoring_paths_answer_as_written() {
    let s = server().await;
    let status = curl(&s, &["/api/v1/monitoring/status"]).await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.header("content-type"), Some("application/json"));
    let json = status.json();
    assert!(
        json["host"]["memoryTotalBytes"].as_str().unwrap().parse::<u64>().unwrap() > 0,
        "64-bit as strings"
    );
    assert!(json["sampledAt"].as_str().unwrap().ends_with('Z'), "RFC 3339: {}", json["sampledAt"]);

    let report = curl(&s, &["/api/v1/monitoring/report"]).await.json();
    for key in ["snapshot", "windowStats", "leases", "cachedModels", "activeAlerts", "health"] {
        assert!(report.get(key).is_some(), "the report has {key}: {report}");
    }
    assert!(report["health"].as_str().unwrap().starts_with("HEALTH_LEVEL_"), "enums by name");

    for query in ["severity=critical", "severity=SEVERITY_CRITICAL", "severity=3&limit=5"] {
        let alerts = curl(&s, &[&format!("/api/v1/monitoring/alerts?{query}")]).await;
        assert_eq!(alerts.status, 200, "{query}: {}", alerts.body);
        assert!(alerts.json()["alerts"].is_array(), "{}", alerts.body);
    }
    let history = curl(&s, &["/api/v1/monitoring/history?window_seconds=300"]).await.json();
    assert_eq!(history["windowSeconds"], 300);
    assert!(history["samples"].as_array().is_some_and(|s| !s.is_empty()), "{history}");
    let history = curl(&s, &["/api/v1/monitoring/history?windowSeconds=60"]).await.json();
    assert_eq!(history["windowSeconds"], 60, "both spellings");
    let suggestions = curl(&s, &["/api/v1/monitoring/optimization-suggestions"]).await.json();
    assert!(suggestions["suggestions"].is_array() && suggestions["health"].is_string(), "{suggestions}");
    let cleanup = curl(&s, &["-X", "POST", "/api/v1/monitoring/cleanup?force=false"]).await;
    assert_eq!(cleanup.status, 200, "{}", cleanup.body);
    assert_eq!(cleanup.json()["dryRun"], false);
    let dry = curl(&s, &["-X", "POST", "/api/v1/monitoring/cleanup?dry_run=true"]).await.json();
    assert_eq!(dry["dryRun"], true);
}

#[tokio::test]
async fn http_answers_equal_grpc_answers() {
    let mut s = server().await;
    // Samples change every 200 ms: compare answers of the same sample.
    let http = common::eventually("the same sample over both", Duration::from_secs(30), async || {
        let grpc = s.resources.get_status(pb::StatusRequest {}).await.unwrap().into_inner();
        let http = curl(&s, &["/api/v1/monitoring/status"]).await.json();
        let grpc = proto_json(&grpc, "Snapshot");
        (grpc["sequence"] == http["sequence"]).then_some((grpc, http))
    })
    .await;
    assert_eq!(http.0, http.1);
    let grpc = s.generation.list_models(pb::ListModelsRequest::default()).await.unwrap().into_inner();
    assert_eq!(curl(&s, &["/api/v1/models"]).await.json(), proto_json(&grpc, "ModelList"));
}

#[tokio::test]
async fn leases_over_http_with_a_json_body_and_a_path_variable() {
    let s = server().await;
    // curl's -d sends a form content type: the JSON body is read anyway.
    let body = r#"{"owner":"curl","cpu_memory_bytes":"1000000","ttlSeconds":60}"#;
    let lease = curl(&s, &["-d", body, "/api/v1/leases"]).await;
    assert_eq!(lease.status, 200, "{}", lease.body);
    let lease = lease.json();
    assert_eq!((lease["owner"].as_str(), lease["cpuMemoryBytes"].as_str()), (Some("curl"), Some("1000000")));
    let id = lease["leaseId"].as_str().unwrap();
    let released = curl(&s, &["-X", "DELETE", &format!("/api/v1/leases/{id}")]).await;
    assert_eq!(released.status, 200, "{}", released.body);
    assert_eq!(released.json()["lease"]["leaseId"], id);
    let again = curl(&s, &["-X", "DELETE", &format!("/api/v1/leases/{id}")]).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.json()["code"], 5, "NOT_FOUND's number: {}", again.body);
}

#[tokio::test]
async fn errors_carry_grpc_gateways_statuses() {
    let s = server().await;
    for (args, status, code, says) in [
        (vec!["/api/v1/monitoring/history?window_seconds=abc"], 400, 3, "window_seconds"),
        (vec!["/api/v1/monitoring/history?window_seconds=999999"], 400, 3, "window_seconds"),
        (vec!["/api/v1/monitoring/alerts?severity=urgent"], 400, 3, "severity"),
        (vec!["/api/v1/monitoring/status?bogus=1"], 400, 3, "bogus"),
        (vec!["-d", "{\"owner\":", "/api/v1/leases"], 400, 3, "not JSON"),
        (vec!["-d", "{\"owner\":\"x\",\"nope\":1}", "/api/v1/leases"], 400, 3, "nope"),
        (vec!["-d", "{\"owner\":\"x\",\"ttlSeconds\":\"soon\"}", "/api/v1/leases"], 400, 3, "ttlSeconds"),
        (vec!["-d", "{}", "/api/v1/monitoring/cleanup"], 400, 3, "takes no body"),
        (vec!["/api/v1/no/such/thing"], 404, 5, "no route"),
        (vec!["-X", "DELETE", "/api/v1/leases/lease-0-none"], 404, 5, "lease-0-none"),
        (vec!["/api/v1/models/validate?model=nobody/none&batch_size=1&duration_s=10"], 404, 5, "nobody/none"),
        (vec!["-d", r#"{"owner":"x","ttlSeconds":"soon"}"#, "/api/v1/leases"], 400, 3, "ttlSeconds"),
    ] {
        let answer = curl(&s, &args).await;
        assert_eq!(answer.status, status, "{args:?}: {}", answer.body);
        let json = answer.json();
        assert_eq!(json["code"], code, "{args:?}: {json}");
        assert!(json["message"].as_str().unwrap().contains(says), "{args:?}: {json}");
        assert_eq!(json["details"], serde_json::json!([]));
    }
    let wrong = curl(&s, &["/api/v1/monitoring/cleanup"]).await;
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("post")), "{}", wrong.headers);
    // Every call is counted by its RPC, never by its raw path.
    let metrics = scrape(s.metrics_addr).await;
    assert!(metrics.contains("method=\"/maestro.v1.ResourceService/GetHistory\""), "{metrics}");
    assert!(!metrics.contains("/api/v1"), "no raw HTTP path is a label");
}

#[tokio::test]
async fn roles_hold_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "r-token,reader,read\na-token,ops,admin\n").unwrap();
    let mut config = test_config();
    config.server.auth_token_file = Some(file);
    config.server.public_telemetry = false;
    let s = start_server(config).await;
    let none = curl(&s, &["/api/v1/monitoring/status"]).await;
    assert_eq!((none.status, none.json()["code"].clone()), (401, 16.into()), "{}", none.body);
    assert_eq!(none.header("www-authenticate"), Some("bearer"), "headers are read lower-cased");
    let read = ["-H", "Authorization: Bearer r-token"];
    assert_eq!(curl(&s, &[read[0], read[1], "/api/v1/monitoring/status"]).await.status, 200);
    let denied = curl(&s, &[read[0], read[1], "-X", "POST", "/api/v1/monitoring/cleanup"]).await;
    assert_eq!((denied.status, denied.json()["code"].clone()), (403, 7.into()), "{}", denied.body);
    assert!(denied.body.contains("admin"), "{}", denied.body);
    let admin =
        curl(&s, &["-H", "Authorization: Bearer a-token", "-X", "POST", "/api/v1/monitoring/cleanup"]).await;
    assert_eq!(admin.status, 200, "{}", admin.body);
}

#[tokio::test]
async fn streams_as_server_sent_events_and_ndjson() {
    let s = server().await;
    let sse = ["-N", "-H", "Accept: text/event-stream", "--max-time", "2"];
    let answer = curl(
        &s,
        &[sse[0], sse[1], sse[2], sse[3], sse[4], "/api/v1/monitoring/status/stream?interval_ms=200"],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    assert!(answer.body.starts_with("retry: 2000\n\n"), "{}", answer.body);
    let events: Vec<(u64, Value)> = answer
        .body
        .split("\n\n")
        .filter_map(|e| {
            let id = e.lines().find_map(|l| l.strip_prefix("id: "))?.parse().ok()?;
            let data = serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: "))?).ok()?;
            Some((id, data))
        })
        .collect();
    assert!(events.len() >= 3, "successive snapshots in 2 s at 200 ms: {}", answer.body);
    for pair in events.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "ids count up");
        let seq = |v: &Value| v["sequence"].as_str().unwrap().parse::<u64>().unwrap();
        assert!(seq(&pair[1].1) > seq(&pair[0].1), "later samples");
    }
    let ndjson =
        curl(&s, &["-N", "--max-time", "1", "/api/v1/monitoring/report/stream?interval_ms=200"]).await;
    assert_eq!(ndjson.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = ndjson.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 2 && lines.iter().all(|l| l.get("snapshot").is_some()), "{}", ndjson.body);
    // A refused stream is an HTTP error, not an empty stream.
    let bad = curl(&s, &["/api/v1/monitoring/status/stream?interval_ms=3"]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[cfg(feature = "torch")]
mod music {
    //! Music over plain HTTP from the tiny model: the same samples as gRPC's, in four formats.

    use super::*;
    use common::model_config;
    use tokio_stream::StreamExt;

    const BODY: &str = r#"{"model":"maestro/musicgen-tiny","prompt":"a calm piano","duration_s":1.0,"seed":"7","chunk_ms":100}"#;

    /// The interleaved s16 samples of the same generation over gRPC.
    async fn grpc_samples(s: &mut TestServer, format: pb::AudioFormat) -> (pb::Header, Vec<u8>) {
        let request = pb::GenerateRequest {
            model: "maestro/musicgen-tiny".into(),
            prompt: "a calm piano".into(),
            duration_s: 1.0,
            seed: Some(7),
            chunk_ms: 100,
            format: format as i32,
            ..Default::default()
        };
        let mut stream = s.generation.generate(request).await.unwrap().into_inner();
        let (mut header, mut data) = (None, Vec::new());
        while let Some(message) = stream.next().await {
            match message.unwrap().payload.unwrap() {
                pb::generate_response::Payload::Header(h) => header = Some(h),
                pb::generate_response::Payload::Chunk(c) => data.extend(c.data),
                pb::generate_response::Payload::Summary(_) => {}
            }
        }
        (header.unwrap(), data)
    }

    /// `bytes` decoded by ffmpeg to `-f codec` at `rate` Hz, mono.
    fn ffmpeg(bytes: &[u8], codec: &str, rate: u32) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in");
        std::fs::write(&file, bytes).unwrap();
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&file)
            .args(["-f", codec, "-ac", "1", "-ar", &rate.to_string(), "-"])
            .output()
            .expect("ffmpeg runs (scripts/provision-tools.sh installs it)");
        assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[tokio::test]
    async fn generate_answers_with_playable_music_in_four_formats() {
        let mut s = start_server(model_config()).await;
        let (header, pcm) = grpc_samples(&mut s, pb::AudioFormat::PcmS16le).await;
        assert_eq!(header.channels, 1, "the tiny model is mono");
        let rate = header.sample_rate;

        // curl's */* gets WAV, sample for sample the gRPC PCM, its sizes exact in the header.
        let wav = curl(&s, &["-d", BODY, "/api/v1/generate"]).await;
        assert_eq!(wav.status, 200, "{}", wav.body);
        assert_eq!(wav.header("content-type"), Some("audio/wav"));
        assert_eq!(wav.header("x-maestro-seed"), Some("7"));
        assert_eq!(wav.header("x-maestro-sample-rate"), Some(rate.to_string().as_str()));
        assert_eq!(wav.header("x-maestro-model"), Some("maestro/musicgen-tiny"));
        let reader = hound::WavReader::new(std::io::Cursor::new(&wav.bytes)).unwrap();
        assert_eq!((reader.spec().sample_rate, reader.len() as u64), (rate, header.expected_samples));
        let samples: Vec<u8> = reader.into_samples::<i16>().flat_map(|s| s.unwrap().to_le_bytes()).collect();
        assert_eq!(samples, pcm, "WAV = gRPC PCM");

        // FLAC is lossless; the query wins over Accept and the body.
        let flac = curl(&s, &["-H", "Accept: audio/mpeg", "-d", BODY, "/api/v1/generate?format=flac"]).await;
        assert_eq!(flac.header("content-type"), Some("audio/flac"), "{}", flac.headers);
        assert_eq!(ffmpeg(&flac.bytes, "s16le", rate), pcm, "FLAC decodes to the same samples");

        // Opus (by Accept) and MP3 (by the body's format) decode to the duration asked ± 0.1 s.
        let opus = curl(&s, &["-H", "Accept: audio/ogg; codecs=opus", "-d", BODY, "/api/v1/generate"]).await;
        assert_eq!(opus.header("content-type"), Some("audio/ogg; codecs=opus"), "{}", opus.headers);
        let mp3_body = BODY.replace("\"chunk_ms\":100", "\"chunk_ms\":100,\"format\":\"AUDIO_FORMAT_MP3\"");
        let mp3 = curl(&s, &["-d", &mp3_body, "/api/v1/generate"]).await;
        assert_eq!(mp3.header("content-type"), Some("audio/mpeg"), "{}", mp3.headers);
        for (name, bytes) in [("opus", &opus.bytes), ("mp3", &mp3.bytes)] {
            let decoded = ffmpeg(bytes, "f32le", 48_000);
            let seconds = decoded.len() as f64 / 4.0 / 48_000.0;
            assert!((seconds - 1.0).abs() <= 0.1, "{name}: {seconds} s");
        }

        // gRPC clients get the same files: the chunks concatenate into one.
        let (_, flac_grpc) = grpc_samples(&mut s, pb::AudioFormat::Flac).await;
        assert_eq!(ffmpeg(&flac_grpc, "s16le", rate), pcm, "gRPC FLAC chunks make one file");

        // A failure before the first byte is a JSON error.
        let missing =
            curl(&s, &["-d", r#"{"model":"nobody/none","prompt":"x","duration_s":1}"#, "/api/v1/generate"])
                .await;
        assert_eq!((missing.status, missing.json()["code"].clone()), (404, 5.into()), "{}", missing.body);
        let bad = curl(&s, &["-d", BODY, "/api/v1/generate?format=aiff"]).await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert!(bad.body.contains("format"), "{}", bad.body);
    }

    #[tokio::test]
    async fn a_client_gone_mid_generation_gives_back_its_lease_and_slot() {
        let mut s = start_server(model_config()).await;
        // 30 s of audio in 20 ms chunks, and a client that leaves after a second of it.
        let long = BODY
            .replace("\"duration_s\":1.0", "\"duration_s\":30.0")
            .replace("\"chunk_ms\":100", "\"chunk_ms\":20");
        let gone = curl(&s, &["--max-time", "1", "-d", &long, "/api/v1/generate"]).await;
        assert!(
            gone.bytes.len() > 44,
            "some audio arrived before the client left: {} bytes",
            gone.bytes.len()
        );
        assert_eq!(gone.header("content-type"), Some("audio/wav"));
        common::eventually(
            "the generation's lease and queue slot given back",
            Duration::from_secs(30),
            async || {
                let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
                let generating = report.leases.iter().any(|l| l.kind == "generation");
                (!generating && report.queue.is_empty()).then_some(())
            },
        )
        .await;
    }

    /// Half a second of a 440 Hz tone at 44.1 kHz stereo, as a WAV file.
    fn prompt_wav() -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..22_050 {
            let x = ((i as f64 * 440.0 * std::f64::consts::TAU / 44_100.0).sin() * 8000.0) as i16;
            writer.write_sample(x).unwrap();
            writer.write_sample(x).unwrap();
        }
        writer.finalize().unwrap();
        out.into_inner()
    }

    #[tokio::test]
    async fn an_audio_prompt_comes_as_a_form_file_or_as_base64_alike() {
        use base64::Engine;
        let s = start_server(model_config()).await;
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("clip.wav");
        std::fs::write(&clip, prompt_wav()).unwrap();
        let form_file = format!("audio_prompt=@{}", clip.display());
        let request = format!("request={}", BODY.replace("\"duration_s\":1.0,", ""));
        let form =
            curl(&s, &["-F", &request, "-F", &form_file, "-F", "duration_s=0.5", "/api/v1/generate"]).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let conversions = form.header("x-maestro-input-conversions").unwrap_or_default().to_string();
        assert!(conversions.contains("44100") && conversions.contains("2 channels"), "{conversions}");

        let data = base64::engine::general_purpose::STANDARD.encode(prompt_wav());
        let json = BODY.replace("\"duration_s\":1.0", &format!("\"duration_s\":0.5,\"audio_prompt\":{{\"data\":\"{data}\",\"encoding\":\"AUDIO_ENCODING_WAV\"}}"));
        let inline = curl(&s, &["-d", &json, "/api/v1/generate"]).await;
        assert_eq!(inline.status, 200, "{}", inline.body);
        assert!(form.bytes.len() > 44 && form.bytes == inline.bytes, "the same generation either way");

        let broken = curl(&s, &["-F", "request=[1]", "/api/v1/generate"]).await;
        assert_eq!(broken.status, 400, "{}", broken.body);
        assert!(broken.body.contains("request"), "{}", broken.body);
    }
}
