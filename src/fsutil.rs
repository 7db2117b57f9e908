//! Atomic file writes: every file the tool produces is written to a temporary file in the same
//! folder, flushed to disk, and renamed into place, so a crash or a kill leaves either the old
//! complete file or the new complete file, never a half-written one.

use anyhow::{Context, Result};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use tempfile::NamedTempFile;

/// Writes a file atomically through `write`, which receives a buffered writer.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut temp = temp_file_beside(path, "")?;
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

/// Writes a file atomically through a function that only accepts a path (libtorch's savers).
/// The temporary path keeps `path`'s extension, since savers choose the format from it.
pub fn save_atomically(path: &Path, save: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let temp = temp_file_beside(path, &extension)?;
    save(temp.path()).with_context(|| format!("cannot write {}", path.display()))?;
    persist(temp, path)
}

fn temp_file_beside(path: &Path, suffix: &str) -> Result<NamedTempFile> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(&format!(".tmp{suffix}"))
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot create a file in {} (for {})",
                dir.display(),
                path.display()
            )
        })
}

/// Flushes the temporary file to disk and renames it over `path`, readable by all as a file
/// written by `open` would be (temporary files start private).
fn persist(temp: NamedTempFile, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    temp.as_file()
        .sync_all()
        .with_context(|| format!("cannot flush {} to disk", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot move the new {} into place", path.display()))?;
    Ok(())
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
    fn writing_into_a_missing_folder_names_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.json");
        let err = write_bytes_atomically(&path, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
