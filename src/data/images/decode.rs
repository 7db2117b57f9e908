//! Decoding pictures with limits: any of the formats the `image` crate reads here, turned into
//! grey levels, with absurd dimensions refused before decoding (decompression bombs).

use anyhow::{ensure, Context, Result};
use image::imageops::FilterType;
use image::{ImageBuffer, Luma};
use std::path::Path;

/// Pictures wider or taller than this are refused before decoding (decompression bombs).
pub const MAX_SIDE: u32 = 16_384;
/// Memory the decoder may allocate for one picture.
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// What a decoder may take for one picture: refused before decoding when the header declares
/// more (decompression bombs), or as soon as the decoder would allocate more.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_side: MAX_SIDE,
            max_bytes: MAX_DECODE_BYTES,
        }
    }
}

/// A grey picture, 0 = black, 1 = white.
pub type Grey = ImageBuffer<Luma<f32>, Vec<f32>>;

/// The formats [`decode`] reads.
pub const FORMATS: &str = "PNG, JPEG, GIF, BMP or WebP";
/// The file extensions of [`FORMATS`] (compared without case), by which pictures are picked out
/// of a folder given to `predict`.
pub const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "gif", "bmp", "webp"];
/// Larger pictures are scaled down to this longer side right after decoding: the digit ends up
/// 20 px tall anyway, and a 16k × 16k picture as 32-bit floats would take 4 GiB.
const WORKING_SIDE: u32 = 1024;

/// Decodes a picture file (the first frame of an animation) into grey levels, refusing absurd
/// dimensions before decoding. Transparent pixels are composited onto a background that
/// contrasts with the opaque ones (white for dark strokes, black for light strokes).
pub fn decode(path: &Path) -> Result<Grey> {
    let file = crate::fsutil::open_regular(path)?;
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(metadata.len() > 0, "{} is an empty file", path.display());
    let mut reader = image::ImageReader::new(std::io::BufReader::new(file));
    // As ImageReader::open does: the extension names the format unless the content says
    // otherwise.
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let reader = reader
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    decode_reader(reader, &path.display().to_string(), DecodeLimits::default())
}

/// [`decode`] for a picture already in memory (`name` is used in messages).
pub fn decode_bytes(bytes: &[u8], name: &str) -> Result<Grey> {
    decode_bytes_within(bytes, name, DecodeLimits::default())
}

/// [`decode_bytes`] with tighter limits (a server decoding many pictures at once).
pub fn decode_bytes_within(bytes: &[u8], name: &str, limits: DecodeLimits) -> Result<Grey> {
    ensure!(!bytes.is_empty(), "{name} is an empty file");
    decode_reader(memory_reader(bytes, name)?, name, limits)
}

/// A reader over a picture in memory, its format guessed from the bytes.
fn memory_reader<'a>(
    bytes: &'a [u8],
    name: &str,
) -> Result<image::ImageReader<std::io::Cursor<&'a [u8]>>> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read {name}"))
}

/// The width and height a picture's header declares, read without decoding the picture (for
/// budgets over several pictures). Errors when the header cannot be read.
pub fn declared_size(bytes: &[u8], name: &str) -> Result<(u32, u32)> {
    let reader = memory_reader(bytes, name)?;
    ensure!(
        reader.format().is_some(),
        "{name} is not a {FORMATS} picture"
    );
    reader
        .into_dimensions()
        .map_err(|e| anyhow::anyhow!("cannot decode {name}: {e}"))
}

fn decode_reader<R: std::io::BufRead + std::io::Seek>(
    mut reader: image::ImageReader<R>,
    name: &str,
    allowed: DecodeLimits,
) -> Result<Grey> {
    ensure!(
        reader.format().is_some(),
        "{name} is not a {FORMATS} picture"
    );
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(allowed.max_side);
    limits.max_image_height = Some(allowed.max_side);
    limits.max_alloc = Some(allowed.max_bytes);
    reader.limits(limits);
    let mut picture = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => anyhow::anyhow!(
            "cannot decode {name}: the picture is larger than this tool accepts ({} px a \
             side, {} MiB decoded)",
            allowed.max_side,
            allowed.max_bytes >> 20
        ),
        // Some decoders refuse a 0×0 header as "dimensions … too large".
        e if names_zero_dimensions(&e.to_string()) => {
            anyhow::anyhow!("{name} is an empty (0×0) picture")
        }
        // The decoder's error repeats its cause in its source chain: show it once.
        e => anyhow::anyhow!("cannot decode {name}: {e}"),
    })?;
    ensure!(
        picture.width() > 0 && picture.height() > 0,
        "{name} is an empty ({}×{}) picture",
        picture.width(),
        picture.height()
    );
    if picture.width().max(picture.height()) > WORKING_SIDE {
        picture = picture.resize(WORKING_SIDE, WORKING_SIDE, FilterType::Triangle);
    }
    Ok(to_grey(&picture.to_rgba32f()))
}

/// Whether a decoder's message speaks of dimensions with a zero side ("Image dimensions (0x0 w/3
/// channels) are too large").
fn names_zero_dimensions(message: &str) -> bool {
    let Some((_, rest)) = message.split_once("dimensions (") else {
        return false;
    };
    let size = rest.split_whitespace().next().unwrap_or("");
    size.split('x')
        .any(|side| side.trim_end_matches(')') == "0")
}

/// Luma of each pixel, transparent parts composited onto a contrasting background.
pub(crate) fn to_grey(rgba: &image::Rgba32FImage) -> Grey {
    let luma = |[r, g, b, _]: [f32; 4]| 0.299 * r + 0.587 * g + 0.114 * b;
    let (mut opaque, mut opaque_luma) = (0.0f64, 0.0f64);
    for pixel in rgba.pixels() {
        if pixel.0[3] > 0.5 {
            opaque += 1.0;
            opaque_luma += f64::from(luma(pixel.0));
        }
    }
    let background = if opaque > 0.0 && opaque_luma / opaque > 0.5 {
        0.0
    } else {
        1.0
    };
    ImageBuffer::from_fn(rgba.width(), rgba.height(), |x, y| {
        let pixel = rgba.get_pixel(x, y).0;
        let alpha = pixel[3];
        Luma([alpha * luma(pixel) + (1.0 - alpha) * background])
    })
}
