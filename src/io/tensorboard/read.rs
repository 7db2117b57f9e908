//! Reading back an event file, for a resumed run that keeps what it had logged. The file may be
//! damaged (a process killed mid-write leaves a cut record) or not ours at all: every record's
//! length and both CRCs are checked before its bytes are trusted, and the first record that
//! fails ends what is read, with the reason.

use super::masked_crc;
use super::proto::Event;
use crate::fsutil;
use anyhow::Result;
use prost::Message;
use std::path::Path;

/// Far more than a run logs (about 200 bytes a sample, 100 KB a picture).
pub const MAX_EVENT_FILE_BYTES: u64 = 256 << 20;

/// The events of a file, up to the first damaged record.
#[derive(Debug, Default)]
pub struct EventsRead {
    pub events: Vec<Event>,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<String>,
}

/// Reads the event file at `path` (a regular file of at most [`MAX_EVENT_FILE_BYTES`]).
pub fn read_events(path: &Path) -> Result<EventsRead> {
    let bytes = fsutil::read_limited(path, MAX_EVENT_FILE_BYTES, "a TensorBoard event file")?;
    Ok(parse_events(&bytes))
}

/// The events of a file's bytes, up to the first record that is cut short, fails a CRC or is
/// not an `Event`.
pub fn parse_events(bytes: &[u8]) -> EventsRead {
    let mut read = EventsRead::default();
    let mut at = 0;
    while at < bytes.len() {
        let (data, used) = match next_record(&bytes[at..]) {
            Ok(record) => record,
            Err(why) => {
                read.damage = Some(format!("the record at byte {at} {why}"));
                break;
            }
        };
        match Event::decode(data) {
            Ok(event) => read.events.push(event),
            Err(e) => {
                read.damage = Some(format!("the record at byte {at} is not an Event: {e}"));
                break;
            }
        }
        at += used;
    }
    read
}

/// The data of the record at the start of `bytes`, and the bytes the record takes.
fn next_record(bytes: &[u8]) -> Result<(&[u8], usize), &'static str> {
    let header = bytes.get(..12).ok_or("is cut short")?;
    let (length_bytes, length_crc) = header.split_at(8);
    if masked_crc(length_bytes).to_le_bytes() != length_crc {
        return Err("has a length whose CRC does not match");
    }
    let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes"));
    let available = (bytes.len() - 12).saturating_sub(4) as u64;
    if length > available {
        return Err("is cut short");
    }
    let length = length as usize;
    let data = &bytes[12..12 + length];
    if masked_crc(data).to_le_bytes() != bytes[12 + length..16 + length] {
        return Err("has data whose CRC does not match");
    }
    Ok((data, 16 + length))
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
        assert!(read.damage.unwrap().contains("cut short"));
    }
}
