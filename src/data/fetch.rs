//! Getting the four MNIST files into a folder: downloaded from public mirrors (tried in order)
//! or imported from a local folder, decompressed, verified, and written atomically.
//!
//! A file already present and valid is left alone, so the command is cheap to repeat.

use super::{idx, MnistFile, MNIST_FILES};
use crate::{fsutil, progress};
use anyhow::{bail, ensure, Context, Result};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{debug, warn};

/// The public mirrors, in the order they are tried (the first is PyTorch's, the second
/// TensorFlow's; the original site is last since it often refuses scripted downloads).
pub const DEFAULT_MIRRORS: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// No MNIST file is larger than this, compressed or not; anything bigger is refused rather than
/// read into memory.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// How the files are checked after decompression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Structure and the canonical SHA-256 digests (the real MNIST).
    Canonical,
    /// Structure only: for other datasets in the MNIST format, such as Fashion-MNIST.
    StructureOnly,
}

/// What may happen to a file already in the target folder that is not the one being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it only when it is damaged (not a valid idx file): a valid file of another
    /// dataset in the MNIST format is someone's data, and is refused.
    Keep,
    /// Replace it whatever it holds (`--force`).
    Replace,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    AlreadyPresent,
    Written { source: String },
}

/// What happened to one of the four files.
#[derive(Debug)]
pub struct FileOutcome {
    pub file: MnistFile,
    pub outcome: Outcome,
}

/// A file's verified bytes and where they came from (a URL or a path).
struct Obtained {
    raw: Vec<u8>,
    source: String,
}

/// Downloads whichever of the four files is missing or invalid in `dir`, trying each mirror in
/// turn until one serves a file that decompresses and verifies.
pub fn download(
    dir: &Path,
    mirrors: &[String],
    verify_mode: Verify,
    existing: Existing,
) -> Result<Vec<FileOutcome>> {
    ensure!(!mirrors.is_empty(), "no mirror to download MNIST from");
    let agent = http_agent();
    for_each_missing(dir, verify_mode, existing, |file| {
        let mut failures = Vec::new();
        for mirror in mirrors {
            let url = format!("{}/{}.gz", mirror.trim_end_matches('/'), file.name);
            let attempt = download_gz(&agent, &url)
                .and_then(|gz| gunzip(&gz, &url))
                .and_then(|raw| verify(file, &raw, verify_mode).map(|_| raw));
            match attempt {
                Ok(raw) => return Ok(Obtained { raw, source: url }),
                Err(err) => {
                    warn!("{}: rejected {url}: {err:#}", file.name);
                    failures.push(format!("{url}: {err:#}"));
                }
            }
        }
        bail!(
            "could not get {} from any mirror:\n  {}\n(on a machine without internet, copy the files and use `mnist-cnn data --from DIR`)",
            file.name,
            failures.join("\n  ")
        )
    })
}

/// Imports whichever of the four files is missing or invalid in `dir` from the folder `src`,
/// which holds them raw or gzipped (`train-images-idx3-ubyte` or `train-images-idx3-ubyte.gz`;
/// the `train-images.idx3-ubyte` spelling of some copies is accepted too).
pub fn import(
    dir: &Path,
    src: &Path,
    verify_mode: Verify,
    existing: Existing,
) -> Result<Vec<FileOutcome>> {
    ensure!(
        src.is_dir(),
        "--from {}: no such folder (it should hold the four MNIST files, raw or .gz)",
        src.display()
    );
    for_each_missing(dir, verify_mode, existing, |file| {
        let path = find_source_file(src, file)?;
        let bytes = read_limited(&path)?;
        let raw = if is_gzip(&bytes) {
            gunzip(&bytes, &path.display().to_string())?
        } else {
            bytes
        };
        verify(file, &raw, verify_mode).with_context(|| path.display().to_string())?;
        Ok(Obtained {
            raw,
            source: path.display().to_string(),
        })
    })
}

/// Runs `obtain` for each file that is missing or damaged in `dir` (or, with
/// [`Existing::Replace`], not the expected one), verifies what it returns, and writes it
/// atomically.
fn for_each_missing(
    dir: &Path,
    verify_mode: Verify,
    existing: Existing,
    mut obtain: impl FnMut(MnistFile) -> Result<Obtained>,
) -> Result<Vec<FileOutcome>> {
    fsutil::create_dir_all(dir)?;
    let mut outcomes = Vec::new();
    for file in MNIST_FILES {
        let target = dir.join(file.name);
        match check_existing(&target, file, verify_mode) {
            Ok(()) => {
                debug!("{}: present and valid", target.display());
                outcomes.push(FileOutcome {
                    file,
                    outcome: Outcome::AlreadyPresent,
                });
                continue;
            }
            Err(err) if target.exists() => {
                refuse_replacing_data(&target, file, existing, &err)?;
                warn!("{}: replacing: {err:#}", target.display());
            }
            Err(_) => {}
        }
        let Obtained { raw, source } = obtain(file)?;
        fsutil::write_bytes_atomically(&target, &raw)?;
        debug!("{}: written from {source}", target.display());
        outcomes.push(FileOutcome {
            file,
            outcome: Outcome::Written { source },
        });
    }
    Ok(outcomes)
}

fn check_existing(path: &Path, file: MnistFile, verify_mode: Verify) -> Result<()> {
    ensure!(path.exists(), "{} is missing", path.display());
    let bytes = read_limited(path)?;
    verify(file, &bytes, verify_mode).with_context(|| path.display().to_string())
}

/// Refuses to replace `target` (which failed `problem`'s check) when it is not a regular file,
/// or when it is a valid idx file of other data and `existing` does not allow replacing it.
fn refuse_replacing_data(
    target: &Path,
    file: MnistFile,
    existing: Existing,
    problem: &anyhow::Error,
) -> Result<()> {
    ensure!(
        fsutil::is_regular_file(target),
        "{} exists and is not a regular file; remove it or choose another --dir",
        target.display()
    );
    let holds_other_data =
        read_limited(target).is_ok_and(|bytes| verify(file, &bytes, Verify::StructureOnly).is_ok());
    if holds_other_data && existing == Existing::Keep {
        bail!(
            "{} holds a valid idx file that is not the one being written ({problem:#}); it is \
             left alone: pass --force to replace it, or choose another --dir",
            target.display()
        );
    }
    Ok(())
}

/// Checks structure, and the canonical digest unless told otherwise.
pub fn verify(file: MnistFile, raw: &[u8], verify_mode: Verify) -> Result<()> {
    idx::validate_bytes(raw, file.kind)?;
    if verify_mode == Verify::Canonical {
        let digest = sha256_hex(raw);
        ensure!(
            digest == file.sha256,
            "SHA-256 {digest} is not that of the canonical {} ({}); use --no-verify for other datasets in the MNIST format",
            file.name,
            file.sha256
        );
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn find_source_file(src: &Path, file: MnistFile) -> Result<PathBuf> {
    let dotted = file.name.replace("-idx", ".idx");
    let candidates = [
        file.name.to_owned(),
        format!("{}.gz", file.name),
        dotted.clone(),
        format!("{dotted}.gz"),
    ];
    candidates
        .iter()
        .map(|name| src.join(name))
        .find(|path| path.exists())
        .with_context(|| {
            format!(
                "--from {}: neither {} nor {}.gz is there",
                src.display(),
                file.name,
                file.name
            )
        })
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    fsutil::read_limited(path, MAX_FILE_BYTES, "MNIST file")
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses a gzip stream, refusing one that expands past `MAX_FILE_BYTES`.
fn gunzip(gz: &[u8], source: &str) -> Result<Vec<u8>> {
    ensure!(is_gzip(gz), "{source} is not a gzip file");
    let mut raw = Vec::new();
    GzDecoder::new(gz)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot decompress {source} (damaged or truncated gzip)"))?;
    ensure!(
        raw.len() as u64 <= MAX_FILE_BYTES,
        "{source} decompresses to more than any MNIST file"
    );
    Ok(raw)
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .timeout_global(Some(Duration::from_secs(600)))
        .user_agent(concat!("mnist-cnn/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Downloads one file into memory with a progress bar, refusing anything larger than any MNIST
/// file.
fn download_gz(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>> {
    let mut response = agent.get(url).call().context("request failed")?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length {
        ensure!(
            length <= MAX_FILE_BYTES,
            "the server announces {length} bytes, larger than any MNIST file"
        );
    }
    let name = url.rsplit('/').next().unwrap_or(url).to_owned();
    let bar = progress::bytes_bar(length, &name);
    let mut body = Vec::with_capacity(length.unwrap_or(0) as usize);
    let reader = response
        .body_mut()
        .with_config()
        .limit(MAX_FILE_BYTES)
        .reader();
    bar.wrap_read(reader)
        .read_to_end(&mut body)
        .context("download interrupted")?;
    bar.finish_and_clear();
    if let Some(length) = length {
        ensure!(
            body.len() as u64 == length,
            "received {} of {length} bytes",
            body.len()
        );
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::build;
    use flate2::{write::GzEncoder, Compression};
    use std::fs;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn write_small_dataset(dir: &Path, gz: bool) {
        for file in MNIST_FILES {
            let raw = match file.kind {
                crate::data::IdxKind::Images => build::images(4, |i, p| (i * 7 + p) as u8),
                crate::data::IdxKind::Labels => build::labels(&[0, 1, 2, 3]),
            };
            if gz {
                fs::write(dir.join(format!("{}.gz", file.name)), gzip(&raw)).unwrap();
            } else {
                fs::write(dir.join(file.name), raw).unwrap();
            }
        }
    }

    #[test]
    fn import_decompresses_and_is_idempotent() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        write_small_dataset(src.path(), true);
        let first = import(
            dst.path(),
            src.path(),
            Verify::StructureOnly,
            Existing::Keep,
        )
        .unwrap();
        assert!(first
            .iter()
            .all(|o| matches!(o.outcome, Outcome::Written { .. })));
        let images = fs::read(dst.path().join("train-images-idx3-ubyte")).unwrap();
        assert_eq!(images.len(), 16 + 4 * crate::shape::IMAGE_PIXELS);
        let second = import(
            dst.path(),
            src.path(),
            Verify::StructureOnly,
            Existing::Keep,
        )
        .unwrap();
        assert!(second.iter().all(|o| o.outcome == Outcome::AlreadyPresent));
    }

    #[test]
    fn import_of_non_canonical_files_fails_the_digest_check() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        write_small_dataset(src.path(), false);
        let err = format!(
            "{:#}",
            import(dst.path(), src.path(), Verify::Canonical, Existing::Keep).unwrap_err()
        );
        assert!(err.contains("SHA-256"), "{err}");
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
        assert!(!dst.path().join("train-images-idx3-ubyte").exists());
    }

    #[test]
    fn valid_files_of_other_data_are_replaced_only_when_forced() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        write_small_dataset(src.path(), false);
        write_small_dataset(dst.path(), false);
        let other = fs::read(dst.path().join("train-images-idx3-ubyte")).unwrap();
        let err = import(dst.path(), src.path(), Verify::Canonical, Existing::Keep).unwrap_err();
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        let after = fs::read(dst.path().join("train-images-idx3-ubyte")).unwrap();
        assert_eq!(after, other, "another dataset's file was replaced");
        // Forced, the import goes on to the digest check of the source (which fails here).
        let err = import(dst.path(), src.path(), Verify::Canonical, Existing::Replace).unwrap_err();
        assert!(format!("{err:#}").contains("SHA-256"), "{err:#}");
    }

    #[test]
    fn a_damaged_existing_file_is_replaced() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        write_small_dataset(src.path(), false);
        fs::write(dst.path().join("t10k-labels-idx1-ubyte"), b"garbage").unwrap();
        let outcomes = import(
            dst.path(),
            src.path(),
            Verify::StructureOnly,
            Existing::Keep,
        )
        .unwrap();
        assert!(outcomes
            .iter()
            .all(|o| o.outcome != Outcome::AlreadyPresent));
        assert!(MNIST_FILES.iter().all(|file| {
            check_existing(&dst.path().join(file.name), *file, Verify::StructureOnly).is_ok()
        }));
    }

    #[test]
    fn truncated_gzip_is_rejected() {
        let gz = gzip(&build::labels(&[1; 1000]));
        let err = format!("{:#}", gunzip(&gz[..gz.len() / 2], "x.gz").unwrap_err());
        assert!(err.contains("x.gz"), "{err}");
    }

    #[test]
    fn dotted_names_are_found() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("train-images.idx3-ubyte"), b"").unwrap();
        let found = find_source_file(src.path(), MNIST_FILES[0]).unwrap();
        assert!(found.ends_with("train-images.idx3-ubyte"));
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
