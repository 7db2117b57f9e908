//! Drawing into memory with plotters, text in the bundled DejaVu fonts, and PNG encoding.
//!
//! plotters finds fonts by family name; registering DejaVu under "sans-serif" means no chart
//! depends on the fonts of the machine it runs on.

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use std::borrow::Borrow;
use std::sync::Once;

pub const FONT: &str = "sans-serif";

/// Registers the bundled fonts with plotters (once per process).
pub fn register_fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a font file compiled into the binary, so they always parse.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// An RGB picture being drawn.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Self {
        register_fonts();
        Self {
            width,
            height,
            pixels: vec![255; (width * height * 3) as usize],
        }
    }

    /// Draws on the canvas through plotters; the drawing area starts out white.
    pub fn draw(
        &mut self,
        paint: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
    ) -> Result<()> {
        let backend = BitMapBackend::with_buffer(&mut self.pixels, (self.width, self.height));
        let area = backend.into_drawing_area();
        paint(&area)?;
        area.present()
            .map_err(|e| anyhow!("cannot draw the picture: {e}"))
    }

    /// Encodes the canvas as PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let picture = image::RgbImage::from_raw(self.width, self.height, self.pixels.clone())
            .expect("the buffer matches the size");
        let mut bytes = Vec::new();
        picture
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .context("cannot encode the picture as PNG")?;
        Ok(bytes)
    }
}

/// Turns a plotters error into an anyhow one.
pub fn drawing<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T> {
    result.map_err(|e| anyhow!("cannot draw the picture: {e}"))
}

/// A text style whose position is its middle.
pub fn centred(style: TextStyle<'_>) -> TextStyle<'_> {
    style.pos(Pos::new(HPos::Center, VPos::Center))
}

/// Writes `words` at `at` in `style`.
pub fn label<S: Borrow<str>>(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    words: S,
    at: (i32, i32),
    style: TextStyle<'_>,
) -> Result<()> {
    drawing(area.draw(&Text::new(words, at, style)))
}

/// A text style in the bundled font.
pub fn text(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

pub fn bold(size: f64) -> TextStyle<'static> {
    (FONT, size)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK)
}

/// Linear interpolation between two colours, `t` in [0, 1].
pub fn blend(a: RGBColor, b: RGBColor, t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}
