//! A real `maestro-server` for the benchmarks that measure through the service: started on a free
//! port over the benchmark cache's model root, stopped on drop, and `Generate` timed by the client.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use maestro_proto::{
    self as pb, generate_response::Payload, generation_service_client::GenerationServiceClient,
};
use tonic::transport::Channel;

use crate::common::{cache, SMALL_SHAPE};

const BIN: &str = env!("CARGO_BIN_EXE_maestro-server");

/// The prompt of every request.
pub const PROMPT: &str = "80s pop track with bassy drums and synth";

/// A running server, killed on drop.
pub struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the server with 2 libtorch threads and `extra` flags, serving `~/.cache/maestro`.
    pub fn start(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "127.0.0.1:0"])
            .args(["--model-root", cache().to_str().unwrap(), "--torch-threads", "2", "--log-level", "warn"])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .expect("start maestro-server");
        Self { child, port }
    }

    /// A channel to it, once it accepts.
    pub async fn channel(&self) -> Channel {
        loop {
            match Channel::from_shared(format!("http://127.0.0.1:{}", self.port)).unwrap().connect().await {
                Ok(c) => return c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request for `seconds` of audio from the small shape, chunks of 0.5 s.
pub fn request(seconds: f64, seed: u64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: SMALL_SHAPE.into(),
        prompt: PROMPT.into(),
        duration_s: seconds,
        seed: Some(seed),
        chunk_ms: 500,
        ..Default::default()
    }
}

/// One `Generate`, timed by the client.
pub struct Timed {
    /// Seconds from the call to the first audio chunk.
    pub first_chunk_s: f64,
    /// Decoding steps (frames plus the delay pattern's) per second of the whole call.
    pub steps_per_s: f64,
    /// The server's own figure: steps per second of decoder passes and sampling alone.
    pub decode_steps_per_s: f64,
    pub frames: u32,
    pub batch: u32,
}

/// Runs `req` to its summary.
pub async fn generate(channel: Channel, req: pb::GenerateRequest) -> Timed {
    let start = Instant::now();
    let mut stream =
        GenerationServiceClient::new(channel).generate(req).await.expect("generate").into_inner();
    let mut first = None;
    while let Some(item) = stream.next().await {
        match item.expect("stream").payload.expect("payload") {
            Payload::Chunk(_) => {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64());
            }
            Payload::Summary(s) => {
                let steps = f64::from(s.frames + 3);
                return Timed {
                    first_chunk_s: first.unwrap_or(0.0),
                    steps_per_s: steps / start.elapsed().as_secs_f64(),
                    decode_steps_per_s: s.steps_per_second,
                    frames: s.frames,
                    batch: s.batch_size,
                };
            }
            Payload::Header(_) => {}
        }
    }
    panic!("no summary")
}

/// Loads the small shape on the CPU in `dtype` (unloading what was loaded) and warms it up.
pub async fn load(channel: &Channel, dtype: &str) {
    let mut client = GenerationServiceClient::new(channel.clone());
    let _ = client.unload_model(pb::UnloadModelRequest { model: SMALL_SHAPE.into(), force: false }).await;
    let load = pb::LoadModelRequest {
        model: SMALL_SHAPE.into(),
        device: "cpu".into(),
        dtype: dtype.into(),
        pin: false,
    };
    client.load_model(load).await.unwrap_or_else(|e| panic!("load {dtype}: {e}"));
    generate(channel.clone(), request(0.1, 0)).await;
}
