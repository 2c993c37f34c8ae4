//! Configuration layering: defaults < file < environment < flags, refusal of unknown keys, the
//! environment names, and the options table of `docs/configuration.md` against the declared options.
//! The environment is process-wide: every test that loads a configuration holds [`clean_env`].

use std::{
    io::Write,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use maestro::{
    config::{options, CliError, Config, HubCache, LogFormat, OptionDoc},
    resources::requirements::DType,
};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Serialises the tests that read or set the environment and clears every `MAESTRO_*` variable.
fn clean_env() -> MutexGuard<'static, ()> {
    static ENV: Mutex<()> = Mutex::new(());
    let guard = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MAESTRO_") {
            std::env::remove_var(k);
        }
    }
    guard
}

/// `maestro-server --config <file> <extra...>`.
fn with_file(file: &tempfile::NamedTempFile, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["maestro-server".to_string(), "--config".into(), file.path().to_str().unwrap().into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn load(args: Vec<String>) -> Config {
    Config::load(args).unwrap().0
}

fn load_err(args: Vec<String>) -> String {
    Config::load(args).unwrap_err().to_string()
}

#[test]
fn layers_defaults_file_env_flags_and_refuses_bad_files() {
    let _env = clean_env();
    let (defaults, _) = Config::load(["maestro-server"]).unwrap();
    assert_eq!(defaults.server.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(defaults.server.metrics_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(defaults.server.drain_deadline, Duration::from_secs(10));
    assert_eq!(defaults.models.roots, vec![std::path::PathBuf::from("./models")]);
    assert_eq!(defaults.log.format, LogFormat::Text);
    assert_eq!(defaults.monitor.sample_interval, Duration::from_millis(1000));
    assert_eq!(defaults.monitor.history, Duration::from_secs(300));

    let toml = file(
        "[server]\nlisten = \"127.0.0.1:7001\"\nmetrics_listen = \"127.0.0.1:7101\"\ndrain_deadline_s = 3\n\
         [log]\nformat = \"json\"\nlevel = \"debug\"\n[models]\nroots = [\"/a\", \"/b\"]\n",
    );
    let path = toml.path().to_str().unwrap().to_string();
    let args = |extra: &[&str]| {
        let mut v = vec!["maestro-server".to_string(), "--config".into(), path.clone()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    // The file beats the defaults.
    let (c, _) = Config::load(args(&[])).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:7001");
    assert_eq!(c.server.drain_deadline, Duration::from_secs(3));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.models.roots.len(), 2);

    // The environment beats the file.
    std::env::set_var("MAESTRO_LISTEN", "127.0.0.1:7002");
    std::env::set_var("MAESTRO_LOG_FORMAT", "text");
    let (c, _) = Config::load(args(&[])).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:7002");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.server.metrics_listen.to_string(), "127.0.0.1:7101", "untouched keys keep the file's value");

    // Flags beat the environment.
    let (c, _) =
        Config::load(args(&["--listen", "127.0.0.1:7003", "--model-root", "/x", "--model-root", "/y"]))
            .unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:7003");
    assert_eq!(c.models.roots, vec![std::path::PathBuf::from("/x"), "/y".into()]);
    std::env::remove_var("MAESTRO_LISTEN");
    std::env::remove_var("MAESTRO_LOG_FORMAT");

    // An unknown key is refused, naming the key.
    let bad = file("[server]\nlisten = \"127.0.0.1:7001\"\nlisen = 3\n");
    let err = Config::load(["maestro-server", "--config", bad.path().to_str().unwrap()]).unwrap_err();
    assert!(matches!(err, CliError::Config(_)));
    assert!(err.to_string().contains("lisen"), "{err}");
    let bad = file("[nonsense]\nx = 1\n");
    let err = Config::load(["maestro-server", "--config", bad.path().to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("nonsense"), "{err}");

    // Malformed values name the option.
    let err = Config::load(["maestro-server", "--listen", "nowhere"]).unwrap_err();
    assert!(err.to_string().contains("--listen"), "{err}");
    let err = Config::load(["maestro-server", "--sample-interval-ms", "5"]).unwrap_err();
    assert!(err.to_string().contains("--sample-interval-ms"), "{err}");
    let err = Config::load(["maestro-server", "--dtype", "f8"]).unwrap_err();
    assert!(err.to_string().contains("--dtype") && err.to_string().contains("f8"), "{err}");

    // The on-demand dtype: f32 by default, from the file's [generation] section or the flag.
    assert_eq!(defaults.generation.dtype, DType::F32);
    let with_bf16 = file("[generation]\ndtype = \"bf16\"\n");
    let (c, _) = Config::load(["maestro-server", "--config", with_bf16.path().to_str().unwrap()]).unwrap();
    assert_eq!(c.generation.dtype, DType::Bf16);
    let (c, _) =
        Config::load(["maestro-server", "--config", with_bf16.path().to_str().unwrap(), "--dtype", "f16"])
            .unwrap();
    assert_eq!(c.generation.dtype, DType::F16);
}

/// Each layer beats the one below it, for options of every kind: a fractional duration, a count, a
/// dtype, a boolean, and the sections that were file-only before (`[health]`, `[alerts]`).
#[test]
fn each_layer_beats_the_one_below_for_every_kind_of_option() {
    let _env = clean_env();
    let toml = file(
        "[server]\ndrain_deadline_s = 2.5\npublic_telemetry = false\n[generation]\nmax_batch = 8\n\
         dtype = \"f16\"\n[health]\nmoderate_percent = 60\n[alerts]\nleak_sustain_s = 60\n",
    );
    let probe = |c: &Config| {
        (
            c.server.drain_deadline,
            c.server.public_telemetry,
            c.generation.max_batch,
            c.generation.dtype,
            c.health.thresholds().moderate_percent,
            c.alerts.rules().leak_sustain,
        )
    };
    let secs = Duration::from_secs;
    let defaults = load(vec!["maestro-server".into()]);
    assert_eq!(probe(&defaults), (secs(10), true, 4, DType::F32, 70.0, secs(120)));
    assert_eq!(probe(&Config::default()), probe(&defaults));

    let from_file = load(with_file(&toml, &[]));
    assert_eq!(probe(&from_file), (Duration::from_millis(2500), false, 8, DType::F16, 60.0, secs(60)));

    for (name, value) in [
        ("MAESTRO_DRAIN_DEADLINE_S", "4"),
        ("MAESTRO_PUBLIC_TELEMETRY", "true"),
        ("MAESTRO_MAX_BATCH", "16"),
        ("MAESTRO_DTYPE", "bf16"),
        ("MAESTRO_HEALTH_MODERATE_PERCENT", "65"),
        ("MAESTRO_ALERTS_LEAK_SUSTAIN_S", "90"),
    ] {
        std::env::set_var(name, value);
    }
    let from_env = load(with_file(&toml, &[]));
    assert_eq!(probe(&from_env), (secs(4), true, 16, DType::Bf16, 65.0, secs(90)));

    let flags = [
        "--drain-deadline-s=0.5",
        "--public-telemetry=false",
        "--max-batch=2",
        "--dtype=f32",
        "--health-moderate-percent=50",
        "--alerts-leak-sustain-s=30",
    ];
    let from_flags = load(with_file(&toml, &flags));
    assert_eq!(probe(&from_flags), (Duration::from_millis(500), false, 2, DType::F32, 50.0, secs(30)));
    // Options nobody set keep the default, whatever the other layers did.
    assert_eq!(from_flags.server.listen, defaults.server.listen);
    assert_eq!(from_flags.alerts.min_samples, defaults.alerts.min_samples);
}

#[test]
fn unknown_file_keys_are_refused_with_the_whole_key_named() {
    let _env = clean_env();
    for (text, key) in [
        ("[server]\nlisen = 3\n", "`server.lisen`"),
        ("[nonsense]\nx = 1\n", "`nonsense`"),
        ("[health]\nmoderate = 60\n", "`health.moderate`"),
        ("listen = \"127.0.0.1:1\"\n", "`listen`"),
        (
            "[resources.requirements.\"acme/x\"]\nhost_gb = 1\ngpu_gb = 2\nmin_compute_capability = 7\n\
             default_batch_size = 1\nbatch = 2\n",
            "`resources.requirements.\"acme/x\".batch`",
        ),
    ] {
        let err = load_err(with_file(&file(text), &[]));
        assert!(err.contains("invalid config file") && err.contains(key), "{key} not named in: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // A value of the wrong type names its key too.
    let err = load_err(with_file(&file("[server]\nlisten = 3\n"), &[]));
    assert!(err.contains("`server.listen`") && err.contains("socket address"), "{err}");
}

#[test]
fn the_requirements_table_is_read_from_the_file() {
    let _env = clean_env();
    let toml = file(
        "[resources]\nsafety_margin = 0.3\n[resources.requirements.\"acme/musicgen-x\"]\nhost_gb = 1.5\n\
         gpu_gb = 2\nmin_compute_capability = 7\ndefault_batch_size = 1\n",
    );
    let c = load(with_file(&toml, &[]));
    assert_eq!(c.resources.safety_margin, 0.3);
    let entry = &c.resources.requirements["acme/musicgen-x"];
    assert_eq!((entry.host_gb, entry.gpu_gb, entry.default_batch_size), (1.5, 2.0, 1));
    assert!(Config::default().resources.requirements.is_empty());
}

#[test]
fn unrelated_maestro_variables_are_not_options() {
    let _env = clean_env();
    // What the build scripts and benches export, and a typo of a real option.
    std::env::set_var("MAESTRO_VENV", "/opt/venv");
    std::env::set_var("MAESTRO_BENCH_ROUNDS", "not a number");
    std::env::set_var("MAESTRO_LISTEN_ADDR", "nowhere");
    let c = load(vec!["maestro-server".into()]);
    assert_eq!(c.server.listen, Config::default().server.listen);
    // With a file too: the variables do not become unknown keys.
    let c = load(with_file(&file("[server]\nmax_streams = 5\n"), &[]));
    assert_eq!(c.server.max_streams, 5);
}

#[test]
fn model_root_variable_is_colon_separated_and_beats_the_file() {
    let _env = clean_env();
    let toml = file("[models]\nroots = [\"/file/a\"]\n");
    assert_eq!(load(with_file(&toml, &[])).models.roots, vec![PathBuf::from("/file/a")]);
    std::env::set_var("MAESTRO_MODEL_ROOT", "/env/a:/env/b");
    let roots = load(with_file(&toml, &[])).models.roots;
    assert_eq!(roots, vec![PathBuf::from("/env/a"), PathBuf::from("/env/b")]);
    let roots = load(with_file(&toml, &["--model-root", "/flag"])).models.roots;
    assert_eq!(roots, vec![PathBuf::from("/flag")]);
}

#[test]
fn the_hub_cache_is_auto_by_default_and_set_by_file_variable_and_flag() {
    let _env = clean_env();
    assert_eq!(load(vec!["maestro-server".into()]).models.hub_cache, HubCache::Auto);
    let toml = file("[models]\nhub_cache = \"off\"\n");
    assert_eq!(load(with_file(&toml, &[])).models.hub_cache, HubCache::Off);
    std::env::set_var("MAESTRO_HUB_CACHE", "/env/hub");
    assert_eq!(load(with_file(&toml, &[])).models.hub_cache, HubCache::Dir("/env/hub".into()));
    let flag = load(with_file(&toml, &["--hub-cache", "auto", "--model-root", "/m"]));
    assert_eq!((flag.models.hub_cache, flag.models.roots), (HubCache::Auto, vec![PathBuf::from("/m")]));
    let err = load_err(vec!["maestro-server".into(), "--hub-cache".into(), "".into()]);
    assert!(err.contains("--hub-cache") && err.contains("auto, off or a directory"), "{err}");
    // Off searches no cache; a directory is searched even before it exists.
    assert_eq!(HubCache::Off.dir(|_| Some("/x".into())), None);
    assert_eq!(HubCache::Dir("/nowhere".into()).dir(|_| None), Some(PathBuf::from("/nowhere")));
    let absent = |name: &str| (name == "HF_HUB_CACHE").then(|| "/surely/not/here".into());
    assert_eq!(HubCache::Auto.dir(absent), None, "auto uses a cache only when it exists");
    let here = tempfile::tempdir().unwrap();
    let present = here.path().to_owned();
    let found =
        HubCache::Auto.dir(move |name: &str| (name == "HF_HUB_CACHE").then(|| present.clone().into()));
    assert_eq!(found.as_deref(), Some(here.path()));
}

#[test]
fn out_of_range_values_name_the_flag_the_variable_and_the_key() {
    let _env = clean_env();
    let err = load_err(with_file(&file("[resources]\nsafety_margin = 0.95\n"), &[]));
    for needle in ["--safety-margin", "MAESTRO_SAFETY_MARGIN", "resources.safety_margin", "0.9", "0.95"] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    let err = load_err(with_file(&file("[server]\ndrain_deadline_s = 4000\n"), &[]));
    assert!(err.contains("--drain-deadline-s") && err.contains("3600") && err.contains("4000"), "{err}");
    let err = load_err(vec!["maestro-server".into(), "--queue-capacity".into(), "0".into()]);
    assert!(err.contains("--queue-capacity") && err.contains("at least 1, got 0"), "{err}");
    let err = load_err(vec!["maestro-server".into(), "--extend-stride-s".into(), "0".into()]);
    assert!(err.contains("--extend-stride-s") && err.contains("(0, 600], got 0"), "{err}");
    let defaults = Config::default().generation;
    assert_eq!((defaults.max_duration_s, defaults.extend_stride_s), (120.0, 18.0), "audiocraft's stride");
    // The message limit must let audio up to its own limit through.
    let err = load_err(vec!["maestro-server".into(), "--max-message-bytes".into(), "4194304".into()]);
    assert!(
        err.contains("--max-message-bytes") && err.contains("--max-audio-input-bytes (8388608)"),
        "{err}"
    );
    let fits = ["maestro-server", "--max-message-bytes", "5000000", "--max-audio-input-bytes", "4000000"];
    assert_eq!(load(fits.iter().map(|s| s.to_string()).collect()).server.max_message_bytes, 5_000_000);
}

#[test]
fn tls_certificate_and_key_may_come_from_different_layers_but_not_alone() {
    let _env = clean_env();
    let toml = file("[server]\ntls_cert = \"/etc/maestro/cert.pem\"\n");
    let err = load_err(with_file(&toml, &[]));
    assert!(err.contains("--tls-key"), "{err}");
    std::env::set_var("MAESTRO_TLS_KEY", "/etc/maestro/key.pem");
    let tls = load(with_file(&toml, &[])).server.tls().expect("certificate from the file, key from the env");
    assert_eq!((tls.cert, tls.key), ("/etc/maestro/cert.pem".into(), "/etc/maestro/key.pem".into()));
    assert!(Config::default().server.tls().is_none());
}

#[test]
fn default_ignores_the_environment() {
    let _env = clean_env();
    std::env::set_var("MAESTRO_MAX_STREAMS", "7");
    assert_eq!(load(vec!["maestro-server".into()]).server.max_streams, 7);
    assert_eq!(Config::default().server.max_streams, 10_000);
}

/// The configuration table of `docs/configuration.md`, row by row, as the declarations say it must read.
fn expected_rows() -> Vec<String> {
    let code = |s: &str| format!("`{s}`");
    let row = |o: &OptionDoc| {
        let flag = code(&o.flag) + if o.repeatable { " (repeatable)" } else { "" };
        let delimiter = o.env_delimiter.map(|c| format!(" (`{c}`-separated)")).unwrap_or_default();
        let key = o.file_key.as_deref().map(code).unwrap_or_default();
        let default = match o.defaults.as_slice() {
            [] => "none".to_string(),
            values => values.iter().map(|v| code(v)).collect::<Vec<_>>().join(", "),
        };
        format!("| {flag} | {}{delimiter} | {key} | {default} | {} |", code(&o.env), o.help)
    };
    chain_header(options().iter().map(row))
}

const TABLE_HEADER: [&str; 2] =
    ["| flag | environment | file key | default | meaning |", "|---|---|---|---|---|"];

fn chain_header(rows: impl Iterator<Item = String>) -> Vec<String> {
    TABLE_HEADER.into_iter().map(String::from).chain(rows).collect()
}

/// Finds the options table by its header row: (first line index, its rows).
fn options_table(page: &str) -> (usize, Vec<String>) {
    let lines: Vec<&str> = page.lines().collect();
    let start = lines.iter().position(|l| *l == TABLE_HEADER[0]).expect("the options table's header row");
    let rows = lines[start..].iter().take_while(|l| l.starts_with('|')).map(|l| l.to_string()).collect();
    (start, rows)
}

/// The table is generated from the declarations: `UPDATE_DOCS=1 cargo test --no-default-features --test
/// config` rewrites it after an option changes (`UPDATE_README=1`, from when the table was in the
/// README, still works); otherwise any difference fails with the table it should be.
#[test]
fn the_configuration_page_lists_the_declared_options() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let page = std::fs::read_to_string(path).unwrap();
    let (start, rows) = options_table(&page);
    let expected = expected_rows();
    if rows == expected {
        return;
    }
    if ["UPDATE_DOCS", "UPDATE_README"].iter().any(|v| std::env::var_os(v).is_some()) {
        let mut lines: Vec<String> = page.lines().map(String::from).collect();
        lines.splice(start..start + rows.len(), expected);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
        return;
    }
    let first =
        rows.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(rows.len().min(expected.len()));
    panic!(
        "docs/configuration.md's options table differs from the declarations at row {first}:\n  page:   {:?}\n  wanted: {:?}\n\
         Run `UPDATE_DOCS=1 cargo test --no-default-features --test config` to regenerate it. The whole table:\n{}",
        rows.get(first),
        expected.get(first),
        expected.join("\n")
    );
}

#[test]
fn workers_is_a_deprecated_alias_of_workers_per_device_and_devices_is_a_list() {
    let _env = clean_env();
    let args = |extra: &[&str]| {
        let mut v = vec!["maestro-server".to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    assert_eq!(load(args(&[])).generation.per_device_workers(), 1);
    assert_eq!(load(args(&["--workers-per-device", "3"])).generation.per_device_workers(), 3);
    assert_eq!(load(args(&["--workers", "2"])).generation.per_device_workers(), 2);
    // Its old 0 ("one per device") is one per device still.
    assert_eq!(load(args(&["--workers", "0"])).generation.per_device_workers(), 1);
    let err = load_err(args(&["--workers", "2", "--workers-per-device", "3"]));
    assert!(err.contains("--workers (MAESTRO_WORKERS, file generation.workers)"), "{err}");
    assert!(err.contains("which says 3; got 2"), "{err}");

    let c = load(args(&["--devices", "1,GPU-5a1e"]));
    assert_eq!(c.generation.devices, ["1", "GPU-5a1e"]);
    let f = file("[generation]\nworkers = 4\ndevices = [\"0\"]\n");
    let c = load(with_file(&f, &[]));
    assert_eq!((c.generation.per_device_workers(), c.generation.devices.clone()), (4, vec!["0".to_string()]));
    let err = load_err(args(&["--devices", "0,0"]));
    assert!(err.contains("--devices") && err.contains("once each, got \"0,0\""), "{err}");
}

/// `--cpu-isa` parses every level, refuses others, and a level above the host's is a start-up error
/// naming the features the CPU lacks.
#[test]
fn cpu_isa_caps_at_most_what_the_host_runs() {
    use maestro::cpu_isa::{CpuIsa, LEVELS};
    let _env = clean_env();
    let args = |isa: &str| vec!["maestro-server".to_string(), "--cpu-isa".into(), isa.into()];
    assert_eq!(load(vec!["maestro-server".into()]).generation.cpu_isa, CpuIsa::Auto);
    assert_eq!(load(args("generic")).generation.cpu_isa, CpuIsa::Generic);
    let f = file("[generation]\ncpu_isa = \"generic\"\n");
    assert_eq!(load(with_file(&f, &[])).generation.cpu_isa, CpuIsa::Generic);
    assert!(load_err(args("avx")).contains("unknown instruction set"));
    match LEVELS.into_iter().find(|l| l.missing_on_host().is_some()) {
        Some(above) => {
            let err = load_err(args(above.as_str()));
            assert!(err.contains("--cpu-isa") && err.contains("this CPU lacks"), "{err}");
        }
        None => eprintln!("every instruction-set level runs on this CPU: no cap above it to refuse"),
    }
}
