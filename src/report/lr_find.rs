//! `lr_find.png`: the range test's loss against the learning rate (log scale), with the
//! suggestions marked.

use super::canvas::{bold, drawing, text, Canvas};
use crate::train::lr_find::RateFinding;
use anyhow::Result;
use plotters::prelude::*;

pub const LR_FIND_SIZE: (u32, u32) = (800, 500);
const RAW: RGBColor = RGBColor(170, 190, 220);
const SMOOTHED: RGBColor = RGBColor(31, 119, 180);
const STEEPEST: RGBColor = RGBColor(214, 39, 40);
const MINIMUM: RGBColor = RGBColor(120, 120, 120);

/// The chart of a range test, as PNG bytes.
pub fn lr_find_png(finding: &RateFinding, title: &str) -> Result<Vec<u8>> {
    let (width, height) = LR_FIND_SIZE;
    let mut canvas = Canvas::new(width, height);
    canvas.draw(|area| chart(area, finding, title))?;
    canvas.to_png()
}

fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    finding: &RateFinding,
    title: &str,
) -> Result<()> {
    let points = &finding.points;
    let (x_min, x_max) = (
        points[0].learning_rate,
        points[points.len() - 1].learning_rate,
    );
    let (y_min, y_max) = loss_range(finding);
    let mut chart = drawing(
        ChartBuilder::on(area)
            .caption(title, bold(20.0))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d((x_min..x_max).log_scale(), (y_min * 0.9)..y_max),
    )?;
    drawing(
        chart
            .configure_mesh()
            .x_desc("learning rate (log scale)")
            .y_desc("training loss")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style(text(14.0))
            .axis_desc_style(text(15.0))
            .light_line_style(RGBColor(235, 235, 235))
            .draw(),
    )?;
    let clip = |y: f64| y.min(y_max);
    let raw = points.iter().map(|p| (p.learning_rate, clip(p.loss)));
    drawing(chart.draw_series(LineSeries::new(raw, RAW.stroke_width(1))))?
        .label("loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RAW.stroke_width(1)));
    let smooth = points
        .iter()
        .map(|p| (p.learning_rate, clip(p.smoothed_loss)));
    drawing(chart.draw_series(LineSeries::new(smooth, SMOOTHED.stroke_width(2))))?
        .label("smoothed loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SMOOTHED.stroke_width(2)));
    let marks = suggestions(finding);
    for (rate, color, label) in marks {
        if !(x_min..=x_max).contains(&rate) {
            continue;
        }
        drawing(chart.draw_series(DashedLineSeries::new(
            [(rate, y_min * 0.9), (rate, y_max)],
            6,
            4,
            color.stroke_width(2),
        )))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    drawing(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(text(14.0))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw(),
    )?;
    Ok(())
}

/// The losses the chart shows: from the lowest to a little above the first (smoothed) loss;
/// the raw losses of a diverging end would flatten the rest.
fn loss_range(finding: &RateFinding) -> (f64, f64) {
    let points = &finding.points;
    let lowest = points.iter().map(|p| p.loss.min(p.smoothed_loss));
    let y_min = lowest.fold(f64::INFINITY, f64::min).max(0.0);
    let y_max = points[0].smoothed_loss.max(y_min * 1.5) * 1.15;
    (y_min, y_max)
}

/// The suggested rates, each with its colour and legend.
fn suggestions(finding: &RateFinding) -> [(f64, RGBColor, String); 2] {
    [
        (
            finding.steepest,
            STEEPEST,
            format!("suggested (steepest descent): {:.1e}", finding.steepest),
        ),
        (
            finding.minimum_over_ten,
            MINIMUM,
            format!("minimum / 10: {:.1e}", finding.minimum_over_ten),
        ),
    ]
}
