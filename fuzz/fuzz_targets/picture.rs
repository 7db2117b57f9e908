//! Any bytes given to picture decoding and the MNIST-style preprocessing: an answer, never a
//! panic, and when there is a field, 784 values in [0, 1].
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_cnn::data::images::{decode_bytes, preprocess};

fuzz_target!(|data: &[u8]| {
    if let Ok(grey) = decode_bytes(data, "fuzz input") {
        if let Ok(field) = preprocess(&grey) {
            assert_eq!(field.len(), 784);
            assert!(field.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }
});
