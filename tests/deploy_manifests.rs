//! deploy/kubernetes through the real tools and a real server: each overlay rendered with `kubectl
//! kustomize`, every built-in document passing `kubernetes-validate --strict` for Kubernetes 1.33,
//! the ServiceMonitor (a CRD the validator has no schema for) checked field by field, and the
//! rendered Deployment read against the configuration it mounts, the drain timings, musicgen-small's
//! requirements and the metric the HPA scales on, the NetworkPolicy against the ports it admits, and
//! the example token file.

mod common;
mod deploy_common;

use std::{collections::HashMap, io::Write, net::SocketAddr};

use common::{scrape, scripted_gpu, start_server_on_scripted_gpus, test_config, ScriptedSampler};
use deploy_common::{run, str_at, venv_tool, yaml_documents, yaml_file};
use maestro::config::Config;
use maestro_proto as pb;
use serde_json::Value;

const OVERLAYS: [&str; 2] = ["gpu", "cpu"];

/// The Kubernetes version the manifests target.
const KUBERNETES: &str = "1.33.0";

/// Seconds the kubelet's grace must leave beyond drain grace + drain deadline (the process's exit
/// after the drain, the kubelet's own timing).
const MARGIN_S: f64 = 5.0;

/// API groups whose documents are custom resources (no schema in kubernetes-validate).
const CRD_GROUPS: [&str; 1] = ["monitoring.coreos.com/"];

/// `kubectl kustomize deploy/kubernetes/overlays/<overlay>` as documents.
fn render(overlay: &str) -> Vec<Value> {
    let mut kubectl = venv_tool("kubectl");
    kubectl.arg("kustomize").arg(deploy_common::repo().join("deploy/kubernetes/overlays").join(overlay));
    yaml_documents(&String::from_utf8(run(kubectl).stdout).unwrap())
}

/// The one document of `kind`.
fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the rendered overlay");
    found[0]
}

fn is_custom(doc: &Value) -> bool {
    CRD_GROUPS.iter().any(|g| str_at(doc, "/apiVersion").starts_with(g))
}

/// Runs kubernetes-validate --strict on `docs` (one YAML stream); returns whether it passed and
/// what it printed.
fn validate(docs: &[&Value]) -> (bool, String) {
    let mut file = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
    for doc in docs {
        write!(file, "---\n{}", serde_norway::to_string(doc).unwrap()).unwrap();
    }
    let out = venv_tool("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES])
        .arg(file.path())
        .output()
        .expect("kubernetes-validate runs");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

#[test]
fn every_built_in_document_of_each_overlay_passes_kubernetes_validate_strict() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let (custom, built_in): (Vec<&Value>, Vec<&Value>) = docs.iter().partition(|d| is_custom(d));
        let kinds: Vec<&str> = custom.iter().map(|d| str_at(d, "/kind")).collect();
        assert_eq!(
            kinds,
            ["ServiceMonitor"],
            "{overlay}: the only custom resource (checked by its own test)"
        );
        let (passed, printed) = validate(&built_in);
        assert!(passed, "{overlay}: kubernetes-validate --strict -k {KUBERNETES}:\n{printed}");
        let checked = printed.matches("passed for resource").count();
        assert_eq!(checked, built_in.len(), "{overlay}: every built-in document checked:\n{printed}");
        assert!(!printed.contains("WARN"), "{overlay}: {printed}");
    }
}

#[test]
fn strict_validation_refuses_a_misspelt_field() {
    let docs = render("cpu");
    let mut deployment = one(&docs, "Deployment").clone();
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = serde_json::json!({});
    let (passed, printed) = validate(&[&deployment]);
    assert!(!passed, "a field Kubernetes does not know must fail --strict:\n{printed}");
}

#[test]
fn the_service_monitor_has_its_required_fields_and_scrapes_the_metrics_port() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let monitor = one(&docs, "ServiceMonitor");
        assert_eq!(str_at(monitor, "/apiVersion"), "monitoring.coreos.com/v1");
        assert!(!str_at(monitor, "/metadata/name").is_empty());
        let service = one(&docs, "Service");
        let selector = monitor.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
        let selector = selector.filter(|s| !s.is_empty()).expect("spec.selector.matchLabels (required)");
        for (key, value) in selector {
            assert_eq!(
                &service["metadata"]["labels"][key], value,
                "{overlay}: the selector picks the Service"
            );
        }
        let endpoints = monitor["spec"]["endpoints"].as_array().filter(|e| !e.is_empty());
        let port_names: Vec<&str> = ports(service).iter().map(|p| str_at(p, "/name")).collect();
        for endpoint in endpoints.expect("spec.endpoints (required, not empty)") {
            assert!(
                port_names.contains(&str_at(endpoint, "/port")),
                "{overlay}: {endpoint} names a Service port"
            );
            assert_eq!(str_at(endpoint, "/path"), "/metrics");
            let interval = str_at(endpoint, "/interval");
            assert!(
                interval.ends_with('s') && interval.trim_end_matches('s').parse::<u32>().is_ok(),
                "{interval}"
            );
        }
    }
}

fn ports(v: &Value) -> &Vec<Value> {
    v.pointer("/spec/ports").or_else(|| v.get("ports")).and_then(Value::as_array).expect("ports")
}

/// A Kubernetes quantity in bytes (or units): `5Gi`, `512Mi`, `4G`, `1`.
fn quantity(q: &Value) -> f64 {
    let text = q.as_str().map(str::to_string).unwrap_or_else(|| q.to_string());
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("k", 1_000)];
    let units = units.into_iter().chain([("M", 1_000_000), ("G", 1_000_000_000)]);
    for (suffix, scale) in units {
        if let Some(n) = text.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * scale as f64;
        }
    }
    text.parse().unwrap_or_else(|_| panic!("quantity {text}"))
}

/// The container's environment as name → value.
fn env(container: &Value) -> HashMap<String, String> {
    let vars = container["env"].as_array().cloned().unwrap_or_default();
    vars.iter().map(|e| (str_at(e, "/name").to_string(), str_at(e, "/value").to_string())).collect()
}

/// The container port called `name`.
fn container_port(container: &Value, name: &str) -> u16 {
    let port = ports(container).iter().find(|p| p["name"] == name);
    port.and_then(|p| p["containerPort"].as_u64()).unwrap_or_else(|| panic!("container port {name}")) as u16
}

/// The configuration the pod runs with: the rendered ConfigMap's TOML through Maestro's own loader
/// (unknown keys refused, ranges checked), mounted where `--config` points.
fn mounted_config(docs: &[Value], pod: &Value, container: &Value) -> Config {
    let config_map = one(docs, "ConfigMap");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == config_map["metadata"]["name"]);
    let volume = str_at(volume.expect("a volume of the generated ConfigMap"), "/name");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let path = args.windows(2).find(|w| w[0] == "--config").map(|w| w[1]).expect("--config FILE");
    let mount = container["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume).unwrap();
    assert_eq!(str_at(mount, "/mountPath"), path, "--config names the mounted file");
    let key = str_at(mount, "/subPath");
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    file.write_all(str_at(config_map, &format!("/data/{key}")).as_bytes()).unwrap();
    let (config, _) = Config::load(["maestro-server", "--config", file.path().to_str().unwrap()])
        .unwrap_or_else(|e| panic!("the ConfigMap's {key} does not load: {e}"));
    config
}

/// `MAESTRO_<name>` from the container over the file's value: the environment layers over the file.
fn effective_addr(env: &HashMap<String, String>, var: &str, file: SocketAddr) -> SocketAddr {
    env.get(var).map(|a| a.parse().unwrap()).unwrap_or(file)
}

/// Whether `path` lies under a directory mount of a volume whose source is a Secret: a `subPath`
/// mount never sees the Secret's updates, so the server could not reload what it holds.
fn under_secret_mount(pod: &Value, container: &Value, path: &str) -> bool {
    let secrets: Vec<&Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.get("secret").is_some())
        .map(|v| &v["name"])
        .collect();
    container["volumeMounts"].as_array().unwrap().iter().any(|m| {
        secrets.contains(&&m["name"])
            && m.get("subPath").is_none()
            && path.starts_with(&format!("{}/", str_at(m, "/mountPath")))
    })
}

fn probe_port_and_service(container: &Value, probe: &str) -> (u16, String) {
    let grpc = &container[probe]["grpc"];
    let port = grpc["port"].as_u64().unwrap_or_else(|| panic!("{probe} is a gRPC probe")) as u16;
    (port, grpc["service"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployment_matches_its_config_the_drain_timings_and_the_requirements() {
    // One scripted 80 GB GPU (computing on the CPU), so the memory model answers for cuda:0 too.
    let gpu = scripted_gpu(0, 80_000_000_000, 80_000_000_000, (9, 0));
    let server = start_server_on_scripted_gpus(test_config(), ScriptedSampler::new(20.0).with_gpu(gpu)).await;
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let deployment = one(&docs, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{overlay}: one container");
        let container = &containers[0];
        let config = mounted_config(&docs, pod, container);
        let env = env(container);

        // Ports: the container's named ports are the ones the server listens on, on every address.
        let listen = effective_addr(&env, "MAESTRO_LISTEN", config.server.listen);
        let metrics = effective_addr(&env, "MAESTRO_METRICS_LISTEN", config.server.metrics_listen);
        assert!(
            listen.ip().is_unspecified() && metrics.ip().is_unspecified(),
            "{overlay}: reachable from outside the pod"
        );
        assert_eq!(container_port(container, "grpc"), listen.port(), "{overlay}: grpc port");
        assert_eq!(container_port(container, "metrics"), metrics.port(), "{overlay}: metrics port");

        // Probes: liveness on "", readiness on GenerationService, on the plaintext health port when
        // the main port speaks TLS.
        let health = env.get("MAESTRO_HEALTH_LISTEN").map(|a| a.parse::<SocketAddr>().unwrap());
        let tls = env.get("MAESTRO_TLS_CERT").cloned().or(config
            .server
            .tls_cert
            .as_ref()
            .map(|p| p.display().to_string()));
        let probe_port = match health {
            Some(h) => {
                assert_eq!(container_port(container, "health"), h.port(), "{overlay}: health port");
                h.port()
            }
            None => {
                assert!(
                    tls.is_none(),
                    "{overlay}: TLS on the main port needs MAESTRO_HEALTH_LISTEN for the probes"
                );
                listen.port()
            }
        };
        assert_eq!(
            probe_port_and_service(container, "livenessProbe"),
            (probe_port, String::new()),
            "{overlay}"
        );
        let readiness = probe_port_and_service(container, "readinessProbe");
        assert_eq!(readiness, (probe_port, "maestro.v1.GenerationService".to_string()), "{overlay}");
        assert_eq!(overlay == "gpu", tls.is_some(), "{overlay}: TLS on in the GPU overlay only");
        if let Some(cert) = &tls {
            assert!(under_secret_mount(pod, container, cert), "{overlay}: {cert} comes from a Secret");
            assert!(under_secret_mount(pod, container, &env["MAESTRO_TLS_KEY"]), "{overlay}: the key too");
        }
        let tokens = config
            .server
            .auth_token_file
            .as_ref()
            .expect("bearer tokens on in a cluster")
            .display()
            .to_string();
        assert!(under_secret_mount(pod, container, &tokens), "{overlay}: {tokens} comes from a Secret");
        assert!(!config.server.public_telemetry, "{overlay}: telemetry needs a token in a cluster");

        // Drain: the kubelet waits for the whole worst-case shutdown and a margin before SIGKILL.
        let grace: f64 =
            env.get("MAESTRO_DRAIN_GRACE_S").expect("MAESTRO_DRAIN_GRACE_S set").parse().unwrap();
        let deadline = config.server.drain_deadline.as_secs_f64();
        let overhead = maestro::app::SHUTDOWN_OVERHEAD.as_secs_f64();
        let termination =
            pod["terminationGracePeriodSeconds"].as_f64().expect("terminationGracePeriodSeconds");
        assert!(
            termination >= grace + deadline + overhead + MARGIN_S,
            "{overlay}: {termination} s < {grace} + {deadline} + {overhead} + {MARGIN_S}"
        );
        assert!(
            container["lifecycle"].get("preStop").is_none(),
            "{overlay}: no preStop (the server drains itself)"
        );

        check_resources(overlay, container, &config, &server).await;
        check_security(overlay, pod, container);
        check_service_pdb_hpa(overlay, &docs, deployment, container);
        check_network_policy(overlay, &docs, deployment, container);
    }
    check_adapter_rule(server.metrics_addr).await;
}

/// Host memory for musicgen-small on the pod's device (the GPU in the GPU overlay, else the CPU) at
/// the largest batch and the longest duration the config allows, as the server's memory model says,
/// over the safety margin; requests = limits; one GPU on GPU pods.
async fn check_resources(overlay: &str, container: &Value, config: &Config, server: &common::TestServer) {
    let request = pb::ValidateRequest {
        model: "facebook/musicgen-small".into(),
        batch_size: config.generation.max_batch as u32,
        duration_s: config.generation.max_duration_s,
        device: if overlay == "gpu" { "cuda:0" } else { "cpu" }.into(),
        ..Default::default()
    };
    let verdict = server.resources.clone().validate_model(request).await.unwrap().into_inner();
    let host = verdict.checks.iter().find(|c| c.resource == "host_memory").expect("a host_memory line");
    let needed = host.required / (1.0 - config.resources.safety_margin);
    let resources = &container["resources"];
    let memory = quantity(&resources["requests"]["memory"]);
    assert_eq!(
        resources["requests"]["memory"], resources["limits"]["memory"],
        "{overlay}: memory requests = limits"
    );
    eprintln!("{overlay}: musicgen-small needs {} host bytes, {needed} with the margin", host.required);
    assert!(
        memory >= needed,
        "{overlay}: memory {memory} < musicgen-small's {} / (1 - margin) = {needed}",
        host.required
    );
    let gpus = (&resources["requests"]["nvidia.com/gpu"], &resources["limits"]["nvidia.com/gpu"]);
    match overlay {
        "gpu" => {
            assert!(quantity(gpus.0) == 1.0 && quantity(gpus.1) == 1.0, "{overlay}: one GPU: {resources}")
        }
        _ => assert!(gpus.0.is_null() && gpus.1.is_null(), "{overlay}: no GPU: {resources}"),
    }
}

/// Non-root, read-only root filesystem, no privilege escalation; only emptyDir volumes are writable.
fn check_security(overlay: &str, pod: &Value, container: &Value) {
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{overlay}");
    assert!(pod["securityContext"]["runAsUser"].as_u64().is_some_and(|u| u > 0), "{overlay}");
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}");
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{overlay}");
    let volumes = pod["volumes"].as_array().unwrap();
    let mut writable = Vec::new();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("a mounted volume exists");
        if mount["readOnly"] != true {
            assert!(volume.get("emptyDir").is_some(), "{overlay}: writable mount {mount} is an emptyDir");
            writable.push(str_at(mount, "/mountPath"));
        }
    }
    assert!(writable.contains(&"/tmp"), "{overlay}: /tmp is writable");
}

/// The headless Service, the PDB and the HPA all point at this Deployment's pods.
fn check_service_pdb_hpa(overlay: &str, docs: &[Value], deployment: &Value, container: &Value) {
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value| selector.as_object().unwrap().iter().all(|(k, v)| &labels[k] == v);
    let service = one(docs, "Service");
    assert_eq!(service["spec"]["clusterIP"], "None", "{overlay}: headless");
    assert!(selects(&service["spec"]["selector"]), "{overlay}: the Service selects the pods");
    for port in ports(service) {
        let target = str_at(port, "/targetPort");
        container_port(container, target);
    }
    let pdb = one(docs, "PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"]), "{overlay}: the PDB covers the pods");
    let hpa = one(docs, "HorizontalPodAutoscaler");
    assert_eq!(str_at(hpa, "/apiVersion"), "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    let metric = &hpa["spec"]["metrics"][0];
    assert_eq!(str_at(metric, "/type"), "Pods", "{overlay}");
    let rule = yaml_file("deploy/kubernetes/base/prometheus-adapter-rules.yaml");
    assert_eq!(
        metric["pods"]["metric"]["name"], rule["rules"][0]["name"]["as"],
        "{overlay}: the adapter serves it"
    );
}

/// The namespace Prometheus runs in, admitted to the HTTP port by the base.
const MONITORING: &str = "monitoring";

/// The NetworkPolicy selects the Deployment's pods and admits, on the ports the Service and the
/// container name: gRPC from every namespace, the HTTP port from the monitoring namespace and the
/// overlay's ingress namespace, and nothing else.
fn check_network_policy(overlay: &str, docs: &[Value], deployment: &Value, container: &Value) {
    let policy = one(docs, "NetworkPolicy");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = policy["spec"]["podSelector"]["matchLabels"].as_object().expect("podSelector.matchLabels");
    assert!(selector.iter().all(|(k, v)| &labels[k] == v), "{overlay}: the policy selects the pods");
    assert_eq!(policy["spec"]["policyTypes"], serde_json::json!(["Ingress"]), "{overlay}");
    let service = one(docs, "Service");
    let service_target = |name: &str| {
        let port = ports(service).iter().find(|p| p["name"] == name);
        str_at(port.unwrap_or_else(|| panic!("{overlay}: Service port {name}")), "/targetPort").to_string()
    };
    let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
    let mut admitted: Vec<(u16, Vec<String>)> = rules
        .iter()
        .map(|rule| {
            let ports = ports(rule);
            assert_eq!(ports.len(), 1, "{overlay}: one port a rule: {rule}");
            assert_eq!(str_at(&ports[0], "/protocol"), "TCP");
            let name = str_at(&ports[0], "/port");
            assert_eq!(service_target(name), name, "{overlay}: the Service sends {name} to that port");
            (container_port(container, name), rule_namespaces(overlay, rule))
        })
        .collect();
    admitted.sort();
    let (grpc, metrics) = (container_port(container, "grpc"), container_port(container, "metrics"));
    let ingress = overlay_ingress_namespace(overlay);
    let mut expected = vec![(grpc, vec!["*".to_string()]), (metrics, vec![MONITORING.to_string(), ingress])];
    expected.sort();
    assert_eq!(admitted, expected, "{overlay}: gRPC from the cluster, HTTP from monitoring and ingress");
}

/// The namespaces a rule admits from, by name (`*` for every namespace); only namespace selectors.
fn rule_namespaces(overlay: &str, rule: &Value) -> Vec<String> {
    let from = rule["from"].as_array().expect("from");
    from.iter()
        .map(|peer| {
            let keys: Vec<&String> = peer.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["namespaceSelector"], "{overlay}: namespaces only: {peer}");
            let labels = peer["namespaceSelector"]["matchLabels"].as_object();
            match labels.filter(|l| !l.is_empty()) {
                None => "*".to_string(),
                Some(l) => str_at(&Value::Object(l.clone()), "/kubernetes.io~1metadata.name").to_string(),
            }
        })
        .collect()
}

/// The ingress namespace the overlay's patch names.
fn overlay_ingress_namespace(overlay: &str) -> String {
    let path = format!("deploy/kubernetes/overlays/{overlay}/networkpolicy-ingress.yaml");
    let text = std::fs::read_to_string(deploy_common::repo().join(&path)).unwrap();
    let patch: Vec<Value> = serde_norway::from_str(&text).unwrap();
    let name = "/value/namespaceSelector/matchLabels/kubernetes.io~1metadata.name";
    str_at(&patch[0], name).to_string()
}

#[test]
fn the_example_token_file_has_placeholder_tokens_with_known_roles() {
    let path = deploy_common::repo().join("deploy/kubernetes/tokens.example");
    maestro::grpc::auth::Tokens::load(&path).expect("the server reads the example");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
    let mut roles = Vec::new();
    for line in &lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 3, "TOKEN,NAME,ROLE: {line}");
        let placeholder = fields[0].starts_with("REPLACE-ME-")
            || fields[0].strip_prefix("sha256:").is_some_and(|h| h.len() == 64);
        assert!(placeholder, "an obvious placeholder or a hash: {line}");
        roles.push(fields[2]);
    }
    assert_eq!(roles, ["read", "generate", "admin"], "one line for each role");
}

/// The series the adapter rule reads is on a real server's /metrics, with a sample.
async fn check_adapter_rule(metrics_addr: SocketAddr) {
    let rule = yaml_file("deploy/kubernetes/base/prometheus-adapter-rules.yaml");
    let query = str_at(&rule, "/rules/0/seriesQuery");
    let name = query.split('{').next().unwrap();
    let exposition = scrape(metrics_addr).await;
    let sample = exposition.lines().find(|l| l.split([' ', '{']).next() == Some(name));
    assert!(sample.is_some(), "{name} (the adapter's series) is not on /metrics:\n{exposition}");
}
