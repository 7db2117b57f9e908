//! `mistakes.png` (the digits the model gets wrong with the most confidence) and `filters.png`
//! (the first convolution's 3×3 filters).

use super::canvas::{blend, bold, centred, drawing, label, text, Canvas};
use crate::shape::{IMAGE_PIXELS, IMAGE_SIDE};
use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub const MISTAKE_COLUMNS: usize = 8;
pub const MISTAKE_ROWS: usize = 4;
/// Each digit is drawn this many times larger than its 28×28.
const DIGIT_SCALE: i32 = 4;
/// A digit's side as drawn.
const DIGIT_SIDE: i32 = IMAGE_SIDE as i32 * DIGIT_SCALE;
const TILE: (i32, i32) = (132, 150);
pub const MISTAKES_SIZE: (u32, u32) = (
    (MISTAKE_COLUMNS as i32 * TILE.0 + 24) as u32,
    (MISTAKE_ROWS as i32 * TILE.1 + 70) as u32,
);
pub const FILTERS_SIZE: (u32, u32) = (700, 470);

/// A wrongly predicted example.
pub struct Mistake {
    /// 784 values in [0, 1], white ink on black as the network saw it.
    pub pixels: Vec<f32>,
    pub truth: i64,
    pub predicted: i64,
    pub probability: f32,
}

/// The indices of the wrong predictions, most confident first (ties: lower index first).
pub fn most_confident_mistakes(
    truth: &[i64],
    predicted: &[i64],
    confidences: &[f32],
    count: usize,
) -> Vec<usize> {
    let mut wrong: Vec<usize> = (0..truth.len())
        .filter(|&i| truth[i] != predicted[i])
        .collect();
    wrong.sort_by(|&a, &b| confidences[b].total_cmp(&confidences[a]).then(a.cmp(&b)));
    wrong.truncate(count);
    wrong
}

/// A grid of mistakes, each drawn dark on light and captioned "true → predicted (probability)".
pub fn mistakes(mistakes: &[Mistake], total_wrong: usize, examples: usize) -> Result<Canvas> {
    let (width, height) = MISTAKES_SIZE;
    let mut canvas = Canvas::new(width, height);
    let title = if total_wrong == 0 {
        format!("No mistakes on these {examples} digits")
    } else {
        format!(
            "The {} most confident of {total_wrong} mistakes ({examples} digits): true → predicted (probability)",
            mistakes.len()
        )
    };
    canvas.draw(|area| {
        label(area, title, (width as i32 / 2, 28), centred(bold(19.0)))?;
        for (i, mistake) in mistakes.iter().enumerate() {
            ensure!(
                mistake.pixels.len() == IMAGE_PIXELS,
                "a digit needs {IMAGE_PIXELS} pixels"
            );
            let (column, row) = ((i % MISTAKE_COLUMNS) as i32, (i / MISTAKE_COLUMNS) as i32);
            let x0 = 12 + column * TILE.0 + (TILE.0 - DIGIT_SIDE) / 2;
            let y0 = 56 + row * TILE.1;
            let side = IMAGE_SIDE as usize;
            for (p, &v) in mistake.pixels.iter().enumerate() {
                let (x, y) = (
                    x0 + (p % side) as i32 * DIGIT_SCALE,
                    y0 + (p / side) as i32 * DIGIT_SCALE,
                );
                let grey = (255.0 * (1.0 - v.clamp(0.0, 1.0))).round() as u8;
                drawing(area.draw(&Rectangle::new(
                    [(x, y), (x + DIGIT_SCALE, y + DIGIT_SCALE)],
                    RGBColor(grey, grey, grey).filled(),
                )))?;
            }
            let side = DIGIT_SIDE;
            drawing(area.draw(&Rectangle::new(
                [(x0, y0), (x0 + side, y0 + side)],
                RGBColor(190, 190, 190),
            )))?;
            label(
                area,
                format!(
                    "{} → {} ({:.2})",
                    mistake.truth, mistake.predicted, mistake.probability
                ),
                (x0 + side / 2, y0 + side + 16),
                centred(text(16.0)),
            )?;
        }
        Ok(())
    })?;
    Ok(canvas)
}

const NEGATIVE: RGBColor = RGBColor(33, 102, 172);
const POSITIVE: RGBColor = RGBColor(178, 24, 43);

/// Blue for negative weights, white for zero, red for positive, on a scale of ±`limit`.
fn weight_color(weight: f32, limit: f32) -> RGBColor {
    let t = f64::from(weight / limit);
    if t < 0.0 {
        blend(WHITE, NEGATIVE, -t)
    } else {
        blend(WHITE, POSITIVE, t)
    }
}

/// The filters (each `side`×`side` weights, row-major) in a grid of eight per row, coloured on
/// one symmetric scale, with a colour bar.
pub fn filters(weights: &[Vec<f32>], side: usize) -> Result<Canvas> {
    let per_row = 8i32;
    let cell = 66 / side as i32;
    let pitch = cell * side as i32 + 14;
    let rows = weights.len().div_ceil(per_row as usize) as i32;
    // FILTERS_SIZE holds four rows (the tutorial's 32 filters); wider networks get taller.
    let (width, height) = (
        FILTERS_SIZE.0,
        FILTERS_SIZE.1.max((60 + rows * pitch + 90) as u32),
    );
    let mut canvas = Canvas::new(width, height);
    let limit = weights
        .iter()
        .flatten()
        .fold(0.0f32, |m, w| m.max(w.abs()))
        .max(f32::MIN_POSITIVE);
    let left = (width as i32 - per_row * pitch + 14) / 2;
    canvas.draw(|area| {
        label(
            area,
            format!(
                "First convolution: the {} learned {side}×{side} filters",
                weights.len()
            ),
            (width as i32 / 2, 28),
            centred(bold(20.0)),
        )?;
        for (f, filter) in weights.iter().enumerate() {
            ensure!(
                filter.len() == side * side,
                "filter {f} is not {side}×{side}"
            );
            let x0 = left + (f as i32 % per_row) * pitch;
            let y0 = 60 + (f as i32 / per_row) * pitch;
            for (k, &w) in filter.iter().enumerate() {
                let (x, y) = (x0 + (k % side) as i32 * cell, y0 + (k / side) as i32 * cell);
                drawing(area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    weight_color(w, limit).filled(),
                )))?;
            }
            let edge = cell * side as i32;
            drawing(area.draw(&Rectangle::new(
                [(x0, y0), (x0 + edge, y0 + edge)],
                RGBColor(150, 150, 150),
            )))?;
        }
        colour_bar(area, limit, 60 + rows * pitch + 10)
    })?;
    Ok(canvas)
}

/// The colour scale of the weights, from -`limit` to +`limit`, with its top at `bar_top`.
fn colour_bar(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    limit: f32,
    bar_top: i32,
) -> Result<()> {
    let (bar_left, bar_width) = (150, 400);
    for i in 0..bar_width {
        let w = limit * (2.0 * i as f32 / (bar_width - 1) as f32 - 1.0);
        drawing(area.draw(&Rectangle::new(
            [(bar_left + i, bar_top), (bar_left + i + 1, bar_top + 16)],
            weight_color(w, limit).filled(),
        )))?;
    }
    let below = text(15.0).pos(Pos::new(HPos::Center, VPos::Top));
    for (at, value) in [(0, -limit), (bar_width / 2, 0.0), (bar_width, limit)] {
        label(
            area,
            format!("{value:+.2}"),
            (bar_left + at, bar_top + 22),
            below.clone(),
        )?;
    }
    label(
        area,
        "weight",
        (bar_left + bar_width + 50, bar_top + 8),
        centred(text(15.0)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_are_ordered_by_confidence_and_correct_answers_left_out() {
        let truth = [1, 2, 3, 4, 5];
        let predicted = [1, 7, 3, 9, 0];
        let confidences = [0.99, 0.6, 0.95, 0.9, 0.6];
        assert_eq!(
            most_confident_mistakes(&truth, &predicted, &confidences, 10),
            [3, 1, 4]
        );
        assert_eq!(
            most_confident_mistakes(&truth, &predicted, &confidences, 2),
            [3, 1]
        );
    }

    /// vgg-48 has 48 first-layer filters: six rows, on a taller picture, nothing cut off.
    #[test]
    fn more_filters_get_a_taller_picture() {
        let size = |count: usize| {
            let weights: Vec<Vec<f32>> = (0..count).map(|i| vec![i as f32 - 20.0; 9]).collect();
            let png = filters(&weights, 3).unwrap().to_png().unwrap();
            let picture = image::load_from_memory(&png).unwrap();
            (picture.width(), picture.height())
        };
        assert_eq!(size(32), FILTERS_SIZE);
        let (width, height) = size(48);
        assert_eq!(width, FILTERS_SIZE.0);
        assert!(height >= FILTERS_SIZE.1 + 2 * 80, "{height}");
    }

    #[test]
    fn weights_map_to_blue_white_red() {
        assert_eq!(weight_color(0.0, 1.0), WHITE);
        assert_eq!(weight_color(-1.0, 1.0), NEGATIVE);
        assert_eq!(weight_color(1.0, 1.0), POSITIVE);
    }
}
