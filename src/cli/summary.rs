//! `mnist-cnn summary`: a network's layers, output shapes, parameters and multiply-adds, as
//! Keras's `model.summary()` shows them.

use super::output::print_json;
use crate::io::checkpoint;
use crate::nn::summary::Summary;
use crate::nn::Architecture;
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::Device;

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// The network: `tutorial` or `vgg-N`.
    #[arg(long, value_name = "ARCH", conflicts_with = "model")]
    pub arch: Option<Architecture>,

    /// A checkpoint or a run folder, whose network is summarised (read from its tensors).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &SummaryArgs) -> Result<()> {
    let architecture = match (&args.arch, &args.model) {
        (Some(architecture), _) => *architecture,
        (None, Some(path)) => checkpoint::load(path, Device::Cpu)?.architecture(),
        (None, None) => bail!("give --arch A or --model PATH"),
    };
    let summary = Summary::of(architecture);
    if args.json {
        return print_json(&summary);
    }
    print_table(&summary);
    Ok(())
}

fn print_table(summary: &Summary) {
    println!("{} (input 1×1×28×28)", summary.architecture);
    println!(
        "{:<9} {:<28} {:<18} {:>11} {:>13}",
        "layer", "type", "output shape", "parameters", "mult-adds"
    );
    for layer in &summary.layers {
        let shape: Vec<String> = layer.output_shape.iter().map(|d| d.to_string()).collect();
        println!(
            "{:<9} {:<28} {:<18} {:>11} {:>13}",
            layer.name,
            layer.kind,
            format!("[{}]", shape.join(", ")),
            thousands(layer.parameters),
            thousands(layer.mult_adds)
        );
    }
    println!("total parameters: {}", thousands(summary.parameters));
    println!(
        "multiply-adds per image (forward): {}",
        thousands(summary.mult_adds)
    );
    println!(
        "training FLOPs per image: {} ({:.2} M: forward 2 per multiply-add, backward twice that \
         except the first layer's input gradient)",
        thousands(summary.training_flops_per_image),
        summary.training_flops_per_image as f64 / 1e6
    );
}

/// 34826 → "34,826".
fn thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(34_826), "34,826");
        assert_eq!(thousands(289_130), "289,130");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
