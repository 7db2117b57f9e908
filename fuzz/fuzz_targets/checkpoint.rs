//! The checkpoint readers on arbitrary bytes: libtorch `.ot` archives (zip + the restricted
//! unpickler + storage checks) and safetensors. Errors are expected; a panic, an abort or a
//! crash is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_cnn::io::checkpoint::{tensors_from_bytes, Format};

fuzz_target!(|data: &[u8]| {
    let _ = tensors_from_bytes(data, Format::Ot);
    let _ = tensors_from_bytes(data, Format::Safetensors);
});
