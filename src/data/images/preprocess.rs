//! The one MNIST-style preprocessing function: MNIST digits are white on black, the ink scaled
//! so the longer side of its bounding box is 20 px (aspect ratio kept, antialiased), placed in a
//! 28×28 field with the centre of mass at the centre. [`preprocess`] turns any photo or scan of
//! a digit into that form.

use super::decode::{decode, Grey};
use crate::shape::IMAGE_SIDE;
use anyhow::{ensure, Context, Result};
use image::imageops::{self, FilterType};
use std::path::Path;

/// The longer side of the digit's bounding box in the 28×28 field, as in MNIST.
const DIGIT_BOX: u32 = 20;
/// The field's side, as an index.
const FIELD: usize = IMAGE_SIDE as usize;
/// Minimum contrast between ink and paper (on a 0–1 scale) for a picture to hold a digit.
const MIN_CONTRAST: f32 = 0.08;
/// After paper removal and stretching, pixels above this count as ink when cropping.
const INK_THRESHOLD: f32 = 0.05;
/// Connected ink regions holding less than this share of the ink are specks, not strokes.
const SPECK_SHARE: f64 = 0.01;

/// Reads a picture and turns it into an MNIST-style 28×28 digit (784 values in [0, 1]).
pub fn load_picture(path: &Path) -> Result<Vec<f32>> {
    let grey = decode(path)?;
    preprocess(&grey).with_context(|| path.display().to_string())
}

/// The MNIST-style preprocessing: to white ink on black; remove the paper (its level and noise
/// estimated from the border, subtracted, the ink stretched to the full range); crop to the ink;
/// scale the longer side to 20 px keeping the aspect ratio, antialiased; place in 28×28 with the
/// centre of mass at the centre.
pub fn preprocess(grey: &Grey) -> Result<Vec<f32>> {
    let (width, height) = grey.dimensions();
    let mut pixels: Vec<f32> = grey.as_raw().clone();
    let border = border_pixels(&pixels, width as usize, height as usize);
    let Paper {
        level: mut paper,
        noise,
    } = paper_of(border);
    if paper > 0.5 {
        // Dark ink on light paper: invert, so ink is bright as in MNIST.
        pixels.iter_mut().for_each(|p| *p = 1.0 - *p);
        paper = 1.0 - paper;
    }
    let floor = paper + (3.0 * noise).max(0.02);
    let peak = pixels.iter().copied().fold(0.0f32, f32::max);
    ensure!(
        peak - paper >= MIN_CONTRAST && peak > floor,
        "no ink: the picture is blank or has no contrast"
    );
    pixels
        .iter_mut()
        .for_each(|p| *p = ((*p - floor) / (peak - floor)).clamp(0.0, 1.0));
    let mut ink = Grey::from_raw(width, height, pixels).expect("same size");
    remove_specks(&mut ink);
    let b = ink_box(&ink).context("no ink left once the paper is removed")?;
    let cropped = imageops::crop_imm(&ink, b.x0, b.y0, b.x1 - b.x0 + 1, b.y1 - b.y0 + 1).to_image();
    let scaled = scale_to_box(&cropped);
    Ok(place_by_centre_of_mass(&scaled))
}

/// The pixels of a band around the edge, about 5% of the shorter side wide.
fn border_pixels(pixels: &[f32], width: usize, height: usize) -> Vec<f32> {
    let band = ((width.min(height) as f32 * 0.05).round() as usize).max(1);
    let mut border = Vec::new();
    for y in 0..height {
        for x in 0..width {
            if x < band || y < band || x + band >= width || y + band >= height {
                border.push(pixels[y * width + x]);
            }
        }
    }
    border
}

/// The paper's grey level and how much it varies, from pixels of bare paper.
struct Paper {
    /// The median level.
    level: f32,
    /// A robust standard deviation: 1.4826 × the median absolute deviation.
    noise: f32,
}

fn paper_of(mut border: Vec<f32>) -> Paper {
    let level = median(&mut border);
    let mut deviations: Vec<f32> = border.iter().map(|v| (v - level).abs()).collect();
    Paper {
        level,
        noise: 1.4826 * median(&mut deviations),
    }
}

fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    *m
}

/// Blackens specks: 8-connected regions of ink pixels that together hold less than
/// [`SPECK_SHARE`] of the picture's ink. Paper noise and JPEG ringing leave such specks away from
/// the digit, and one of them would stretch the crop box and shrink the digit.
fn remove_specks(ink: &mut Grey) {
    let (width, height) = (ink.width() as usize, ink.height() as usize);
    let pixels: &mut [f32] = ink;
    const UNSEEN: u32 = u32::MAX;
    let mut region = vec![UNSEEN; pixels.len()];
    let mut masses: Vec<f64> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..pixels.len() {
        if pixels[start] <= INK_THRESHOLD || region[start] != UNSEEN {
            continue;
        }
        let id = masses.len() as u32;
        let mut mass = 0.0f64;
        region[start] = id;
        stack.push(start);
        while let Some(at) = stack.pop() {
            mass += f64::from(pixels[at]);
            let (x, y) = (at % width, at / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let next = ny * width + nx;
                    if region[next] == UNSEEN && pixels[next] > INK_THRESHOLD {
                        region[next] = id;
                        stack.push(next);
                    }
                }
            }
        }
        masses.push(mass);
    }
    let total: f64 = masses.iter().sum();
    for (pixel, id) in pixels.iter_mut().zip(&region) {
        if *id != UNSEEN && masses[*id as usize] < SPECK_SHARE * total {
            *pixel = 0.0;
        }
    }
}

/// An inclusive pixel rectangle.
#[derive(Clone, Copy)]
struct InkBox {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

/// The bounding box of the ink.
fn ink_box(ink: &Grey) -> Option<InkBox> {
    let mut found: Option<InkBox> = None;
    for (x, y, p) in ink.enumerate_pixels() {
        if p.0[0] > INK_THRESHOLD {
            found = Some(match found {
                None => InkBox {
                    x0: x,
                    y0: y,
                    x1: x,
                    y1: y,
                },
                Some(b) => InkBox {
                    x0: b.x0.min(x),
                    y0: b.y0.min(y),
                    x1: b.x1.max(x),
                    y1: b.y1.max(y),
                },
            });
        }
    }
    found
}

/// Scales so the longer side is 20 px, keeping the aspect ratio; the filter widens with the
/// reduction, which antialiases.
fn scale_to_box(ink: &Grey) -> Grey {
    let (w, h) = ink.dimensions();
    let longer = w.max(h) as f32;
    let new_w = ((w as f32 * DIGIT_BOX as f32 / longer).round() as u32).clamp(1, DIGIT_BOX);
    let new_h = ((h as f32 * DIGIT_BOX as f32 / longer).round() as u32).clamp(1, DIGIT_BOX);
    let mut scaled = imageops::resize(ink, new_w, new_h, FilterType::Triangle);
    scaled
        .pixels_mut()
        .for_each(|p| p.0[0] = p.0[0].clamp(0.0, 1.0));
    scaled
}

/// Places the digit in a 28×28 field so that its centre of mass lands on the field's centre.
fn place_by_centre_of_mass(digit: &Grey) -> Vec<f32> {
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in digit.enumerate_pixels() {
        let v = p.0[0] as f64;
        mass += v;
        mx += v * x as f64;
        my += v * y as f64;
    }
    // MNIST's digits have their centre of mass at (14, 14) in pixel-index coordinates (measured
    // on the test set: 14.00 ± 0.29), not at the geometric centre 13.5.
    let centre = FIELD as f64 / 2.0;
    let (cx, cy) = if mass > 0.0 {
        (mx / mass, my / mass)
    } else {
        (digit.width() as f64 / 2.0, digit.height() as f64 / 2.0)
    };
    let dx = (centre - cx).round() as i64;
    let dy = (centre - cy).round() as i64;
    let mut field = vec![0.0f32; FIELD * FIELD];
    for (x, y, p) in digit.enumerate_pixels() {
        let (fx, fy) = (x as i64 + dx, y as i64 + dy);
        if (0..FIELD as i64).contains(&fx) && (0..FIELD as i64).contains(&fy) {
            field[fy as usize * FIELD + fx as usize] = p.0[0];
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use super::super::decode::to_grey;
    use super::*;
    use crate::shape::IMAGE_PIXELS;
    use image::{ImageBuffer, Luma};
    use std::fs;

    /// A "photo": a bar-shaped digit (ink `ink`) on paper of level `paper` with some noise,
    /// placed off-centre in a w×h picture.
    fn photo(w: u32, h: u32, paper: f32, ink: f32) -> Grey {
        ImageBuffer::from_fn(w, h, |x, y| {
            let noise = (((x * 7919 + y * 104_729) % 97) as f32 / 97.0 - 0.5) * 0.06;
            let in_digit =
                (w / 5..w / 5 + w / 8).contains(&x) && (h / 4..h / 4 + h / 2).contains(&y);
            Luma([if in_digit { ink } else { paper + noise }])
        })
    }

    fn stats(field: &[f32]) -> (f32, f64, f64, u32, u32) {
        let max = field.iter().copied().fold(0.0, f32::max);
        let (mut m, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
        let side = FIELD as u32;
        let (mut x0, mut x1, mut y0, mut y1) = (side, 0, side, 0);
        for (i, &v) in field.iter().enumerate() {
            let (x, y) = ((i % FIELD) as u32, (i / FIELD) as u32);
            m += v as f64;
            sx += v as f64 * x as f64;
            sy += v as f64 * y as f64;
            if v > 0.05 {
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            }
        }
        (max, sx / m, sy / m, x1 - x0 + 1, y1 - y0 + 1)
    }

    #[test]
    fn a_dark_digit_on_grey_noisy_paper_becomes_an_mnist_digit() {
        let field = preprocess(&photo(200, 160, 0.75, 0.1)).unwrap();
        assert_eq!(field.len(), IMAGE_PIXELS);
        let (max, cx, cy, w, h) = stats(&field);
        assert!((max - 1.0).abs() < 1e-6, "ink stretched to 1, got {max}");
        assert!(
            (cx - 14.0).abs() < 0.6 && (cy - 14.0).abs() < 0.6,
            "centre {cx},{cy}"
        );
        assert!(w.max(h) >= 19 && w.max(h) <= 21, "box {w}×{h}");
        // The paper is gone: the field's border is black.
        let border: f32 = (0..FIELD)
            .map(|i| field[i] + field[(FIELD - 1) * FIELD + i] + field[i * FIELD])
            .sum();
        assert!(border < 1e-6, "paper left on the border: {border}");
    }

    #[test]
    fn a_speck_far_from_the_digit_does_not_shrink_it() {
        let mut picture = photo(200, 160, 0.75, 0.1);
        for (x, y) in [(180, 140), (181, 140), (180, 141)] {
            picture.put_pixel(x, y, Luma([0.3]));
        }
        let (_, _, _, w, h) = stats(&preprocess(&picture).unwrap());
        assert!(w.max(h) >= 19, "the digit shrank to {w}×{h}");
    }

    #[test]
    fn strokes_on_a_transparent_canvas_show_whatever_their_colour() {
        for stroke in [0.0, 1.0] {
            let canvas = image::Rgba32FImage::from_fn(60, 60, |x, y| {
                let on = (20..30).contains(&x) && (10..50).contains(&y);
                image::Rgba([stroke, stroke, stroke, if on { 1.0 } else { 0.0 }])
            });
            let field = preprocess(&to_grey(&canvas)).unwrap();
            let (max, _, _, w, h) = stats(&field);
            assert!(max > 0.99 && h == 20 && w < 10, "stroke {stroke}: {w}×{h}");
        }
    }

    #[test]
    fn a_large_picture_is_scaled_down_before_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("large.png");
        image::GrayImage::from_fn(2400, 1600, |x, y| {
            image::Luma([if (1000..1200).contains(&x) && (400..1200).contains(&y) {
                10
            } else {
                240
            }])
        })
        .save(&path)
        .unwrap();
        let grey = decode(&path).unwrap();
        assert_eq!(grey.dimensions(), (1024, 683));
        let (_, _, _, w, h) = stats(&preprocess(&grey).unwrap());
        assert_eq!((w, h), (5, 20));
    }

    #[test]
    fn light_on_dark_and_dark_on_light_give_the_same_digit() {
        let dark_on_light = preprocess(&photo(90, 120, 0.9, 0.05)).unwrap();
        let light_on_dark = preprocess(&photo(90, 120, 0.1, 0.95)).unwrap();
        let diff: f32 = dark_on_light
            .iter()
            .zip(&light_on_dark)
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(diff < 1.0, "total difference {diff}");
    }

    #[test]
    fn a_blank_page_has_no_ink() {
        let blank: Grey =
            ImageBuffer::from_fn(50, 50, |x, y| Luma([0.8 + ((x + y) % 3) as f32 * 0.01]));
        let err = format!("{:#}", preprocess(&blank).unwrap_err());
        assert!(err.contains("no ink"), "{err}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.png");
        fs::write(&path, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let err = format!("{:#}", load_picture(&path).unwrap_err());
        assert!(err.contains("broken.png"), "{err}");
        let text = dir.path().join("notes.png");
        fs::write(&text, b"hello").unwrap();
        let err = format!("{:#}", load_picture(&text).unwrap_err());
        assert!(err.contains("notes.png"), "{err}");
    }
}
