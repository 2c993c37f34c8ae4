//! Emits an rpath to libtorch so binaries and tests run without LD_LIBRARY_PATH, and compiles the
//! C++ CPU kernels and the CUDA allocator shim (`csrc/`) against libtorch when it is linked. The
//! protos are `maestro-proto`'s.
use std::env;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let version = libtorch_version(std::path::Path::new(&lib)).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=MAESTRO_LIBTORCH_VERSION={version}");
        compile_cpu_kernels(std::path::Path::new(&lib));
        compile_cuda_shim(std::path::Path::new(&lib));
    }
    println!("cargo::rustc-check-cfg=cfg(maestro_cuda_shim)");
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
    let x86_64 = env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let built = x86_64
        && libtorch_cpp(&include)
            .file("csrc/cpu_kernels.cpp")
            .file("csrc/decoder_step.cpp")
            .file("csrc/lstm.cpp")
            .file("csrc/team.cpp")
            .include(include.join("torch/csrc/api/include"))
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

/// A C++17 build against libtorch's headers in `include`, with libtorch's own ABI and glog settings.
fn libtorch_cpp(include: &std::path::Path) -> cc::Build {
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .include(include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT");
    build
}

/// `csrc/cuda_alloc.cpp`, for `cuda_alloc`: only where libtorch ships its CUDA headers and
/// `libc10_cuda`, and the CUDA runtime's headers are found (the PyPI wheels keep them in
/// `nvidia/*/include` beside `torch`, a CUDA toolkit in `$CUDA_HOME/include`). Otherwise the build
/// says why and goes on without it (`cfg(maestro_cuda_shim)` unset): the allocator's figures are
/// then absent.
fn compile_cuda_shim(lib: &std::path::Path) {
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let include = lib.parent().expect("libtorch's lib has a parent").join("include");
    let allocator_header = include.join("c10/cuda/CUDACachingAllocator.h");
    let runtime = cuda_runtime_include(lib);
    let missing = if !allocator_header.exists() {
        Some("libtorch has no CUDA headers (a CPU-only build)".to_string())
    } else if !lib.join("libc10_cuda.so").exists() {
        Some("libtorch has no libc10_cuda".to_string())
    } else if runtime.is_none() {
        Some("no CUDA runtime headers: cuda_runtime_api.h with crt/host_config.h (nvidia/*/include beside torch, $CUDA_HOME/include)".to_string())
    } else {
        None
    };
    println!("cargo:rustc-env=MAESTRO_CUDA_SHIM_HEADERS={}", u8::from(missing.is_none()));
    if let Some(why) = missing {
        println!("cargo:warning=CUDA allocator shim not built: {why}; allocator figures are absent");
        return;
    }
    let built = libtorch_cpp(&include)
        .file("csrc/cuda_alloc.cpp")
        .include(runtime.expect("checked above"))
        .opt_level(2)
        .warnings(false)
        .try_compile("maestro_cuda_alloc");
    match built {
        Ok(()) => {
            println!("cargo:rustc-cfg=maestro_cuda_shim");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
        }
        Err(e) => println!("cargo:warning=CUDA allocator shim not built ({e}); allocator figures are absent"),
    }
}

/// The directory holding the CUDA runtime headers: `$CUDA_HOME/include`, the NVIDIA wheels beside
/// torch (`site-packages/nvidia/<pkg>/include`), or `/usr/local/cuda/include`.
fn cuda_runtime_include(lib: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(home) = env::var_os("CUDA_HOME") {
        candidates.push(std::path::PathBuf::from(home).join("include"));
    }
    if let Some(site) = lib.parent().and_then(|torch| torch.parent()) {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut dirs: Vec<_> = entries.flatten().map(|e| e.path().join("include")).collect();
            dirs.sort();
            candidates.extend(dirs);
        }
    }
    candidates.push("/usr/local/cuda/include".into());
    // cuda_runtime.h includes crt/host_config.h, which torch's runtime wheel leaves to nvidia-cuda-crt.
    candidates
        .into_iter()
        .find(|dir| dir.join("cuda_runtime_api.h").exists() && dir.join("crt/host_config.h").exists())
}
