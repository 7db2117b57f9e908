//! Writing a 28×28 field as a picture (to see what the network saw, or to make test inputs).

use crate::fsutil;
use crate::shape::IMAGE_SIDE;
use anyhow::Result;
use std::path::Path;

/// Writes a 28×28 field as an 8-bit grey PNG (enlarged `scale` times), atomically.
pub fn save_field_png(field: &[f32], path: &Path, scale: u32) -> Result<()> {
    let side = IMAGE_SIDE as u32;
    let picture = image::GrayImage::from_fn(side * scale, side * scale, |x, y| {
        let v = field[((y / scale) * side + x / scale) as usize];
        image::Luma([(v.clamp(0.0, 1.0) * 255.0).round() as u8])
    });
    fsutil::write_atomically(path, |w| {
        let mut buffer = std::io::Cursor::new(Vec::new());
        picture.write_to(&mut buffer, image::ImageFormat::Png)?;
        w.write_all(buffer.get_ref())?;
        Ok(())
    })
}
