//! Files in and out.
//!
//! - Reads: every file the tool reads may be hostile, so [`open_regular`] opens without blocking
//!   and refuses anything that is not a regular file (a FIFO named config.json would block a
//!   plain `open` forever; a device file never ends), and [`read_limited`] refuses files larger
//!   than their kind can be before reading them.
//! - Writes: every file the tool produces is written to a temporary file in the same folder,
//!   flushed to disk, and renamed into place, so a crash or a kill leaves either the old
//!   complete file or the new complete file, never a half-written one. [`refuse_overwriting`]
//!   keeps an output from replacing one of the command's inputs.

use anyhow::{bail, ensure, Context, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use tempfile::NamedTempFile;

/// What a path is, in words, for a message about a file that should have been a regular one.
fn kind_of(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_fifo() {
        "a named pipe (FIFO)"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` to read, refusing anything but a regular file (symbolic links are followed).
///
/// The file is opened with `O_NONBLOCK`, so that a FIFO cannot hold the open, and its type is
/// checked on the open descriptor, so that nothing can be swapped in between check and read.
pub fn open_regular(path: &Path) -> Result<File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let file_type = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .file_type();
    ensure!(
        file_type.is_file(),
        "{} is {}, not a regular file",
        path.display(),
        kind_of(file_type)
    );
    Ok(file)
}

/// Whether `path` is a regular file (following links), without opening it.
pub fn is_regular_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The bytes of the regular file `path` (see [`open_regular`]), refused when it holds more than
/// `max_bytes`: `what` says what kind of file it is ("checkpoint") in that message.
pub fn read_limited(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    ensure!(
        size <= max_bytes,
        "{} holds {size} bytes; a {what} is at most {max_bytes}",
        path.display()
    );
    let mut bytes = Vec::with_capacity(size as usize);
    // A file that grows while it is read stops at the limit too.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        bytes.len() as u64 <= max_bytes,
        "{} grew beyond {max_bytes} bytes while it was read",
        path.display()
    );
    Ok(bytes)
}

/// [`read_limited`] for a text file, which must be UTF-8.
pub fn read_text_limited(path: &Path, max_bytes: u64, what: &str) -> Result<String> {
    let bytes = read_limited(path, max_bytes, what)?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// Refuses to write `output` (given by `output_flag`) when it is the same file as one of
/// `inputs`: writing an export over the checkpoint it came from would destroy the checkpoint.
/// Paths are compared by the file they name (device and inode), so `./a` and `a` and links to
/// it are the same.
pub fn refuse_overwriting(output: &Path, output_flag: &str, inputs: &[&Path]) -> Result<()> {
    for input in inputs {
        if same_file(output, input) {
            bail!(
                "{output_flag} {} is {}, an input of this command; choose another path",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Whether both paths exist and name the same file or folder (device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Writes a file atomically through `write`, which receives a buffered writer.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut temp = temp_file_beside(path)?;
    {
        let mut writer = BufWriter::new(temp.as_file_mut());
        write(&mut writer).with_context(|| format!("cannot write {}", path.display()))?;
        writer
            .flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    persist(temp, path)
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| Ok(w.write_all(bytes)?))
}

/// Writes `bytes` to `path` atomically, through a temporary file whose name starts with
/// `temp_prefix` (for folders that a reader watches by name: TensorBoard's).
pub fn write_bytes_atomically_as(path: &Path, bytes: &[u8], temp_prefix: &str) -> Result<()> {
    let mut temp = temp_file_named(parent_dir(path), temp_prefix, path)?;
    temp.as_file_mut()
        .write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    persist(temp, path)
}

/// Writes a file atomically through a function that only accepts a path (libtorch's savers).
/// The saver writes `path`'s own file name inside a fresh temporary folder beside it, which is
/// then renamed into place: libtorch names the entries of a `.ot` archive after the file, so a
/// temporary file name would end up inside the file, and two saves of the same weights would
/// differ.
pub fn save_atomically(path: &Path, save: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let (name, prefix) = temp_prefix(path)?;
    let dir = parent_dir(path);
    let temp_dir = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .tempdir_in(dir)
        .with_context(|| cannot_create("a folder", dir, path))?;
    let temp = temp_dir.path().join(name);
    save(&temp).with_context(|| format!("cannot write {}", path.display()))?;
    let file = File::open(&temp).with_context(|| format!("cannot write {}", path.display()))?;
    finish_file(&file, path)?;
    fs::rename(&temp, path)
        .with_context(|| format!("cannot move the new {} into place", path.display()))?;
    // The temporary folder, empty now, goes when `temp_dir` is dropped.
    Ok(())
}

/// Every temporary ends so (`.NAME.XXXXXX.tmp`, a file or a save's folder), which is how a run
/// folder knows a write's leftovers (`run_folder::is_temporary_run_file`).
const TEMP_SUFFIX: &str = ".tmp";

/// `path`'s file name, and the prefix of the temporaries that write it (`.NAME.`).
fn temp_prefix(path: &Path) -> Result<(&std::ffi::OsStr, String)> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    Ok((name, format!(".{}.", name.to_string_lossy())))
}

fn temp_file_beside(path: &Path) -> Result<NamedTempFile> {
    let (_, prefix) = temp_prefix(path)?;
    temp_file_named(parent_dir(path), &prefix, path)
}

/// A temporary file in `dir` for writing `path`.
fn temp_file_named(dir: &Path, prefix: &str, path: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .with_context(|| cannot_create("a file", dir, path))
}

fn cannot_create(what: &str, dir: &Path, path: &Path) -> String {
    format!(
        "cannot create {what} in {} (for {})",
        dir.display(),
        path.display()
    )
}

/// Flushes the temporary file to disk and renames it over `path`, readable by all as a file
/// written by `open` would be (temporary files start private).
fn persist(temp: NamedTempFile, path: &Path) -> Result<()> {
    finish_file(temp.as_file(), path)?;
    temp.persist(path)
        .with_context(|| format!("cannot move the new {} into place", path.display()))?;
    Ok(())
}

/// Makes a finished temporary file for `path` readable by all and flushes it to disk.
fn finish_file(file: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot flush {} to disk", path.display()))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and its parents, with an error that names it.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_that_fails_midway_leaves_the_previous_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.ot");
        write_bytes_atomically(&path, b"the previous checkpoint").unwrap();
        // What a full disk looks like to the writer: some bytes go out, then ENOSPC.
        let err = write_atomically(&path, |w| {
            w.write_all(&[0u8; 4096])?;
            Err(std::io::Error::from_raw_os_error(28).into())
        })
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("model.ot") && message.contains("No space left"),
            "{message}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"the previous checkpoint");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "left behind: {names:?}");
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_bytes_atomically(&path, b"old").unwrap();
        write_bytes_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_bytes_atomically(&path, b"old").unwrap();
        let result = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(result.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn save_atomically_keeps_the_extension_for_the_saver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.ot");
        save_atomically(&path, |temp| {
            assert_eq!(temp.extension().unwrap(), "ot");
            fs::write(temp, b"weights")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"weights");
    }

    #[test]
    fn only_regular_files_are_read_and_a_fifo_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let err = read_limited(&fifo, 100, "run configuration").unwrap_err();
        assert!(format!("{err:#}").contains("named pipe"), "{err:#}");
        let err = read_limited(dir.path(), 100, "run configuration").unwrap_err();
        assert!(format!("{err:#}").contains("a folder"), "{err:#}");
        let err = read_limited(Path::new("/dev/zero"), 100, "checkpoint").unwrap_err();
        assert!(format!("{err:#}").contains("a device"), "{err:#}");
        let file = dir.path().join("ok.json");
        fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_limited(&file, 10, "x").unwrap(), b"0123456789");
        let err = read_limited(&file, 9, "run configuration").unwrap_err();
        assert!(
            err.to_string().contains("a run configuration is at most 9"),
            "{err}"
        );
    }

    #[test]
    fn an_output_may_not_be_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.ot");
        fs::write(&model, b"weights").unwrap();
        let same = dir.path().join(".").join("model.ot");
        let err = refuse_overwriting(&same, "--out", &[&model]).unwrap_err();
        assert!(err.to_string().contains("an input"), "{err}");
        let other = dir.path().join("model.npz");
        assert!(refuse_overwriting(&other, "--out", &[&model]).is_ok());
        fs::write(&other, b"old export").unwrap();
        assert!(refuse_overwriting(&other, "--out", &[&model]).is_ok());
    }

    #[test]
    fn writing_into_a_missing_folder_names_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.json");
        let err = write_bytes_atomically(&path, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
