//! Labelled picture folders (`DIR/0/*`, …, `DIR/9/*`), each picture preprocessed as MNIST's
//! digits were; pictures that cannot be used are named and skipped.

use super::decode::{EXTENSIONS, FORMATS};
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

/// The pictures that `paths` name: a file as it is (whatever its name: an error, if it is not a
/// picture, belongs to that file), and for a folder every visible file under it, recursively,
/// whose extension is a picture's ([`EXTENSIONS`]), in sorted order. Links to folders are not
/// followed (no loops); a folder holding no picture is an error naming it.
pub fn pictures_in(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut pictures = Vec::new();
    for path in paths {
        if !path.is_dir() {
            pictures.push(path.clone());
            continue;
        }
        let before = pictures.len();
        collect_pictures(path, &mut pictures)?;
        ensure!(
            pictures.len() > before,
            "{}: no {FORMATS} picture in the folder or below it (by extension: {})",
            path.display(),
            EXTENSIONS.join(", ")
        );
    }
    Ok(pictures)
}

fn collect_pictures(dir: &Path, pictures: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| !is_hidden(path))
        .collect();
    entries.sort();
    for path in entries {
        let is_real_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_real_dir {
            collect_pictures(&path, pictures)?;
        } else if has_picture_extension(&path) && !path.is_dir() {
            pictures.push(path);
        }
    }
    Ok(())
}

fn has_picture_extension(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        EXTENSIONS.contains(&e.as_str())
    })
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The visible files of a folder, sorted by name.
fn picture_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| !path.is_dir() && !is_hidden(path))
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
