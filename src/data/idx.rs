//! Validation of idx files (the MNIST container format) before anything trusts their headers.
//!
//! tch's loader multiplies the header's counts in 32 bits and allocates what they promise, so a
//! damaged or hostile header would make it panic or abort. Every file is checked here first:
//! magic number, 28×28 images, a size exactly equal to what the header promises (computed in
//! checked 64-bit arithmetic), labels 0–9, and as many labels as images.

use super::IdxKind;
use crate::shape::{IMAGE_SIDE, NUM_CLASSES};
use anyhow::{bail, ensure, Context, Result};
use std::io::Read;
use std::path::Path;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_HEADER_LEN: u64 = 16;
const LABELS_HEADER_LEN: u64 = 8;
/// Labels are one byte each: room for 64 million examples.
const MAX_LABELS_BYTES: u64 = 64 << 20;

/// Checks an image file and its label file, and that they hold as many examples.
/// Returns that number.
pub fn validate_pair(images: &Path, labels: &Path) -> Result<u64> {
    let image_count = validate_images_file(images)?;
    let label_count = validate_labels_file(labels)?;
    ensure!(
        image_count == label_count,
        "{} holds {label_count} labels but {} holds {image_count} images",
        labels.display(),
        images.display()
    );
    Ok(image_count)
}

/// Checks an idx3 image file without reading its pixels. Returns the number of images.
pub fn validate_images_file(path: &Path) -> Result<u64> {
    let size = regular_file_size(path)?;
    let header = read_header(path, IMAGES_HEADER_LEN)?;
    check_images(&header, size).with_context(|| path.display().to_string())
}

/// Checks an idx1 label file, every label included. Returns the number of labels.
pub fn validate_labels_file(path: &Path) -> Result<u64> {
    let bytes = crate::fsutil::read_limited(path, MAX_LABELS_BYTES, "label file")?;
    check_labels(&bytes).with_context(|| path.display().to_string())
}

/// Checks an idx file held in memory (a download or an import). Returns the number of examples.
pub fn validate_bytes(bytes: &[u8], kind: IdxKind) -> Result<u64> {
    match kind {
        IdxKind::Images => check_images(bytes, bytes.len() as u64),
        IdxKind::Labels => check_labels(bytes),
    }
}

fn check_images(bytes: &[u8], file_size: u64) -> Result<u64> {
    check_header(bytes, IMAGES_MAGIC, IMAGES_HEADER_LEN, "idx3 image")?;
    let count = u64::from(be_u32(bytes, 4));
    let (rows, cols) = (be_u32(bytes, 8), be_u32(bytes, 12));
    ensure!(
        i64::from(rows) == IMAGE_SIDE && i64::from(cols) == IMAGE_SIDE,
        "images are {rows}×{cols}, MNIST images are {IMAGE_SIDE}×{IMAGE_SIDE}"
    );
    ensure!(count > 0, "the header promises zero images");
    let expected = count
        .checked_mul(u64::from(rows) * u64::from(cols))
        .and_then(|pixels| pixels.checked_add(IMAGES_HEADER_LEN))
        .context("the header promises more images than a file can hold")?;
    check_size(file_size, expected, count, "images")?;
    Ok(count)
}

fn check_labels(bytes: &[u8]) -> Result<u64> {
    check_header(bytes, LABELS_MAGIC, LABELS_HEADER_LEN, "idx1 label")?;
    let count = u64::from(be_u32(bytes, 4));
    ensure!(count > 0, "the header promises zero labels");
    check_size(
        bytes.len() as u64,
        LABELS_HEADER_LEN + count,
        count,
        "labels",
    )?;
    let body = &bytes[LABELS_HEADER_LEN as usize..];
    if let Some(index) = body.iter().position(|&l| i64::from(l) >= NUM_CLASSES) {
        bail!(
            "label {} at index {index} is not a digit 0–{}",
            body[index],
            NUM_CLASSES - 1
        );
    }
    Ok(count)
}

/// Checks the magic number first (so that a file of the wrong kind is called that, however
/// short), then that the whole header is there.
fn check_header(bytes: &[u8], magic: u32, header_len: u64, what: &str) -> Result<()> {
    let truncated = || {
        format!(
            "truncated header: {} bytes, an {what} file starts with {header_len}",
            bytes.len()
        )
    };
    ensure!(bytes.len() >= 4, truncated());
    let found = be_u32(bytes, 0);
    ensure!(
        found == magic,
        "wrong magic number 0x{found:08x}, expected 0x{magic:08x} for an {what} file"
    );
    ensure!(bytes.len() as u64 >= header_len, truncated());
    Ok(())
}

fn check_size(actual: u64, expected: u64, count: u64, what: &str) -> Result<()> {
    ensure!(
        actual == expected,
        "file is {actual} bytes but its header promises {count} {what} ({expected} bytes){}",
        if actual < expected { ": truncated" } else { "" }
    );
    Ok(())
}

fn be_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn regular_file_size(path: &Path) -> Result<u64> {
    let file = crate::fsutil::open_regular(path)?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(meta.len())
}

/// The first `len` bytes of a file (fewer when the file is shorter).
fn read_header(path: &Path, len: u64) -> Result<Vec<u8>> {
    let file = crate::fsutil::open_regular(path)?;
    let mut header = Vec::new();
    file.take(len)
        .read_to_end(&mut header)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(header)
}

/// Builders of small idx files, for tests of this crate and of programs that use it.
pub mod build {
    use crate::shape::{IMAGE_PIXELS, IMAGE_SIDE};

    /// An idx3 image file holding `images` (each 784 bytes) with the given header fields.
    pub fn images_with_header(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + pixels.len());
        for field in [super::IMAGES_MAGIC, count, rows, cols] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        out.extend_from_slice(pixels);
        out
    }

    /// A valid idx3 image file of `count` 28×28 images filled from `pixel(i, p)`.
    pub fn images(count: u32, pixel: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        let pixels: Vec<u8> = (0..count as usize)
            .flat_map(|i| (0..IMAGE_PIXELS).map(move |p| (i, p)))
            .map(|(i, p)| pixel(i, p))
            .collect();
        let side = IMAGE_SIDE as u32;
        images_with_header(count, side, side, &pixels)
    }

    /// An idx1 label file holding `labels`.
    pub fn labels(labels: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + labels.len());
        out.extend_from_slice(&super::LABELS_MAGIC.to_be_bytes());
        out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        out.extend_from_slice(labels);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build;
    use super::*;
    use std::fs;

    use crate::shape::IMAGE_PIXELS;

    const SIDE: u32 = IMAGE_SIDE as u32;

    fn err_of(bytes: &[u8], kind: IdxKind) -> String {
        format!("{:#}", validate_bytes(bytes, kind).unwrap_err())
    }

    #[test]
    fn valid_files_report_their_count() {
        assert_eq!(
            validate_bytes(&build::images(3, |_, _| 7), IdxKind::Images).unwrap(),
            3
        );
        assert_eq!(
            validate_bytes(&build::labels(&[0, 9, 5]), IdxKind::Labels).unwrap(),
            3
        );
    }

    #[test]
    fn empty_and_truncated_headers_are_rejected() {
        assert!(err_of(&[], IdxKind::Images).contains("truncated header"));
        assert!(err_of(&[0, 0, 8], IdxKind::Labels).contains("truncated header"));
        let images = build::images(1, |_, _| 0);
        assert!(err_of(&images[..10], IdxKind::Images).contains("truncated header"));
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let labels = build::labels(&[1, 2]);
        assert!(err_of(&labels, IdxKind::Images).contains("wrong magic number 0x00000801"));
        let images = build::images(1, |_, _| 0);
        assert!(err_of(&images, IdxKind::Labels).contains("wrong magic number 0x00000803"));
    }

    #[test]
    fn truncated_body_is_rejected() {
        let images = build::images(2, |_, _| 0);
        let err = err_of(&images[..images.len() - 1], IdxKind::Images);
        assert!(err.contains("truncated"), "{err}");
        let labels = build::labels(&[1, 2, 3]);
        assert!(err_of(&labels[..10], IdxKind::Labels).contains("truncated"));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut labels = build::labels(&[1, 2, 3]);
        labels.push(0);
        assert!(err_of(&labels, IdxKind::Labels).contains("promises 3 labels"));
    }

    #[test]
    fn huge_and_zero_counts_are_rejected_without_overflow() {
        let huge = build::images_with_header(u32::MAX, SIDE, SIDE, &[0; IMAGE_PIXELS]);
        let err = err_of(&huge, IdxKind::Images);
        assert!(err.contains("4294967295 images"), "{err}");
        let zero = build::images_with_header(0, SIDE, SIDE, &[]);
        assert!(err_of(&zero, IdxKind::Images).contains("zero images"));
        assert!(err_of(&build::labels(&[]), IdxKind::Labels).contains("zero labels"));
    }

    #[test]
    fn non_28_by_28_images_are_rejected() {
        let odd = build::images_with_header(1, 27, SIDE, &[0; 27 * SIDE as usize]);
        assert!(err_of(&odd, IdxKind::Images).contains("27×28"));
    }

    #[test]
    fn labels_outside_0_to_9_are_rejected() {
        assert!(err_of(&build::labels(&[3, 10]), IdxKind::Labels).contains("label 10 at index 1"));
        assert!(err_of(&build::labels(&[255]), IdxKind::Labels).contains("label 255"));
    }

    #[test]
    fn pair_with_different_counts_is_rejected_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("imgs");
        let labels = dir.path().join("lbls");
        fs::write(&images, build::images(3, |_, _| 0)).unwrap();
        fs::write(&labels, build::labels(&[1, 2])).unwrap();
        let err = format!("{:#}", validate_pair(&images, &labels).unwrap_err());
        assert!(
            err.contains("2 labels") && err.contains("3 images"),
            "{err}"
        );
        assert!(err.contains("imgs") && err.contains("lbls"), "{err}");
    }

    #[test]
    fn folders_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", validate_images_file(dir.path()).unwrap_err());
        assert!(err.contains("not a regular file"), "{err}");
        let missing = dir.path().join("nope");
        let err = format!("{:#}", validate_labels_file(&missing).unwrap_err());
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train-images-idx3-ubyte");
        fs::write(
            &path,
            build::images_with_header(5, SIDE, SIDE, &[0; IMAGE_PIXELS]),
        )
        .unwrap();
        let err = format!("{:#}", validate_images_file(&path).unwrap_err());
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
        assert!(err.contains("truncated"), "{err}");
    }
}
