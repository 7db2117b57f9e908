//! `curves.png` (loss, accuracy and learning rate per epoch) and `confusion.png` (the confusion
//! matrix as a heat map).

use super::canvas::{blend, bold, centred, drawing, label, text, Canvas};
use crate::eval::ConfusionMatrix;
use crate::train::{EpochRecord, ScheduleClock};
use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Each panel of `curves.png`; two panels side by side, three with a learning-rate schedule.
pub const PANEL_SIZE: (u32, u32) = (600, 450);
pub const CONFUSION_SIZE: (u32, u32) = (720, 700);

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(255, 127, 14);
const TEST: RGBColor = RGBColor(44, 160, 44);
const CHOSEN: RGBColor = RGBColor(120, 120, 120);
const DIAGONAL: RGBColor = RGBColor(8, 48, 107);
const ERRORS: RGBColor = RGBColor(178, 24, 43);

/// One line of a panel.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Whether the learning rate changed during the run (a schedule, or a fine-tuning run's
/// epoch-0 record aside).
pub fn has_schedule(records: &[EpochRecord]) -> bool {
    let rates: Vec<f64> = records
        .iter()
        .filter(|r| r.epoch > 0)
        .flat_map(|r| [r.learning_rate, r.learning_rate_end])
        .collect();
    rates
        .windows(2)
        .any(|w| (w[0] - w[1]).abs() > 1e-12 * w[0].abs())
}

/// The size `curves.png` will have for these records.
pub fn curves_size(records: &[EpochRecord]) -> (u32, u32) {
    let panels = if has_schedule(records) { 3 } else { 2 };
    (PANEL_SIZE.0 * panels, PANEL_SIZE.1)
}

/// Draws loss and accuracy per epoch (and the learning rate when it changed), marking the
/// epoch whose weights were kept.
/// `rates` are the learning rate over training progress ([`rate_points`]).
pub fn curves(
    records: &[EpochRecord],
    chosen_epoch: Option<usize>,
    rates: Vec<(f64, f64)>,
) -> Result<Canvas> {
    let (width, height) = curves_size(records);
    let mut canvas = Canvas::new(width, height);
    let (losses, accuracies, rates) = (
        loss_series(records),
        accuracy_series(records),
        rate_series(rates),
    );
    let with_schedule = has_schedule(records);
    canvas.draw(|area| {
        let panels = area.split_evenly((1, if with_schedule { 3 } else { 2 }));
        let loss = Panel {
            title: "Loss (cross-entropy)",
            y_description: "loss",
            series: &losses,
            scale: Scale::FromZero,
            legend_at: SeriesLabelPosition::UpperRight,
        };
        panel(&panels[0], &loss, chosen_epoch)?;
        let accuracy = Panel {
            title: "Accuracy",
            y_description: "accuracy (%)",
            series: &accuracies,
            scale: Scale::Percent,
            legend_at: SeriesLabelPosition::LowerRight,
        };
        panel(&panels[1], &accuracy, chosen_epoch)?;
        if with_schedule {
            let rate = Panel {
                title: "Learning rate",
                y_description: "learning rate",
                series: &rates,
                scale: Scale::FromZero,
                legend_at: SeriesLabelPosition::UpperRight,
            };
            panel(&panels[2], &rate, None)?;
        }
        Ok(())
    })?;
    Ok(canvas)
}

/// One value per epoch, where `value` has one.
fn points(records: &[EpochRecord], value: impl Fn(&EpochRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| value(r).map(|v| (r.epoch as f64, v)))
        .collect()
}

fn loss_series(records: &[EpochRecord]) -> [Series; 3] {
    [
        Series {
            label: "train loss",
            color: TRAIN,
            points: points(records, |r| r.train_loss),
        },
        Series {
            label: "validation loss",
            color: VALIDATION,
            points: points(records, |r| r.scores.validation_loss),
        },
        Series {
            label: "test loss",
            color: TEST,
            points: points(records, |r| r.scores.test_loss),
        },
    ]
}

fn accuracy_series(records: &[EpochRecord]) -> [Series; 2] {
    [
        Series {
            label: "validation accuracy",
            color: VALIDATION,
            points: points(records, |r| r.scores.validation_accuracy.map(|a| 100.0 * a)),
        },
        Series {
            label: "test accuracy",
            color: TEST,
            points: points(records, |r| r.scores.test_accuracy.map(|a| 100.0 * a)),
        },
    ]
}

fn rate_series(points: Vec<(f64, f64)>) -> [Series; 1] {
    [Series {
        label: "learning rate",
        color: TRAIN,
        points,
    }]
}

/// At most this many points draw a learning rate that moves every step.
const MAX_RATE_POINTS: usize = 600;

/// The learning rate over training progress (in epochs, from 0): every step's where the run's
/// schedule (`clock`) moves within epochs (cosine and one-cycle, whose peak would be lost
/// between two epochs' ends; at most [`MAX_RATE_POINTS`] steps, the last included), else each
/// epoch's rate at its start and end as recorded (constant, plateau).
pub fn rate_points(
    records: &[EpochRecord],
    clock: &ScheduleClock,
    steps_per_epoch: usize,
) -> Vec<(f64, f64)> {
    let trained_epochs = records.iter().map(|r| r.epoch).max().unwrap_or(0);
    match clock.moves_within_epochs() && steps_per_epoch > 0 {
        true => {
            let last = (trained_epochs * steps_per_epoch).min(clock.total_steps());
            let stride = last.div_ceil(MAX_RATE_POINTS).max(1);
            (0..last)
                .step_by(stride)
                .chain([last.saturating_sub(1)])
                .map(|step| (step as f64 / steps_per_epoch as f64, clock.at(step)))
                .collect()
        }
        false => records
            .iter()
            .filter(|r| r.epoch > 0)
            .flat_map(|r| {
                let start = (r.epoch - 1) as f64;
                [(start, r.learning_rate), (start + 1.0, r.learning_rate_end)]
            })
            .collect(),
    }
}

#[derive(Clone, Copy)]
enum Scale {
    /// From 0 to a little above the largest value.
    FromZero,
    /// Around the values, never beyond 0–100.
    Percent,
}

fn value_range(series: &[Series], scale: Scale) -> (f64, f64) {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .collect();
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    if values.is_empty() {
        return (0.0, 1.0);
    }
    match scale {
        Scale::FromZero => (0.0, if max > 0.0 { max * 1.1 } else { 1.0 }),
        Scale::Percent => {
            let pad = 0.1 * (max - min) + 0.1;
            ((min - pad).max(0.0), (max + pad).min(100.0))
        }
    }
}

/// One panel of `curves.png`: its lines and how to show them.
struct Panel<'a> {
    title: &'a str,
    y_description: &'a str,
    series: &'a [Series],
    scale: Scale,
    legend_at: SeriesLabelPosition,
}

/// The epochs the series span: at least one epoch wide, from at most epoch 1.
fn epoch_range(series: &[Series]) -> (f64, f64) {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let x_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(x_max, f64::min)
        .min(x_max - 1.0);
    (x_min, x_max)
}

/// Past this many points a series is drawn without dots (a learning rate drawn per step).
const MAX_DOTS: usize = 200;

/// One series as a line with a dot at each point, named in the legend.
fn draw_line<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    s: &Series,
) -> Result<()> {
    let color = s.color;
    drawing(chart.draw_series(LineSeries::new(
        s.points.iter().copied(),
        color.stroke_width(2),
    )))?
    .label(s.label)
    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    // A dot per epoch marks where the values were taken; a line drawn per step has no dots.
    if s.points.len() <= MAX_DOTS {
        drawing(
            chart.draw_series(
                s.points
                    .iter()
                    .map(move |&p| Circle::new(p, 3, color.filled())),
            ),
        )?;
    }
    Ok(())
}

/// Draws a panel, with a dashed line at the kept epoch when there is one.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    spec: &Panel,
    chosen_epoch: Option<usize>,
) -> Result<()> {
    let Panel {
        title,
        y_description,
        series,
        scale,
        ..
    } = *spec;
    let (x_min, x_max) = epoch_range(series);
    let (y_min, y_max) = value_range(series, scale);
    let mut chart = drawing(
        ChartBuilder::on(area)
            .caption(title, bold(22.0))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x_min..x_max, y_min..y_max),
    )?;
    let x_ticks = ((x_max - x_min).round() as usize + 1).clamp(2, 11);
    let y_format = tick_labels(y_min..y_max, scale);
    drawing(
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_description)
            .x_labels(x_ticks)
            .y_labels(Y_LABELS)
            .x_label_formatter(&epoch_label)
            .y_label_formatter(&y_format)
            .label_style(text(15.0))
            .axis_desc_style(text(16.0))
            .light_line_style(RGBColor(235, 235, 235))
            .draw(),
    )?;
    if let Some(epoch) = chosen_epoch {
        let x = epoch as f64;
        drawing(chart.draw_series(DashedLineSeries::new(
            [(x, y_min), (x, y_max)],
            6,
            4,
            CHOSEN.stroke_width(1),
        )))?
        .label(format!("kept: epoch {epoch}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CHOSEN.stroke_width(1)));
    }
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        draw_line(&mut chart, s)?;
    }
    drawing(
        chart
            .configure_series_labels()
            .position(spec.legend_at.clone())
            .label_font(text(15.0))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw(),
    )?;
    Ok(())
}

/// The confusion matrix as a heat map: correct predictions in blue (shade: the row's recall),
/// mistakes in red (shade: the count against the largest mistake count), counts in the cells.
pub fn confusion(matrix: &ConfusionMatrix, title: &str) -> Result<Canvas> {
    let (width, height) = CONFUSION_SIZE;
    let mut canvas = Canvas::new(width, height);
    let classes = matrix.classes();
    let (left, top) = (120i32, 80i32);
    let largest_mistake = (0..classes)
        .flat_map(|t| (0..classes).filter(move |&p| p != t).map(move |p| (t, p)))
        .map(|(t, p)| matrix.rows()[t][p])
        .max()
        .unwrap_or(0)
        .max(1);
    canvas.draw(|area| {
        label(
            area,
            title.to_owned(),
            (width as i32 / 2, 30),
            centred(bold(22.0)),
        )?;
        for (t, row) in matrix.rows().iter().enumerate() {
            let support: u64 = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let shade = if t == p {
                    count as f64 / support.max(1) as f64
                } else if count > 0 {
                    0.15 + 0.85 * count as f64 / largest_mistake as f64
                } else {
                    0.0
                };
                let cell = Cell {
                    at: (left + p as i32 * CELL, top + t as i32 * CELL),
                    count,
                    shade,
                    correct: t == p,
                };
                cell.draw(area)?;
            }
        }
        confusion_axes(area, classes, (left, top))
    })?;
    Ok(canvas)
}

/// What the pictures are drawn on.
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// The side of a confusion matrix's cell, in pixels.
const CELL: i32 = 56;

/// One cell of the confusion matrix: where, its count, and how deep its colour is.
struct Cell {
    at: (i32, i32),
    count: u64,
    shade: f64,
    correct: bool,
}

impl Cell {
    fn draw(&self, area: &Area) -> Result<()> {
        let (x, y) = self.at;
        let color = blend(
            WHITE,
            if self.correct { DIAGONAL } else { ERRORS },
            self.shade,
        );
        let corners = [(x, y), (x + CELL, y + CELL)];
        drawing(area.draw(&Rectangle::new(corners, color.filled())))?;
        drawing(area.draw(&Rectangle::new(corners, RGBColor(210, 210, 210))))?;
        let ink = if self.shade > 0.55 { WHITE } else { BLACK };
        label(
            area,
            self.count.to_string(),
            (x + CELL / 2, y + CELL / 2),
            centred(text(15.0)).color(&ink),
        )
    }
}

/// The digits along both sides of the matrix whose top left corner is at `origin`, and the
/// axes' names.
fn confusion_axes(area: &Area, classes: usize, (left, top): (i32, i32)) -> Result<()> {
    let grid = CELL * classes as i32;
    for c in 0..classes as i32 {
        let middle = c * CELL + CELL / 2;
        label(
            area,
            c.to_string(),
            (left + middle, top + grid + 16),
            centred(text(17.0)),
        )?;
        label(
            area,
            c.to_string(),
            (left - 16, top + middle),
            centred(text(17.0)),
        )?;
    }
    label(
        area,
        "predicted digit",
        (left + grid / 2, top + grid + 46),
        centred(text(18.0)),
    )?;
    for (i, word) in ["true", "digit"].iter().enumerate() {
        label(
            area,
            *word,
            (left / 2 - 14, top + grid / 2 - 10 + 22 * i as i32),
            centred(text(18.0)),
        )?;
    }
    Ok(())
}

/// At most this many labels on a panel's value axis.
const Y_LABELS: usize = 8;

/// The labels of a value axis: every tick plotters will draw for `range` is shown exactly,
/// in fixed point (percentages, and values from 0.01 up, with the same decimals down the axis)
/// or in scientific notation below (learning rates), so no two ticks read alike.
fn tick_labels(range: std::ops::Range<f64>, scale: Scale) -> impl Fn(&f64) -> String {
    let coord: RangedCoordf64 = range.into();
    let ticks = coord.key_points(Y_LABELS);
    let least = match scale {
        Scale::Percent => 1,
        Scale::FromZero => 2,
    };
    let decimals = ticks
        .iter()
        .filter(|y| y.abs() >= 0.01)
        .map(|&y| exact_decimals(y, |p| format!("{y:.p$}")))
        .fold(least, usize::max);
    move |&y: &f64| {
        if y == 0.0 {
            "0".to_owned()
        } else if y.abs() >= 0.01 || matches!(scale, Scale::Percent) {
            format!("{y:.decimals$}")
        } else {
            let p = exact_decimals(y, |p| format!("{y:.p$e}"));
            format!("{y:.p$e}")
        }
    }
}

/// The fewest decimals (up to 6) with which `format` shows `y` as it is.
fn exact_decimals(y: f64, format: impl Fn(usize) -> String) -> usize {
    (0..=6)
        .find(|&p| {
            let shown: f64 = format(p).parse().unwrap_or(f64::NAN);
            (shown - y).abs() <= 1e-9 * y.abs()
        })
        .unwrap_or(6)
}

/// Epoch labels only at whole epochs.
fn epoch_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::records::sample_record as record;
    use crate::train::TrainOptions;

    #[test]
    fn the_learning_rate_panel_appears_only_when_the_rate_changed() {
        // A fine-tuning run's epoch 0 has rate 0 and does not count as a change.
        let constant = [
            record(0, 0.0, 0.0),
            record(1, 1e-3, 1e-3),
            record(2, 1e-3, 1e-3),
        ];
        assert!(!has_schedule(&constant));
        assert_eq!(curves_size(&constant), (1200, 450));
        let cosine = [record(1, 1e-3, 5e-4), record(2, 5e-4, 0.0)];
        assert!(has_schedule(&cosine));
        assert_eq!(curves_size(&cosine), (1800, 450));
    }

    /// The ranges that once showed "89.7" twice, "99.0" twice and "2e-3" twice.
    #[test]
    fn no_two_ticks_of_an_axis_read_alike() {
        for (range, scale) in [
            (89.62..89.78, Scale::Percent),
            (98.95..99.08, Scale::Percent),
            (0.0..100.0, Scale::Percent),
            (0.0..0.0011, Scale::FromZero),
            (0.0..0.011, Scale::FromZero),
            (0.0..0.0033, Scale::FromZero),
            (0.0..0.052, Scale::FromZero),
            (0.0..2.6, Scale::FromZero),
        ] {
            let coord: RangedCoordf64 = range.clone().into();
            let ticks = coord.key_points(Y_LABELS);
            let label = tick_labels(range.clone(), scale);
            let labels: Vec<String> = ticks.iter().map(|&y| label(&y)).collect();
            let mut unique = labels.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), labels.len(), "{range:?}: {labels:?}");
            for (y, text) in ticks.iter().zip(&labels) {
                let shown: f64 = text.parse().unwrap();
                assert!((shown - y).abs() <= 1e-9 * y.abs(), "{y} shown as {text}");
            }
        }
    }

    /// A one-cycle run's peak (at 30% of its steps) is drawn, though no epoch starts or ends there.
    #[test]
    fn a_schedule_that_moves_within_epochs_is_drawn_per_step() {
        let options = TrainOptions {
            schedule: crate::optim::schedule::Schedule::Onecycle,
            learning_rate: 1e-2,
            ..TrainOptions::default()
        };
        let epochs: Vec<_> = (1..=4).map(|e| record(e, 1e-3, 1e-3)).collect();
        let (clock, steps_per_epoch) = ScheduleClock::of_run(&options, 1000);
        let points = rate_points(&epochs, &clock, steps_per_epoch);
        let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
        assert!((peak - 1e-2).abs() < 1e-4, "peak {peak}");
        assert!(points.len() <= MAX_RATE_POINTS + 1);
        let (constant_clock, _) = ScheduleClock::of_run(&TrainOptions::default(), 1000);
        let constant = rate_points(&epochs, &constant_clock, steps_per_epoch);
        assert_eq!(constant.len(), 8);
    }

    #[test]
    fn curves_and_confusion_draw_at_their_sizes_even_for_one_epoch() {
        let canvas = curves(&[record(1, 1e-3, 1e-3)], Some(1), Vec::new()).unwrap();
        assert_eq!((canvas.width, canvas.height), (1200, 450));
        // Something besides white paper was drawn.
        assert!(canvas.pixels.iter().any(|&p| p < 128));
        let matrix = ConfusionMatrix::from_labels(&[0, 1, 1], &[0, 1, 0], 10).unwrap();
        let canvas = confusion(&matrix, "test").unwrap();
        assert_eq!((canvas.width, canvas.height), CONFUSION_SIZE);
    }
}
