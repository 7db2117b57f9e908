//! Pictures of digits: decoded with limits, preprocessed the way MNIST was made (one function,
//! [`preprocess::preprocess`], for every path that reads pictures), read from labelled folders,
//! and written back.

pub mod decode;
pub mod encode;
pub mod folder;
pub mod preprocess;

pub use decode::{
    declared_size, decode, decode_bytes, decode_bytes_within, DecodeLimits, Grey, EXTENSIONS,
    FORMATS, MAX_SIDE,
};
pub use encode::save_field_png;
pub use folder::{load_folder, pictures_in, ImageFolder};
pub use preprocess::{load_picture, preprocess};
