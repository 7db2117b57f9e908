//! Small `.ot` files that once cost unbounded stack, memory or time (the second hostile
//! review): each must end in one clear error naming the file, with no signal, under a memory
//! limit (`ulimit -v`) and within the test's time limit.

use crate::common::*;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tch::{Kind, Tensor};

/// The address space the tool may map: 3.5 GiB. libtorch's libraries (CUDA's among them, mapped
/// but not touched) take about 2.5-3 GiB of it (`summary --arch tutorial` needs 2.5-2.9 GiB);
/// what is left for the checkpoint, well under 1 GiB, is far below what these files once took
/// (2.1 GB, 35 GB).
const ADDRESS_SPACE_KB: u64 = 3_584 << 10;

/// `mnist-cnn summary --model FILE` under [`ADDRESS_SPACE_KB`] of address space, killed after
/// 60 s.
fn summary_bounded(file: &Path) -> Output {
    let tool = env!("CARGO_BIN_EXE_mnist-cnn");
    let mut command = std::process::Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KB} && exec \"$0\" \"$@\""
        ))
        .arg(tool)
        .args(["summary", "--model", file.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("OMP_NUM_THREADS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("summary of {} did not end", file.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A libtorch-style archive: `data.pkl` and the storages `data/KEY` under one folder, stored.
fn write_archive(path: &Path, pickle: &[u8], storages: &[(&str, &[u8])]) {
    let mut writer = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let stored =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    writer.start_file("archive/data.pkl", stored).unwrap();
    writer.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        writer
            .start_file(format!("archive/data/{key}"), stored)
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap();
}

fn scratch_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// 200,000 nested one-item tuples: once a stack overflow (in the recursive drop), now refused
/// at the 101st level.
#[test]
fn deeply_nested_values_are_refused_at_the_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = scratch_file(&dir, "deep.ot");
    let mut pickle = b"\x80\x02)".to_vec();
    pickle.extend(std::iter::repeat_n(0x85u8, 200_000));
    pickle.push(b'.');
    write_archive(&path, &pickle, &[]);
    let output = summary_bounded(&path);
    assert_clean_failure(&output, &["deep.ot", "more than 100 deep"]);
}

/// An 8 KB sparse file whose zip64 end record declares 200 million entries: once an abort
/// asking for 35 GB, now refused from its end records before anything is allocated or read.
#[test]
fn a_zip64_end_record_declaring_millions_of_entries_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = scratch_file(&dir, "sparse.ot");
    let mut file = fs::File::create(&path).unwrap();
    file.write_all(b"PK\x03\x04").unwrap();
    let zip64_at: u64 = 200_000_000;
    file.seek(SeekFrom::Start(zip64_at)).unwrap();
    let entries: u64 = 200_000_000;
    let mut tail = Vec::new();
    tail.extend_from_slice(b"PK\x06\x06");
    tail.extend_from_slice(&44u64.to_le_bytes());
    tail.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    tail.extend_from_slice(&entries.to_le_bytes());
    tail.extend_from_slice(&entries.to_le_bytes());
    tail.extend_from_slice(&(entries * 46).to_le_bytes());
    tail.extend_from_slice(&0u64.to_le_bytes());
    tail.extend_from_slice(b"PK\x06\x07");
    tail.extend_from_slice(&0u32.to_le_bytes());
    tail.extend_from_slice(&zip64_at.to_le_bytes());
    tail.extend_from_slice(&1u32.to_le_bytes());
    tail.extend_from_slice(b"PK\x05\x06");
    tail.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    tail.extend_from_slice(&[0xff; 8]);
    tail.extend_from_slice(&[0, 0]);
    file.write_all(&tail).unwrap();
    drop(file);
    let output = summary_bounded(&path);
    assert_clean_failure(
        &output,
        &["sparse.ot", "declares 200000000 entries", "at most 65536"],
    );
}

/// Four hundred tensors that all view one 4 MiB storage: the storage is read once and shared,
/// so one-element views cost one element each (the file then fails as a model, by name), and
/// whole-storage views are refused once their copies would outgrow the storages read.
#[test]
fn views_sharing_one_storage_cost_what_they_hold_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let base = Tensor::zeros([1 << 20], (Kind::Float, tch::Device::Cpu));
    let names: Vec<String> = (0..400).map(|i| format!("t{i}")).collect();

    let narrow: Vec<Tensor> = (0..400).map(|i| base.narrow(0, i, 1)).collect();
    let path = scratch_file(&dir, "narrow.ot");
    let named: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(&narrow).collect();
    Tensor::save_multi(&named, &path).unwrap();
    let output = summary_bounded(&path);
    assert_clean_failure(&output, &["narrow.ot"]);

    let whole: Vec<Tensor> = (0..400).map(|_| base.shallow_clone()).collect();
    let path = scratch_file(&dir, "whole.ot");
    let named: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(&whole).collect();
    Tensor::save_multi(&named, &path).unwrap();
    let output = summary_bounded(&path);
    assert_clean_failure(&output, &["whole.ot", "views sharing one storage"]);
}

/// Forty zip entries whose directory records all point at the same 8 MiB of data: the storages
/// read together may not exceed the file's own length.
#[test]
fn zip_entries_sharing_their_bytes_are_read_no_more_than_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = scratch_file(&dir, "overlap.ot");
    let storage = vec![0u8; 8 << 20];
    let names: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let tensors: Vec<Tensor> = (0..40)
        .map(|_| Tensor::zeros([2 << 20], (Kind::Float, tch::Device::Cpu)))
        .collect();
    // The pickle tch writes for forty separate 8 MiB storages, keys 0 to 39...
    let honest = scratch_file(&dir, "honest.ot");
    let named: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(&tensors).collect();
    Tensor::save_multi(&named, &honest).unwrap();
    let pickle = {
        let mut archive = zip::ZipArchive::new(fs::File::open(&honest).unwrap()).unwrap();
        let name = archive
            .file_names()
            .find(|n| n.ends_with("/data.pkl"))
            .unwrap()
            .to_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_name(&name).unwrap(), &mut bytes).unwrap();
        bytes
    };
    // ...and an archive that stores one of them, which every key's record points at.
    write_overlapping(&path, &pickle, &storage, 40);
    let output = summary_bounded(&path);
    assert_clean_failure(&output, &["overlap.ot", "accepted"]);
}

/// A zip of `archive/data.pkl` and `archive/data/0`, whose central directory also lists
/// `archive/data/1` … `archive/data/{count - 1}` at the same local header as `data/0`.
fn write_overlapping(path: &Path, pickle: &[u8], storage: &[u8], count: usize) {
    let mut out = Vec::new();
    let mut directory = Vec::new();
    let mut records = 0u16;
    let local = |out: &mut Vec<u8>, name: &str, bytes: &[u8]| -> (u32, u32) {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(bytes);
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(bytes);
        (offset, crc)
    };
    let mut central = |name: &str, offset: u32, crc: u32, size: usize| {
        directory.extend_from_slice(b"PK\x01\x02");
        directory.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        directory.extend_from_slice(&crc.to_le_bytes());
        directory.extend_from_slice(&(size as u32).to_le_bytes());
        directory.extend_from_slice(&(size as u32).to_le_bytes());
        directory.extend_from_slice(&(name.len() as u16).to_le_bytes());
        directory.extend_from_slice(&[0; 12]);
        directory.extend_from_slice(&offset.to_le_bytes());
        directory.extend_from_slice(name.as_bytes());
        records += 1;
    };
    let (pickle_at, pickle_crc) = local(&mut out, "archive/data.pkl", pickle);
    central("archive/data.pkl", pickle_at, pickle_crc, pickle.len());
    let (storage_at, storage_crc) = local(&mut out, "archive/data/0", storage);
    for key in 0..count {
        central(
            &format!("archive/data/{key}"),
            storage_at,
            storage_crc,
            storage.len(),
        );
    }
    let directory_at = out.len() as u32;
    out.extend_from_slice(&directory);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&(directory.len() as u32).to_le_bytes());
    out.extend_from_slice(&directory_at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    fs::write(path, out).unwrap();
}

/// A dict the memo shares, added to 10,000 times (once a copy each time, 1.3 GB), and a dict
/// added to 80,000 times (once 78 s): both now grow in place, and the file fails at once for
/// holding no module.
#[test]
fn dicts_grow_in_place_however_the_memo_shares_them() {
    let dir = tempfile::tempdir().unwrap();
    let shared = scratch_file(&dir, "memo.ot");
    let mut pickle = b"\x80\x02}q\x00".to_vec();
    for _ in 0..10_000 {
        pickle.extend_from_slice(b"h\x00K\x01K\x02sq\x00");
    }
    pickle.push(b'.');
    write_archive(&shared, &pickle, &[]);
    let output = summary_bounded(&shared);
    assert_clean_failure(&output, &["memo.ot", "__torch__.Module"]);

    let long = scratch_file(&dir, "long.ot");
    let mut pickle = b"\x80\x02}".to_vec();
    for _ in 0..80_000 {
        pickle.extend_from_slice(b"K\x01K\x02s");
    }
    pickle.push(b'.');
    write_archive(&long, &pickle, &[]);
    let output = summary_bounded(&long);
    assert_clean_failure(&output, &["long.ot", "__torch__.Module"]);
}
