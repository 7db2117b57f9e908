//! The zip end records, read before the zip crate sees the archive: it sizes its list of
//! entries from the count they declare, so an 8 KB file declaring 200 million entries made it
//! ask for 35 GB. Here the count and the central directory's place are checked against the
//! limits and the file's own length first.

use anyhow::{bail, ensure, Context, Result};
use std::io::{Read, Seek, SeekFrom};

const END_SIGNATURE: [u8; 4] = *b"PK\x05\x06";
const ZIP64_LOCATOR_SIGNATURE: [u8; 4] = *b"PK\x06\x07";
const ZIP64_END_SIGNATURE: [u8; 4] = *b"PK\x06\x06";
/// The end record without its comment, and the longest comment.
const END_LENGTH: u64 = 22;
const MAX_COMMENT: u64 = u16::MAX as u64;
const ZIP64_LOCATOR_LENGTH: u64 = 20;
const ZIP64_END_LENGTH: u64 = 56;
/// The smallest central-directory header (one per entry).
const CENTRAL_HEADER_LENGTH: u64 = 46;

/// What the end records declare.
#[derive(Debug, PartialEq, Eq)]
struct Declared {
    entries: u64,
    directory_size: u64,
    directory_offset: u64,
}

/// Checks the end records of the archive in `source` (at most `max_entries` entries, a central
/// directory inside the file and large enough for them); returns the archive's length, and
/// leaves `source` at its start.
pub fn check<R: Read + Seek>(source: &mut R, max_entries: usize) -> Result<u64> {
    let length = source.seek(SeekFrom::End(0)).context("cannot seek")?;
    let declared = declared(source, length)?;
    ensure!(
        declared.entries <= max_entries as u64,
        "the archive declares {} entries; at most {max_entries} are accepted",
        declared.entries
    );
    let inside = declared
        .directory_offset
        .checked_add(declared.directory_size)
        .is_some_and(|end| end <= length);
    ensure!(
        inside,
        "the archive's central directory ({} bytes at {}) lies beyond its {length} bytes",
        declared.directory_size,
        declared.directory_offset
    );
    ensure!(
        declared.directory_size >= declared.entries * CENTRAL_HEADER_LENGTH,
        "the archive declares {} entries in a central directory of {} bytes",
        declared.entries,
        declared.directory_size
    );
    source.seek(SeekFrom::Start(0)).context("cannot seek")?;
    Ok(length)
}

/// The end record (found from the end, past a comment of up to 64 KiB), and the zip64 one
/// when its locator precedes it.
fn declared<R: Read + Seek>(source: &mut R, length: u64) -> Result<Declared> {
    let tail_length = length.min(END_LENGTH + MAX_COMMENT);
    let tail = read_at(source, length - tail_length, tail_length as usize)?;
    let Some(at) = (0..tail.len().saturating_sub(END_LENGTH as usize - 1))
        .rev()
        .find(|&i| tail[i..].starts_with(&END_SIGNATURE))
    else {
        bail!("not a zip archive: no end record");
    };
    let record = &tail[at..];
    ensure!(
        record.len() as u64 >= END_LENGTH,
        "not a zip archive: the end record is cut short"
    );
    let end_position = length - tail_length + at as u64;
    let mut declared = Declared {
        entries: u64::from(u16_at(record, 10)),
        directory_size: u64::from(u32_at(record, 12)),
        directory_offset: u64::from(u32_at(record, 16)),
    };
    if end_position >= ZIP64_LOCATOR_LENGTH {
        let locator = read_at(
            source,
            end_position - ZIP64_LOCATOR_LENGTH,
            ZIP64_LOCATOR_LENGTH as usize,
        )?;
        if locator.starts_with(&ZIP64_LOCATOR_SIGNATURE) {
            declared = zip64(source, u64_at(&locator, 8), end_position)?;
        }
    }
    Ok(declared)
}

/// The zip64 end record at `offset`, which must lie before the locator at `limit`.
fn zip64<R: Read + Seek>(source: &mut R, offset: u64, limit: u64) -> Result<Declared> {
    ensure!(
        offset
            .checked_add(ZIP64_END_LENGTH + ZIP64_LOCATOR_LENGTH)
            .is_some_and(|end| end <= limit),
        "the archive's zip64 end record lies at {offset}, outside the archive"
    );
    let record = read_at(source, offset, ZIP64_END_LENGTH as usize)?;
    ensure!(
        record.starts_with(&ZIP64_END_SIGNATURE),
        "the archive's zip64 locator points at no zip64 end record"
    );
    Ok(Declared {
        entries: u64_at(&record, 32),
        directory_size: u64_at(&record, 40),
        directory_offset: u64_at(&record, 48),
    })
}

fn read_at<R: Read + Seek>(source: &mut R, offset: u64, length: usize) -> Result<Vec<u8>> {
    source
        .seek(SeekFrom::Start(offset))
        .context("cannot seek")?;
    let mut bytes = vec![0; length];
    source
        .read_exact(&mut bytes)
        .context("the archive ends early")?;
    Ok(bytes)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A zip64 end record, its locator and a plain end record after `padding` bytes, declaring
    /// `entries` entries in a directory of `size` bytes at `offset`.
    fn zip64_tail(padding: usize, entries: u64, size: u64, offset: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; padding];
        let zip64_at = bytes.len() as u64;
        bytes.extend_from_slice(&ZIP64_END_SIGNATURE);
        bytes.extend_from_slice(&44u64.to_le_bytes());
        bytes.extend_from_slice(&[45, 0, 45, 0]);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&entries.to_le_bytes());
        bytes.extend_from_slice(&entries.to_le_bytes());
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&ZIP64_LOCATOR_SIGNATURE);
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&zip64_at.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&END_SIGNATURE);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&[0xff; 4]);
        bytes.extend_from_slice(&[0xff; 8]);
        bytes.extend_from_slice(&[0; 2]);
        bytes
    }

    /// What tch writes (libtorch always adds the zip64 records) passes, at its real length.
    #[test]
    fn what_tch_writes_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ot");
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0]);
        tch::Tensor::save_multi(&[("a", &t), ("b", &t)], &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let length = check(&mut Cursor::new(&bytes), 65_536).unwrap();
        assert_eq!(length, bytes.len() as u64);
    }

    /// The 200-million-entry archive, and its kin: refused from the end records alone.
    #[test]
    fn declared_counts_and_places_are_checked_before_the_zip_crate_sees_them() {
        let huge = zip64_tail(100, 200_000_000, 9_200_000_000, 0);
        let err = check(&mut Cursor::new(huge), 65_536).unwrap_err();
        assert!(
            err.to_string().contains("declares 200000000 entries"),
            "{err}"
        );
        let beyond = zip64_tail(100, 3, 200, 50);
        let err = check(&mut Cursor::new(beyond), 65_536).unwrap_err();
        assert!(err.to_string().contains("lies beyond"), "{err}");
        let crammed = zip64_tail(100, 60_000, 46, 0);
        let err = check(&mut Cursor::new(crammed), 65_536).unwrap_err();
        assert!(
            err.to_string().contains("central directory of 46 bytes"),
            "{err}"
        );
        let err = check(&mut Cursor::new(b"PK\x03\x04 not a zip".to_vec()), 65_536).unwrap_err();
        assert!(err.to_string().contains("no end record"), "{err}");
        let mut pointing_out = zip64_tail(100, 1, 46, 0);
        let locator = pointing_out.len() - 22 - 20;
        pointing_out[locator + 8..locator + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = check(&mut Cursor::new(pointing_out), 65_536).unwrap_err();
        assert!(err.to_string().contains("outside the archive"), "{err}");
    }
}
