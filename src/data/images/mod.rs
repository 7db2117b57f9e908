//! Pictures of digits: decoding with limits ([`decode`]), the one MNIST-style preprocessing
//! function ([`preprocess`]), labelled folders ([`folder`]), and fields written back as
//! pictures ([`encode`]). Every path that reads pictures
//! (image folders, `eval --images`, `predict`, `serve`) goes through [`preprocess::preprocess`].

pub mod decode;
pub mod encode;
pub mod folder;
pub mod preprocess;

pub use decode::{
    declared_size, decode, decode_bytes, decode_bytes_within, DecodeLimits, Grey, FORMATS, MAX_SIDE,
};
pub use encode::save_field_png;
pub use folder::{load_folder, ImageFolder};
pub use preprocess::{load_picture, preprocess};
