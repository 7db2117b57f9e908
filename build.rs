//! Link-time set-up for libtorch.
//!
//! torch-sys tells its direct dependents where libtorch lives through `DEP_TCH_LIBTORCH_LIB`.
//! We use it to (1) bake an rpath into every binary and test binary, so nothing needs
//! LD_LIBRARY_PATH, (2) force-link libtorch_cuda when it exists — nothing references its
//! symbols directly, so `--as-needed` would drop it and CUDA would silently be unavailable —
//! (3) record the libtorch and tch versions for `mnist-cnn info` and config.json, and (4)
//! compile `src/torch_shim.cpp`, the libtorch calls tch does not bind (autocast on the CPU and
//! its dtype, deterministic computation), against the headers of that libtorch.

use std::env;
use std::fs;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=Cargo.toml");

    let libtorch_version = match env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib_dir) => {
            let lib_dir = Path::new(&lib_dir);
            link_libtorch(lib_dir);
            build_torch_shim(lib_dir);
            libtorch_version(lib_dir).unwrap_or_else(|| "unknown".to_owned())
        }
        Err(_) => {
            println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: no rpath to libtorch added");
            "unknown".to_owned()
        }
    };
    println!("cargo:rustc-env=MNIST_CNN_LIBTORCH_VERSION={libtorch_version}");
    println!("cargo:rustc-env=MNIST_CNN_TCH_VERSION={}", tch_version());
}

fn link_libtorch(lib_dir: &Path) {
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib_dir.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// A PyTorch wheel and a standalone libtorch both keep the headers in `include/` beside `lib/`.
fn build_torch_shim(lib_dir: &Path) {
    let shim = "src/torch_shim.cpp";
    println!("cargo:rerun-if-changed={shim}");
    let root = lib_dir
        .parent()
        .expect("libtorch's lib folder has a parent");
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file(shim)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // The shim passes no std::string across, so the C++ ABI flag only has to match the
        // headers' expectations: every libtorch 2.11 build uses the C++11 ABI.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("mnist_cnn_torch_shim");
    // After the static library, so that the linker resolves its calls into libtorch.
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The version of the libtorch we link: a PyTorch wheel has `torch/version.py` next to
/// `torch/lib`, a standalone libtorch has `libtorch/build-version` next to `libtorch/lib`.
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        let version = line
            .split('=')
            .nth(1)?
            .trim()
            .trim_matches(|c| c == '\'' || c == '"');
        return Some(version.to_owned());
    }
    fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|v| v.trim().to_owned())
}

/// The tch version pinned in Cargo.toml (`tch = "=X.Y.Z"`).
fn tch_version() -> String {
    let manifest = fs::read_to_string("Cargo.toml").unwrap_or_default();
    manifest
        .lines()
        .find(|l| l.trim_start().starts_with("tch ="))
        .and_then(|l| l.split('"').nth(1))
        .map(|v| v.trim_start_matches('=').to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
