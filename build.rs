//! Emits an rpath to libtorch so binaries and tests run without LD_LIBRARY_PATH, and compiles the
//! C++ CPU kernels (`csrc/`) against libtorch when it is linked. The protos are `maestro-proto`'s.
use std::env;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let version = libtorch_version(std::path::Path::new(&lib)).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=MAESTRO_LIBTORCH_VERSION={version}");
        compile_cpu_kernels(std::path::Path::new(&lib));
    }
    Ok(())
}

/// `csrc/*.cpp` against libtorch's headers (beside `lib`), for `musicgen::kernels`. Without
/// a C++ compiler or on a CPU family the kernels do not target, the build goes on without them
/// (`cfg(maestro_no_cpu_kernels)`) and decoding uses libtorch's own `linear`.
fn compile_cpu_kernels(lib: &std::path::Path) {
    println!("cargo::rustc-check-cfg=cfg(maestro_no_cpu_kernels)");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib.parent().expect("libtorch's lib has a parent").join("include");
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let x86_64 = env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let built = x86_64
        && cc::Build::new()
            .cpp(true)
            .file("csrc/cpu_kernels.cpp")
            .file("csrc/decoder_step.cpp")
            .file("csrc/lstm.cpp")
            .include(&include)
            .include(include.join("torch/csrc/api/include"))
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .flag_if_supported("-fopenmp")
            .opt_level(3)
            .warnings(false)
            .try_compile("maestro_cpu_kernels")
            .map_err(|e| {
                println!("cargo:warning=CPU kernels not built ({e}); decoding uses libtorch's linear")
            })
            .is_ok();
    if !built {
        println!("cargo:rustc-cfg=maestro_no_cpu_kernels");
        return;
    }
    // at::parallel_for is an inline `#pragma omp parallel`: link the OpenMP runtime libtorch itself
    // loads, so the kernels share its thread pool rather than start a second one.
    let gomp = lib.join("libgomp.so.1");
    if gomp.exists() {
        println!("cargo:rustc-link-arg={}", gomp.display());
    } else {
        println!("cargo:rustc-link-lib=gomp");
    }
}

/// The version of the libtorch in `lib`: PyTorch's `version.py` beside it, or a libtorch
/// distribution's `build-version` file.
fn libtorch_version(lib: &std::path::Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_string())
}
