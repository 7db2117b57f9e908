//! Labelled picture folders (`DIR/0/*`, …, `DIR/9/*`), each picture preprocessed as MNIST's
//! digits were; pictures that cannot be used are named and skipped.

use super::preprocess::load_picture;
use crate::data::Split;
use crate::shape::{image_batch, NUM_CLASSES};
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use tch::Tensor;
use tracing::{info, warn};

/// A labelled picture folder, preprocessed.
#[derive(Debug)]
pub struct ImageFolder {
    pub split: Split,
    /// The picture behind each example, in order.
    pub paths: Vec<PathBuf>,
    /// Pictures that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Reads `dir/0/*`, …, `dir/9/*`. Unreadable pictures are reported by name and skipped; the
/// count is logged at the end.
pub fn load_folder(dir: &Path) -> Result<ImageFolder> {
    ensure!(
        dir.is_dir(),
        "--images {}: no such folder (expected DIR/0/*, …, DIR/9/*)",
        dir.display()
    );
    check_folder_names(dir)?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    let mut class_folders = 0;
    for digit in 0..NUM_CLASSES {
        let class_dir = dir.join(digit.to_string());
        if !class_dir.is_dir() {
            continue;
        }
        class_folders += 1;
        for path in picture_files(&class_dir)? {
            match load_picture(&path) {
                Ok(field) => {
                    pixels.extend(field);
                    labels.push(digit);
                    paths.push(path);
                }
                Err(err) => {
                    warn!("skipping {}: {err:#}", path.display());
                    skipped.push((path, format!("{err:#}")));
                }
            }
        }
    }
    ensure!(
        class_folders > 0,
        "--images {}: no class folders 0 … 9 inside",
        dir.display()
    );
    if labels.is_empty() {
        bail!(
            "--images {}: no usable picture ({} skipped)",
            dir.display(),
            skipped.len()
        );
    }
    let summary = format!(
        "{}: {} pictures loaded, {} skipped",
        dir.display(),
        labels.len(),
        skipped.len()
    );
    if skipped.is_empty() {
        info!("{summary}");
    } else {
        warn!("{summary}");
    }
    let split = Split {
        images: image_batch(&pixels),
        labels: Tensor::from_slice(&labels),
    };
    Ok(ImageFolder {
        split,
        paths,
        skipped,
    })
}

/// Refuses folders whose name is a number but not one of the class names 0 … 9 (`10`, `-1`,
/// `07`: a label the user meant, which would otherwise be silently left out), and names every
/// other entry that is skipped.
fn check_folder_names(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let is_class = name.len() == 1 && name.as_bytes()[0].is_ascii_digit();
        if is_class || name.starts_with('.') {
            continue;
        }
        if name.parse::<i64>().is_ok() {
            bail!(
                "--images {}: {name:?} is not a class folder: classes are the folders 0 … 9, \
                 named by one digit",
                dir.display()
            );
        }
        warn!(
            "--images {}: skipping {name:?}, which is not a class folder 0 … 9",
            dir.display()
        );
    }
    Ok(())
}

/// The visible files of a folder, sorted by name.
fn picture_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| !path.is_dir())
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_skips_bad_pictures_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for digit in ["3", "7"] {
            fs::create_dir(dir.path().join(digit)).unwrap();
            let rgb = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(64, 64, |x, y| {
                image::Luma([if (20..30).contains(&x) && (10..50).contains(&y) {
                    20
                } else {
                    230
                }])
            }))
            .to_rgb8();
            rgb.save(dir.path().join(digit).join("a.png")).unwrap();
            rgb.save(dir.path().join(digit).join("b.jpg")).unwrap();
        }
        fs::write(dir.path().join("7").join("corrupt.png"), b"garbage").unwrap();
        let folder = load_folder(dir.path()).unwrap();
        assert_eq!(folder.split.len(), 4);
        assert_eq!(folder.split.label_vec(), vec![3, 3, 7, 7]);
        assert_eq!(folder.skipped.len(), 1);
        assert!(folder.skipped[0].0.ends_with("7/corrupt.png"));
    }
}
