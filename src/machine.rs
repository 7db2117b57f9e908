//! What this machine's processors can do for mixed precision: the CPU's vector extensions from
//! /proc/cpuinfo, and a CUDA device's compute capability from the driver. `--precision auto`
//! decides from these.

use serde::Serialize;

/// The CPU's model and the vector extensions that matter for fp32 and bf16 throughput.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuFeatures {
    pub model: String,
    pub avx2: bool,
    pub avx512: bool,
    /// AVX512-BF16: bf16 dot products in AVX-512 registers (Zen 4, Cooper Lake and later).
    pub avx512_bf16: bool,
    /// AMX with bf16 tiles (Sapphire Rapids and later): oneDNN's fast bf16 matrix kernels.
    pub amx_bf16: bool,
}

impl CpuFeatures {
    /// This machine's, from /proc/cpuinfo (all false where it cannot be read).
    pub fn detect() -> Self {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// The first processor's entry of a /proc/cpuinfo text.
    pub fn parse(cpuinfo: &str) -> Self {
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|line| line.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_default()
        };
        let flags = field("flags");
        let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
        Self {
            model: field("model name"),
            avx2: has("avx2"),
            avx512: has("avx512f"),
            avx512_bf16: has("avx512_bf16"),
            amx_bf16: has("amx_bf16"),
        }
    }

    /// Whether the CPU computes bf16 natively (AVX512-BF16 or AMX) rather than converting to
    /// fp32 around every kernel.
    pub fn has_native_bf16(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    /// The extensions present, for messages: "AVX2, AVX-512, AVX512-BF16, AMX-BF16".
    pub fn describe(&self) -> String {
        let names = [
            (self.avx2, "AVX2"),
            (self.avx512, "AVX-512"),
            (self.avx512_bf16, "AVX512-BF16"),
            (self.amx_bf16, "AMX-BF16"),
        ];
        let present: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if present.is_empty() {
            "none of AVX2, AVX-512, AVX512-BF16, AMX".to_owned()
        } else {
            present.join(", ")
        }
    }
}

/// The compute capability (major, minor) of CUDA device `ordinal`, asked of the driver
/// (libcuda.so.1, present wherever CUDA runs); `None` without a driver or device.
pub fn cuda_compute_capability(ordinal: usize) -> Option<(i32, i32)> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type DeviceGet = unsafe extern "C" fn(*mut i32, i32) -> i32;
    type Attribute = unsafe extern "C" fn(*mut i32, i32, i32) -> i32;
    const MAJOR: i32 = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    const MINOR: i32 = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
    let ordinal = i32::try_from(ordinal).ok()?;
    // SAFETY: the symbols are the CUDA driver API's, called with the signatures it documents;
    // the library stays loaded (never closed), as the driver expects.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if lib.is_null() {
            return None;
        }
        let symbol = |name: &std::ffi::CStr| {
            let pointer = libc::dlsym(lib, name.as_ptr());
            (!pointer.is_null()).then_some(pointer)
        };
        let init: Init = std::mem::transmute(symbol(c"cuInit")?);
        let device_get: DeviceGet = std::mem::transmute(symbol(c"cuDeviceGet")?);
        let attribute: Attribute = std::mem::transmute(symbol(c"cuDeviceGetAttribute")?);
        let mut device = 0;
        let (mut major, mut minor) = (0, 0);
        let ok = init(0) == 0
            && device_get(&mut device, ordinal) == 0
            && attribute(&mut major, MAJOR, device) == 0
            && attribute(&mut minor, MINOR, device) == 0;
        ok.then_some((major, minor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_come_from_the_first_processors_flags() {
        let sapphire = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: \
                        fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\n";
        let cpu = CpuFeatures::parse(sapphire);
        assert_eq!(cpu.model, "Intel(R) Xeon(R) Platinum 8488C");
        assert!(cpu.avx2 && cpu.avx512 && cpu.avx512_bf16 && cpu.amx_bf16);
        assert_eq!(cpu.describe(), "AVX2, AVX-512, AVX512-BF16, AMX-BF16");
        let zen3 = CpuFeatures::parse("model name : AMD EPYC\nflags : fpu avx avx2 fma\n");
        assert!(zen3.avx2 && !zen3.avx512 && !zen3.avx512_bf16 && !zen3.amx_bf16);
        assert_eq!(
            CpuFeatures::parse("").describe(),
            "none of AVX2, AVX-512, AVX512-BF16, AMX"
        );
    }
}
