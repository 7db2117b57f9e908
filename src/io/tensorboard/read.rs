//! Reading back an event file, for a resumed run that keeps what it had logged. The file may be
//! damaged (a process killed mid-write leaves a cut record) or not ours at all: every record's
//! length and both CRCs are checked before its bytes are trusted, and the first record that
//! fails ends what is read, with the reason.

use super::masked_crc;
use super::proto::Event;
use crate::fsutil;
use anyhow::{Context, Result};
use prost::Message;
use std::io::{BufReader, Read};
use std::path::Path;

/// The longest record read: far more than a run logs in one (about 200 bytes a sample, 100 KB a
/// picture). A longer one ends the reading as damage. Files are read record by record, so no
/// file's length bounds anything.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// The events of a file, up to the first damaged record.
#[derive(Debug, Default)]
pub struct EventsRead {
    pub events: Vec<Event>,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<String>,
}

/// Reads the event file at `path` (a regular file, opened without blocking) record by record,
/// handing each event to `visit` until it returns false; why reading stopped early, if a record
/// was damaged.
pub fn read_events(path: &Path, visit: impl FnMut(Event) -> bool) -> Result<Option<String>> {
    let file = fsutil::open_regular(path)
        .with_context(|| format!("cannot read the TensorBoard event file {}", path.display()))?;
    read_stream(BufReader::new(file), visit)
        .with_context(|| format!("cannot read the TensorBoard event file {}", path.display()))
}

/// The events of a file's bytes, up to the first record that is cut short, fails a CRC or is
/// not an `Event`.
pub fn parse_events(bytes: &[u8]) -> EventsRead {
    let mut read = EventsRead::default();
    read.damage = read_stream(bytes, |event| {
        read.events.push(event);
        true
    })
    .unwrap_or_else(|e| Some(e.to_string()));
    read
}

/// Reads records from `reader` until its end, a damaged record, or `visit` saying stop.
fn read_stream(
    mut reader: impl Read,
    mut visit: impl FnMut(Event) -> bool,
) -> Result<Option<String>> {
    let mut at = 0u64;
    loop {
        let record = match next_record(&mut reader)? {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(None),
            Err(why) => return Ok(Some(format!("the record at byte {at} {why}"))),
        };
        match Event::decode(record.as_slice()) {
            Ok(event) => {
                if !visit(event) {
                    return Ok(None);
                }
            }
            Err(e) => {
                return Ok(Some(format!(
                    "the record at byte {at} is not an Event: {e}"
                )))
            }
        }
        at += 16 + record.len() as u64;
    }
}

/// The data of the next record (`None` at the end of the stream), or why it is damaged.
fn next_record(reader: &mut impl Read) -> Result<Result<Option<Vec<u8>>, String>> {
    let mut header = [0u8; 12];
    match read_full(reader, &mut header)? {
        0 => return Ok(Ok(None)),
        12 => {}
        _ => return Ok(Err("is cut short".to_owned())),
    }
    let (length_bytes, length_crc) = header.split_at(8);
    if masked_crc(length_bytes).to_le_bytes() != length_crc {
        return Ok(Err("has a length whose CRC does not match".to_owned()));
    }
    let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes"));
    if length > MAX_RECORD_BYTES {
        return Ok(Err(format!(
            "claims {length} bytes, more than the {MAX_RECORD_BYTES} a record may hold"
        )));
    }
    // Grown as the bytes arrive: the length is checked, not yet trusted.
    let mut data = Vec::new();
    (&mut *reader).take(length + 4).read_to_end(&mut data)?;
    if data.len() as u64 != length + 4 {
        return Ok(Err("is cut short".to_owned()));
    }
    let crc = data.split_off(length as usize);
    if masked_crc(&data).to_le_bytes() != crc.as_slice() {
        return Ok(Err("has data whose CRC does not match".to_owned()));
    }
    Ok(Ok(Some(data)))
}

/// Fills `buffer` from `reader` as far as it goes; the bytes read (fewer only at its end).
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::super::{proto, record};
    use super::*;

    fn scalar_event(step: i64) -> Vec<u8> {
        let value = proto::summary::Value {
            tag: "step/train_loss".to_owned(),
            value: Some(proto::summary::value::Value::SimpleValue(0.5)),
            ..Default::default()
        };
        let event = Event {
            step,
            what: Some(proto::event::What::Summary(proto::Summary {
                value: vec![value],
            })),
            ..Default::default()
        };
        record(&event.encode_to_vec())
    }

    fn two_events() -> Vec<u8> {
        [scalar_event(1), scalar_event(2)].concat()
    }

    #[test]
    fn whole_files_read_back_whole() {
        let read = parse_events(&two_events());
        assert_eq!(read.damage, None);
        let steps: Vec<i64> = read.events.iter().map(|e| e.step).collect();
        assert_eq!(steps, [1, 2]);
    }

    #[test]
    fn a_cut_or_damaged_record_ends_the_reading_with_the_reason() {
        let whole = two_events();
        let first_len = scalar_event(1).len();
        let cut = &whole[..whole.len() - 1];
        let mut flipped_data = whole.clone();
        flipped_data[first_len + 14] ^= 1;
        let mut flipped_length = whole.clone();
        flipped_length[first_len] ^= 1;
        let cases = [
            (cut.to_vec(), "is cut short"),
            (flipped_data, "data whose CRC does not match"),
            (flipped_length, "length whose CRC does not match"),
            ([whole.as_slice(), &[1, 2, 3]].concat(), "is cut short"),
        ];
        for (bytes, reason) in cases {
            let read = parse_events(&bytes);
            assert_eq!(
                read.events.len(),
                1 + usize::from(bytes.len() > whole.len())
            );
            let damage = read.damage.unwrap();
            assert!(damage.contains(reason), "{damage}");
        }
        // A length that claims more than the file holds is not trusted.
        let mut huge = (u64::MAX).to_le_bytes().to_vec();
        huge.extend(masked_crc(&huge).to_le_bytes());
        let read = parse_events(&huge);
        assert!(read.events.is_empty());
        assert!(read.damage.unwrap().contains("more than the"));
    }
}
