//! deploy/prometheus and deploy/grafana through a real Prometheus: `promtool test rules` on the
//! rules' unit tests, then Prometheus (Debian's package, started here on a free loopback port with a
//! temporary config and the rules loaded) scraping a real Maestro every second while it generates,
//! and every rule expression and every dashboard panel expression (variables substituted) evaluated
//! through `/api/v1/query`: none may fail, and each returns data unless its series exist only on a
//! GPU host (listed below).

mod common;
mod deploy_common;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use common::{eventually, start_server, test_config, TestServer};
use deploy_common::{path_tool, repo, run, str_at, yaml_file};
use futures::StreamExt;
use maestro_proto as pb;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Rules and panels whose series exist only where NVML reports a GPU: they must evaluate, and may be
/// empty on this CPU host. Alerts by name, panels by title.
const GPU_ONLY: [&str; 4] =
    ["MaestroGpuTemperatureHigh", "MaestroGpuTemperatureCritical", "GPU memory", "GPU temperature"];

/// How long Prometheus may take to start, scrape and evaluate before the test fails (a bound on a
/// hang, not an assertion about speed).
const WITHIN: Duration = Duration::from_secs(90);

/// Comparison operators an alert's `SIGNAL OP THRESHOLD` may use (deploy/prometheus/rules.yaml).
const COMPARISONS: [&str; 5] = [" >= ", " <= ", " > ", " < ", " == "];

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let mut check = path_tool("promtool");
    check.args(["check", "rules"]).arg(repo().join("deploy/prometheus/rules.yaml"));
    run(check);
    let mut test = path_tool("promtool");
    test.args(["test", "rules"]).arg(repo().join("deploy/prometheus/rules_test.yaml"));
    let out = run(test);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"), "{out:?}");
}

/// One expression to evaluate: where it comes from, the PromQL, and whether it must return data.
#[derive(Debug)]
struct Expr {
    source: String,
    promql: String,
    must_have_data: bool,
}

/// Every expression of rules.yaml; for an alert also its SIGNAL, which must have data.
fn rule_exprs() -> Vec<Expr> {
    let rules = yaml_file("deploy/prometheus/rules.yaml");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let promql = str_at(rule, "/expr").to_string();
            let gpu = GPU_ONLY.iter().any(|g| rule["alert"] == *g);
            if let Some(alert) = rule["alert"].as_str() {
                let op = COMPARISONS.iter().filter_map(|op| promql.rfind(op).map(|at| (at, op))).max();
                let (at, _) = op.unwrap_or_else(|| panic!("{alert}: written SIGNAL OP THRESHOLD: {promql}"));
                let signal = promql[..at].to_string();
                out.push(Expr {
                    source: format!("alert {alert} (signal)"),
                    promql: signal,
                    must_have_data: !gpu,
                });
                out.push(Expr { source: format!("alert {alert}"), promql, must_have_data: false });
            } else {
                let name = str_at(rule, "/record");
                out.push(Expr { source: format!("record {name}"), promql, must_have_data: true });
            }
        }
    }
    out
}

/// Every panel target of the dashboard, with its template variables substituted as Grafana would
/// for "All" replicas.
fn panel_exprs() -> Vec<Expr> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/maestro.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = str_at(panel, "/title");
        for target in panel["targets"].as_array().unwrap() {
            let promql = str_at(target, "/expr").replace("$instance", ".*").replace("$__rate_interval", "1m");
            assert!(!promql.contains('$'), "{title}: a variable left in {promql}");
            let gpu = GPU_ONLY.contains(&title);
            out.push(Expr { source: format!("panel {title:?}"), promql, must_have_data: !gpu });
        }
    }
    out
}

#[test]
fn the_gpu_only_list_names_exactly_the_expressions_on_gpu_series() {
    let all: Vec<Expr> = rule_exprs().into_iter().chain(panel_exprs()).collect();
    assert!(all.len() > 20, "{all:?}");
    for e in &all {
        let on_gpu = e.promql.contains("maestro_gpu_");
        let listed = GPU_ONLY.iter().any(|g| e.source.contains(g));
        assert_eq!(on_gpu, listed, "{}: {}", e.source, e.promql);
    }
}

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus on a free loopback port, scraping `target` every second with the rules loaded.
fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let rules = repo().join("deploy/prometheus/rules.yaml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: maestro\n    static_configs:\n      - targets: [\"{target}\"]\n",
        rules.display()
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let addr = free_port();
    let child = path_tool("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("prometheus.log")).unwrap()))
        .spawn()
        .expect("prometheus starts");
    Prometheus { child, addr, _dir: dir }
}

/// A loopback address with a port nothing listens on now.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// One HTTP/1.0 GET (so the body is not chunked and ends at close): status and body.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut socket = TcpStream::connect(addr).await.ok()?;
    socket.write_all(format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").as_bytes()).await.ok()?;
    let mut raw = String::new();
    socket.read_to_string(&mut raw).await.ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Evaluates `promql` now: the result vector, or panics with Prometheus's error.
async fn query(prometheus: &Prometheus, source: &str, promql: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", percent_encode(promql));
    let (status, body) = get(prometheus.addr, &path).await.expect("Prometheus answers");
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{source}: {e}: {body}"));
    assert!(status == 200 && answer["status"] == "success", "{source}: {promql}\n{status} {body}");
    match answer["data"]["resultType"].as_str() {
        Some("vector") => answer["data"]["result"].as_array().unwrap().clone(),
        other => panic!("{source}: {promql}: an instant vector, not {other:?}"),
    }
}

/// Runs one short generation of the tiny model to its summary.
async fn generate(server: &mut TestServer, seed: u64) {
    let request = pb::GenerateRequest {
        model: "maestro/musicgen-tiny".into(),
        prompt: "a calm piano".into(),
        duration_s: 0.5,
        seed: Some(seed),
        ..Default::default()
    };
    let mut stream = server.generation.generate(request).await.unwrap().into_inner();
    while let Some(item) = stream.next().await {
        item.unwrap();
    }
}

/// The value of the single sample `promql` gives (NaN when none).
async fn scalar(prometheus: &Prometheus, promql: &str) -> f64 {
    let result = query(prometheus, promql, promql).await;
    result.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rule_and_panel_expression_evaluates_against_a_real_scraped_server() {
    let mut config = test_config();
    config.models.roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("models")];
    let mut server = start_server(config).await;
    let prometheus = start_prometheus(server.metrics_addr);
    eventually("Prometheus ready", WITHIN, async || {
        get(prometheus.addr, "/-/ready").await.filter(|(status, _)| *status == 200)
    })
    .await;
    eventually("Maestro scraped", WITHIN, async || {
        (scalar(&prometheus, "up{job=\"maestro\"}").await == 1.0).then_some(())
    })
    .await;
    // Two generations with a scrape between them, so every counter and histogram has grown inside
    // the rate windows (a series first seen already at 1 has no increase yet).
    generate(&mut server, 1).await;
    eventually("the first generation scraped", WITHIN, async || {
        (scalar(&prometheus, "sum(maestro_generations_total)").await >= 1.0).then_some(())
    })
    .await;
    generate(&mut server, 2).await;
    eventually("the second generation scraped", WITHIN, async || {
        (scalar(&prometheus, "sum(maestro_generations_total)").await >= 2.0).then_some(())
    })
    .await;

    let exprs: Vec<Expr> = rule_exprs().into_iter().chain(panel_exprs()).collect();
    for e in &exprs {
        if e.must_have_data {
            // Recording rules evaluate every second: wait for their first round after the scrape.
            let what = format!("{}: data for {}", e.source, e.promql);
            eventually(&what, WITHIN, async || {
                let result = query(&prometheus, &e.source, &e.promql).await;
                let finite = result.iter().any(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"));
                finite.then_some(())
            })
            .await;
        } else {
            query(&prometheus, &e.source, &e.promql).await;
        }
    }
    let with_data = exprs.iter().filter(|e| e.must_have_data).count();
    eprintln!("{} expressions evaluated, {with_data} with data", exprs.len());
}
