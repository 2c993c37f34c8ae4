//! Configuration layering: defaults < file < environment < flags, and refusal of unknown keys.
//! One test function, because the environment is process-wide.

use std::{io::Write, time::Duration};

use maestro::config::{CliError, Config, LogFormat};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn layers_defaults_file_env_flags_and_refuses_bad_files() {
    for (k, _) in std::env::vars() {
        if k.starts_with("MAESTRO_") {
            std::env::remove_var(k);
        }
    }
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
    use maestro::resources::requirements::DType;
    assert_eq!(defaults.generation.dtype, DType::F32);
    let with_bf16 = file("[generation]\ndtype = \"bf16\"\n");
    let (c, _) = Config::load(["maestro-server", "--config", with_bf16.path().to_str().unwrap()]).unwrap();
    assert_eq!(c.generation.dtype, DType::Bf16);
    let (c, _) =
        Config::load(["maestro-server", "--config", with_bf16.path().to_str().unwrap(), "--dtype", "f16"])
            .unwrap();
    assert_eq!(c.generation.dtype, DType::F16);
}
