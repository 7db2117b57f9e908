//! `mnist-cnn data`: download or import MNIST, verify it, and write it where `train` reads it.

use crate::data;
use crate::data::fetch::{self, Existing, FileOutcome, Outcome, Verify, DEFAULT_MIRRORS};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Folder to write the four raw idx files into.
    #[arg(long, default_value = data::DEFAULT_DIR)]
    pub dir: PathBuf,

    /// Import from a local folder holding the four files, gzipped or raw, instead of downloading.
    #[arg(long, value_name = "SRC")]
    pub from: Option<PathBuf>,

    /// Download from this mirror (a URL prefix; repeat to try several in order) instead of the
    /// default public mirrors.
    #[arg(long, value_name = "URL")]
    pub mirror: Vec<String>,

    /// Check structure only, not the canonical MNIST digests: for other datasets in the MNIST
    /// format, such as Fashion-MNIST.
    #[arg(long)]
    pub no_verify: bool,

    /// Replace files in --dir that are valid idx files but not the ones being written (another
    /// dataset in the MNIST format); without it they are left alone and the command fails.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &DataArgs) -> Result<()> {
    let verify = if args.no_verify {
        Verify::StructureOnly
    } else {
        Verify::Canonical
    };
    let existing = if args.force {
        Existing::Replace
    } else {
        Existing::Keep
    };
    let outcomes = match &args.from {
        Some(src) => fetch::import(&args.dir, src, verify, existing)?,
        None => {
            let mirrors: Vec<String> = if args.mirror.is_empty() {
                DEFAULT_MIRRORS.iter().map(|m| m.to_string()).collect()
            } else {
                args.mirror.clone()
            };
            fetch::download(&args.dir, &mirrors, verify, existing)?
        }
    };
    for FileOutcome { file, outcome } in outcomes {
        let path = args.dir.join(file.name);
        match outcome {
            Outcome::AlreadyPresent => println!("{}  already present, verified", path.display()),
            Outcome::Written { source } => println!("{}  written from {source}", path.display()),
        }
    }
    Ok(())
}
