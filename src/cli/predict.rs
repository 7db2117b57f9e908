//! `mnist-cnn predict`: the digit in each picture, with its probability and the runners-up.

use super::args::DeviceArgs;
use super::output::{one_line, print_json, shown_path};
use crate::data::images::{self, save_field_png};
use crate::eval::predict::{self, PictureResult};
use crate::io::checkpoint;
use crate::io::inputs::Inputs;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The checkpoint (a run folder, a `.ot` or a `.safetensors`; the architecture comes with
    /// it). Given several times, the models answer as an ensemble: the mean of their
    /// probabilities.
    #[arg(long = "model", value_name = "PATH", required = true)]
    pub models: Vec<PathBuf>,

    /// Test-time augmentation: also show each model the picture turned 7° each way, and
    /// average the three answers.
    #[arg(long)]
    pub tta: bool,

    /// How many candidates to list per picture (1–10).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub top_k: u8,

    /// Write the 28×28 input the network saw for the first readable picture, as PNG (enlarged
    /// 10 times), to see why it answered what it did.
    #[arg(long, value_name = "FILE")]
    pub show_input: Option<PathBuf>,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Print one JSON array on stdout, one object per picture.
    #[arg(long)]
    pub json: bool,

    /// Pictures (PNG, JPEG, GIF, BMP or WebP; any size, dark on light or light on dark), or
    /// folders: every picture under them, recursively, in sorted order.
    #[arg(required = true, value_name = "IMAGE|DIR")]
    pub images: Vec<PathBuf>,
}

pub fn run(args: &PredictArgs) -> Result<()> {
    let pictures = images::pictures_in(&args.images)?;
    if let Some(out) = &args.show_input {
        Inputs::new()
            .checkpoints(&args.models)
            .files(&pictures)
            .refuse(out, "--show-input")?;
    }
    let device = args.compute.resolve()?;
    let precision = args.compute.precision(device)?;
    let model =
        checkpoint::load_ensemble(&args.models, device, args.tta)?.with_precision(precision);
    let prepared = predict::prepare(&pictures);
    if let Some(out) = &args.show_input {
        if let Some(field) = prepared.iter().find_map(|p| p.field.as_ref().ok()) {
            save_field_png(field, out, 10)
                .with_context(|| format!("--show-input {}", out.display()))?;
        }
    }
    let results = predict::predict(&model, &prepared, usize::from(args.top_k));
    if args.json {
        print_json(&results)?;
    } else {
        for result in &results {
            print_line(result);
        }
    }
    let failed: Vec<_> = results.iter().filter(|r| r.is_error()).collect();
    if !failed.is_empty() {
        for result in &failed {
            if let PictureResult::Failed { error, .. } = result {
                eprintln!("error: {}", one_line(error));
            }
        }
        bail!(
            "{} of {} pictures could not be read",
            failed.len(),
            results.len()
        );
    }
    Ok(())
}

fn print_line(result: &PictureResult) {
    match result {
        PictureResult::Predicted {
            path,
            digit,
            probability,
            top_k,
        } => {
            let others: Vec<String> = top_k
                .iter()
                .map(|c| format!("{} {:.1}%", c.digit, 100.0 * c.probability))
                .collect();
            println!(
                "{}: {digit} ({:.1}%)   top {}: {}",
                shown_path(path),
                100.0 * probability,
                top_k.len(),
                others.join(", ")
            );
        }
        PictureResult::Failed { path, error } => {
            println!("{}: error: {}", shown_path(path), one_line(error));
        }
    }
}
