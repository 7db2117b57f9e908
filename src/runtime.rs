//! Facts about the libtorch this binary runs on: versions, CUDA, cuDNN, threads.

use serde::Serialize;

/// tch's version, as pinned in Cargo.toml (recorded by build.rs).
pub const TCH_VERSION: &str = env!("MNIST_CNN_TCH_VERSION");
/// The version of the libtorch the binary was linked against (recorded by build.rs).
pub const LIBTORCH_VERSION: &str = env!("MNIST_CNN_LIBTORCH_VERSION");

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    pub mnist_cnn_version: &'static str,
    pub tch_version: &'static str,
    pub libtorch_version: &'static str,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub cuda_runtime_version: Option<i64>,
    pub intra_op_threads: i32,
    pub inter_op_threads: i32,
    pub mkldnn: bool,
    pub openmp: bool,
}

impl RuntimeInfo {
    pub fn collect() -> Self {
        let cuda_available = tch::Cuda::is_available();
        let cudnn_available = tch::Cuda::cudnn_is_available();
        Self {
            mnist_cnn_version: env!("CARGO_PKG_VERSION"),
            tch_version: TCH_VERSION,
            libtorch_version: LIBTORCH_VERSION,
            cuda_available,
            cuda_device_count: tch::Cuda::device_count(),
            cudnn_available,
            cudnn_version: cudnn_available.then(tch::utils::version_cudnn),
            cuda_runtime_version: cuda_available.then(tch::utils::version_cudart),
            intra_op_threads: tch::get_num_threads(),
            inter_op_threads: tch::get_num_interop_threads(),
            mkldnn: tch::utils::has_mkldnn(),
            openmp: tch::utils::has_openmp(),
        }
    }
}

/// This machine's logical CPUs (1 when unknown).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most intra-op threads accepted: four per logical CPU. More threads than CPUs only take
/// turns (a one-picture predict with 4,096 threads took over a minute on 2 cores).
pub fn max_threads() -> usize {
    4 * cpu_count()
}

/// Checks a thread count (`source` names where it came from: "--threads", or config.json's
/// "threads") against [`max_threads`], and warns above the CPU count.
pub fn check_threads(source: &str, threads: usize) -> anyhow::Result<()> {
    let (cpus, max) = (cpu_count(), max_threads());
    anyhow::ensure!(
        (1..=max).contains(&threads),
        "{source} {threads}: must be from 1 to {max} (four per CPU; this machine has {cpus})"
    );
    if threads > cpus {
        tracing::warn!(
            "{source} {threads}: more threads than this machine's {cpus} CPUs take turns, which \
             is usually slower"
        );
    }
    Ok(())
}

/// Sets libtorch's intra-op thread count when the user chose one.
pub fn apply_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        check_threads("--threads", n)?;
        tch::set_num_threads(n as i32);
    }
    Ok(())
}

/// Raises the soft limit on open files towards `wanted` (within the hard limit), so that a
/// server may hold as many connections as it is told; returns the limit in force (`None` where
/// it cannot be read).
// rlim_t is u64 on Linux, other widths elsewhere: the casts are for those.
#[allow(clippy::unnecessary_cast)]
pub fn allow_open_files(wanted: u64) -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            let current = limit.rlim_cur as u64;
            if current < wanted {
                limit.rlim_cur = wanted.min(limit.rlim_max as u64) as libc::rlim_t;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    return Some(limit.rlim_cur as u64);
                }
            }
            Some(current)
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Hands the heap's free memory back to the kernel (glibc's `malloc_trim`, every arena): for a
/// server after a burst. Does nothing elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc's allocator keep freed memory for reuse instead of handing it back to the kernel.
///
/// By default every block over 128 KiB–32 MiB is a fresh `mmap`, and the kernel zero-fills its
/// pages again on first touch; libtorch allocates activations of that size on every step, so on
/// the CPU a large part of the time went into page faults (inference at batch 1000 ran at 4,200
/// images/s before this, 9,500 after, on the 2-core development machine). Without `mmap`
/// and with a high trim threshold, freed blocks stay in the heap and are reused. The process
/// keeps its peak memory until it exits, which suits a command-line tool (not a server). Called by
/// the `mnist-cnn` binary; a program using the library may call it too.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before any thread
        // that allocates is started.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The environment variable cuBLAS reads for its workspace, and the setting its deterministic
/// mode needs (a fixed workspace per stream, as PyTorch's reproducibility notes say).
pub const CUBLAS_WORKSPACE_VARIABLE: &str = "CUBLAS_WORKSPACE_CONFIG";
const CUBLAS_DETERMINISTIC_WORKSPACES: [&str; 2] = [":4096:8", ":16:8"];

extern "C" {
    fn mnist_cnn_set_deterministic(on: i32, warn_only: i32) -> i32;
    fn mnist_cnn_is_deterministic() -> i32;
}

/// `--deterministic` on `device`, called before the run's first CUDA operation: on CUDA, the
/// fixed cuBLAS workspace, cuDNN's deterministic algorithms without its benchmark search, and
/// libtorch's deterministic algorithms (in warn-only mode: an operation without a deterministic
/// CUDA kernel warns on stderr rather than stopping the run). The CPU computes
/// deterministically already, so nothing changes there.
pub fn make_deterministic(device: tch::Device) -> anyhow::Result<()> {
    if !device.is_cuda() {
        tracing::debug!("--deterministic: the CPU is deterministic already");
        return Ok(());
    }
    match std::env::var(CUBLAS_WORKSPACE_VARIABLE) {
        Ok(value) if CUBLAS_DETERMINISTIC_WORKSPACES.contains(&value.as_str()) => {}
        other => {
            if let Ok(value) = other {
                tracing::warn!(
                    "--deterministic: {CUBLAS_WORKSPACE_VARIABLE}={value} is not deterministic; \
                     using {}",
                    CUBLAS_DETERMINISTIC_WORKSPACES[0]
                );
            }
            // Before cuBLAS makes its first handle, which reads the variable.
            std::env::set_var(
                CUBLAS_WORKSPACE_VARIABLE,
                CUBLAS_DETERMINISTIC_WORKSPACES[0],
            );
        }
    }
    // SAFETY: integers in and out; the shim catches every C++ exception.
    let status = unsafe { mnist_cnn_set_deterministic(1, 1) };
    anyhow::ensure!(status == 0, "libtorch refused deterministic mode");
    Ok(())
}

/// Whether libtorch's deterministic algorithms and cuDNN's deterministic mode are on (and
/// cuDNN's benchmark search off).
pub fn is_deterministic() -> bool {
    // SAFETY: reads three flags of libtorch's global context.
    unsafe { mnist_cnn_is_deterministic() == 1 }
}
