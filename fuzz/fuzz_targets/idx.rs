//! Any bytes given to the idx validator: an answer (Ok or Err), never a panic or an abort, and
//! a count that the bytes can actually hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_cnn::data::IdxKind;
use mnist_cnn::data::idx::validate_bytes;

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = validate_bytes(data, IdxKind::Images) {
        assert!(images * 784 + 16 <= data.len() as u64);
    }
    if let Ok(labels) = validate_bytes(data, IdxKind::Labels) {
        assert!(labels + 8 <= data.len() as u64);
    }
});
