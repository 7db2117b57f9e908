//! Reading libtorch's `.ot` files (zip archives of a pickle and raw storages) without
//! libtorch's TorchScript loader, bounding every size and checking every tensor before one is
//! made.

pub mod pickle;
mod rebuild;
pub mod tensors;
pub mod value;
mod zip_end;

use anyhow::{bail, ensure, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek};
use tch::Tensor;
pub use value::StorageLocation;
use zip::{CompressionMethod, ZipArchive};

/// What a checkpoint may hold at most.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    pub entries: usize,
    pub pickle_bytes: u64,
    /// Of all storages together.
    pub storage_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            entries: 65_536,
            pickle_bytes: 64 << 20,
            storage_bytes: 4 << 30,
        }
    }
}

/// An archive opened and its pickle read: what every storage and tensor is, before any
/// storage is read.
struct Described<R> {
    archive: ZipArchive<R>,
    root: String,
    specs: Vec<(String, value::TensorSpec)>,
    archive_length: u64,
}

fn describe<R: Read + Seek>(mut source: R, limits: ArchiveLimits) -> Result<Described<R>> {
    // The end records first, read here: the zip crate sizes its entry list from the count they
    // declare before anything could check it.
    let archive_length = zip_end::check(&mut source, limits.entries)?;
    let mut archive = ZipArchive::new(source).context("not a zip archive")?;
    ensure!(
        archive.len() <= limits.entries,
        "the archive has {} entries; at most {} are accepted",
        archive.len(),
        limits.entries
    );
    let root = root_folder(&archive)?;
    check_byte_order(&mut archive, &root)?;
    let pickle = read_entry(
        &mut archive,
        &format!("{root}/data.pkl"),
        limits.pickle_bytes,
    )?;
    let specs = pickle::read(&pickle).context("data.pkl")?;
    Ok(Described {
        archive,
        root,
        specs,
        archive_length,
    })
}

/// Checks the archive's end records (the entry count and the central directory's place)
/// against `limits`, reading only the end of `source`.
pub fn check_end_records<R: Read + Seek>(source: &mut R, limits: ArchiveLimits) -> Result<()> {
    zip_end::check(source, limits.entries).map(|_| ())
}

/// The device tags of the archive's storages (what a writer on a GPU would leave behind:
/// `cuda:0`), without reading the storages.
pub fn storage_locations<R: Read + Seek>(
    source: R,
    limits: ArchiveLimits,
) -> Result<BTreeSet<StorageLocation>> {
    let described = describe(source, limits)?;
    Ok(described
        .specs
        .iter()
        .map(|(_, spec)| spec.storage.location)
        .collect())
}

/// The named tensors of an `.ot` archive read from `source`, on the CPU whatever device their
/// storages are tagged with; names as tch gives them (`conv1.weight`: the file stores
/// `conv1|weight`).
pub fn read<R: Read + Seek>(source: R, limits: ArchiveLimits) -> Result<BTreeMap<String, Tensor>> {
    let Described {
        mut archive,
        root,
        specs,
        archive_length,
    } = describe(source, limits)?;
    // Stored entries cannot hold more than the archive's own bytes unless their data overlap,
    // so the storages read together are bounded by its length as well as by the limit.
    let mut stored_budget = limits.storage_bytes.min(archive_length);
    let mut stored = 0u64;
    let mut materialised = 0u64;
    let mut flats: BTreeMap<String, (value::StorageRef, Tensor)> = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for (stored_name, spec) in specs {
        let name = stored_name.replace('|', ".");
        let (storage, flat) = match flats.get(&spec.storage.key) {
            Some(known) => known,
            None => {
                let entry = format!("{root}/data/{}", spec.storage.key);
                let bytes = read_entry(&mut archive, &entry, stored_budget)
                    .with_context(|| format!("the storage of tensor {name}"))?;
                stored_budget -= bytes.len() as u64;
                stored += bytes.len() as u64;
                let flat = tensors::flat(&spec.storage, &bytes)
                    .with_context(|| format!("tensor {name}"))?;
                flats.insert(spec.storage.key.clone(), (spec.storage.clone(), flat));
                &flats[&spec.storage.key]
            }
        };
        ensure!(
            storage.kind == spec.storage.kind && storage.numel == spec.storage.numel,
            "tensor {name}: storage {} is described two ways",
            spec.storage.key
        );
        // Each view becomes its own copy: together they may not outgrow what was stored (twice
        // over, and a little more for scalars) however many of them share one storage.
        materialised += tensors::view_bytes(&spec).with_context(|| format!("tensor {name}"))?;
        let allowed = 2 * stored + (1 << 20);
        ensure!(
            materialised <= allowed,
            "the tensors would take {materialised} bytes, more than the {allowed} allowed for \
             {stored} bytes of storages (views sharing one storage)"
        );
        let tensor = tensors::view(&spec, flat).with_context(|| format!("tensor {name}"))?;
        ensure!(
            tensors.insert(name.clone(), tensor).is_none(),
            "tensor {name} appears twice"
        );
    }
    Ok(tensors)
}

/// The one folder everything lies under (its name varies: libtorch takes the file's name).
fn root_folder<R: Read + Seek>(archive: &ZipArchive<R>) -> Result<String> {
    let pickles: Vec<&str> = archive
        .file_names()
        .filter(|name| name.ends_with("/data.pkl"))
        .collect();
    let [pickle] = pickles.as_slice() else {
        bail!(
            "the archive holds {} data.pkl files; a checkpoint holds one",
            pickles.len()
        );
    };
    let root = pickle.trim_end_matches("/data.pkl");
    ensure!(
        !root.is_empty() && !root.contains('/') && root != "..",
        "data.pkl lies in an unexpected folder {root:?}"
    );
    Ok(root.to_owned())
}

/// libtorch records the byte order of the storages; this reader takes little-endian only.
fn check_byte_order<R: Read + Seek>(archive: &mut ZipArchive<R>, root: &str) -> Result<()> {
    let name = format!("{root}/byteorder");
    if archive.file_names().all(|n| n != name) {
        return Ok(()); // older files say nothing and are little-endian
    }
    let order = read_entry(archive, &name, 16)?;
    ensure!(
        order == b"little",
        "the storages are {:?}-endian; only little-endian is read",
        String::from_utf8_lossy(&order)
    );
    Ok(())
}

/// An entry's bytes: stored (not compressed), no larger than `limit`, and exactly as long as
/// the archive says.
fn read_entry<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let entry = archive
        .by_name(name)
        .with_context(|| format!("the archive has no {name}"))?;
    ensure!(
        entry.compression() == CompressionMethod::Stored,
        "{name} is compressed ({:?}); a checkpoint stores it as is",
        entry.compression()
    );
    let size = entry.size();
    ensure!(
        size <= limit,
        "{name} holds {size} bytes, more than the {limit} accepted"
    );
    ensure!(
        entry.compressed_size() == size,
        "{name} is listed as {size} bytes stored in {}",
        entry.compressed_size()
    );
    // Grown as the bytes arrive, not allocated from the size the archive claims.
    let mut bytes = Vec::new();
    entry
        .take(size)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    ensure!(
        bytes.len() as u64 == size,
        "{name} holds {} bytes, not the {size} the archive lists",
        bytes.len()
    );
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// What tch writes, read back here: every kind, a scalar, a channels-last view, an empty
    /// tensor, dotted names.
    #[test]
    fn what_tch_writes_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.ot");
        // NCHW sizes over an NHWC storage, as the kernels are kept.
        let channels_last =
            Tensor::rand([4, 2, 2, 3], (Kind::Float, Device::Cpu)).permute([0, 3, 1, 2]);
        assert_eq!(channels_last.stride(), [12, 1, 6, 3]);
        let tensors = [
            ("model.conv1.weight", channels_last),
            ("adam.step", Tensor::from(17i64)),
            ("best.accuracy", Tensor::from(0.25f64)),
            ("empty", Tensor::zeros([0, 3], (Kind::Float, Device::Cpu))),
            ("fc.bias", Tensor::rand([10], (Kind::Float, Device::Cpu))),
        ];
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        Tensor::save_multi(&named, &path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let read = read(file, ArchiveLimits::default()).unwrap();
        assert_eq!(read.len(), tensors.len());
        for (name, tensor) in &tensors {
            let got = &read[*name];
            assert_eq!(got.kind(), tensor.kind(), "{name}");
            assert!(got.equal(tensor), "{name}");
        }
    }

    #[test]
    fn limits_are_enforced_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ot");
        let big = Tensor::zeros([1000], (Kind::Float, Device::Cpu));
        Tensor::save_multi(&[("big", &big)], &path).unwrap();
        let tight = ArchiveLimits {
            storage_bytes: 3999,
            ..ArchiveLimits::default()
        };
        let err = read(std::fs::File::open(&path).unwrap(), tight).unwrap_err();
        assert!(
            format!("{err:#}").contains("more than the 3999 accepted"),
            "{err:#}"
        );
        let few = ArchiveLimits {
            entries: 2,
            ..ArchiveLimits::default()
        };
        let err = read(std::fs::File::open(&path).unwrap(), few).unwrap_err();
        assert!(format!("{err:#}").contains("entries"), "{err:#}");
    }
}
