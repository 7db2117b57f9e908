//! Checkpoints: a model's weights in libtorch's `.ot` format or as safetensors (chosen by the
//! extension), and the models and ensembles loaded from them. A checkpoint carries its
//! architecture: told by its tensors, and checked against what the file declares (the
//! safetensors metadata, or the `config.json` of the run folder an `.ot` lies in).

use super::ot;
use super::run_folder::{config_beside, model_file};
use super::safetensors::{self, is_safetensors};
use crate::eval::Ensemble;
use crate::fsutil;
use crate::model::{Classifier, NamedTensor};
use crate::nn::Architecture;
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Loads a checkpoint (`.ot` or `.safetensors`, or a run folder's `model.ot`) into the network
/// it was made for, on `device`.
pub fn load(path: &Path, device: Device) -> Result<Classifier> {
    let path = &model_file(path)?;
    let CheckpointFile {
        tensors,
        metadata_architecture,
    } = read_file(path)?;
    let architecture = checkpoint_architecture(path, &tensors, metadata_architecture.as_deref())?;
    let model = Classifier::new(architecture, device);
    model.load_weights(&tensors).with_context(|| {
        format!(
            "checkpoint {} does not fit the {architecture} model",
            path.display()
        )
    })?;
    Ok(model)
}

/// Loads every checkpoint (each brings its own architecture) onto `device`, as one ensemble.
pub fn load_ensemble(
    paths: &[PathBuf],
    device: Device,
    test_time_augmentation: bool,
) -> Result<Ensemble> {
    ensure!(!paths.is_empty(), "no --model given");
    let members = paths
        .iter()
        .map(|path| load(path, device).with_context(|| format!("--model {}", path.display())))
        .collect::<Result<Vec<_>>>()?;
    Ok(Ensemble::new(members, test_time_augmentation))
}

/// Saves the model's weights atomically; the format follows the extension (`.safetensors`,
/// else libtorch's `.ot`).
pub fn save(model: &Classifier, path: &Path) -> Result<()> {
    let tensors: Vec<NamedTensor> = model
        .variables()
        .into_iter()
        .map(|v| NamedTensor {
            name: v.name,
            tensor: for_writing(&v.tensor),
        })
        .collect();
    if is_safetensors(path) {
        let architecture = model.architecture();
        fsutil::save_atomically(path, |temp| {
            safetensors::write(&tensors, architecture, temp)
        })
    } else {
        save_tensors(&tensors, path)
    }
}

/// Saves named tensors atomically in libtorch's format (`resume.ot`, `model.ot`), from the CPU
/// whatever device they are on (see [`for_writing`]).
pub fn save_tensors(tensors: &[NamedTensor], path: &Path) -> Result<()> {
    let on_cpu: Vec<Tensor> = tensors.iter().map(|t| for_writing(&t.tensor)).collect();
    let named: Vec<(&str, &Tensor)> = tensors
        .iter()
        .zip(&on_cpu)
        .map(|(t, cpu)| (t.name.as_str(), cpu))
        .collect();
    fsutil::save_atomically(path, |temp| Ok(Tensor::save_multi(&named, temp)?))
}

/// A tensor as every writer stores it: detached, on the CPU and contiguous. libtorch tags a
/// storage with the device it lives on, so a model saved from a GPU as it is would say `cuda:0`,
/// and plain `torch.load` or `torch.jit.load` on a machine without one would refuse it. The
/// kernels are kept channels-last, and safetensors writes a tensor's storage as it lies, hence
/// contiguous.
pub fn for_writing(tensor: &Tensor) -> Tensor {
    tensor.detach().to_device(Device::Cpu).contiguous()
}

/// The largest checkpoint file read (a vgg-256 training state is about 400 MB).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

/// The two checkpoint formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// libtorch's archive, as tch writes it (`model.ot`, `resume.ot`).
    Ot,
    Safetensors,
}

impl Format {
    /// By the file's extension: `.safetensors`, else `.ot`.
    pub fn of(path: &Path) -> Self {
        if is_safetensors(path) {
            Self::Safetensors
        } else {
            Self::Ot
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Ot => "libtorch (.ot)",
            Self::Safetensors => "safetensors",
        }
    }
}

/// The named tensors of a checkpoint file (see [`tensors_from_bytes`]); only a regular file of
/// a sane size is read.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    Ok(read_file(path)?.tensors)
}

/// A checkpoint read once (so that what is checked is what is used): its tensors, and the
/// architecture a safetensors file's metadata names.
struct CheckpointFile {
    tensors: BTreeMap<String, Tensor>,
    metadata_architecture: Option<String>,
}

fn read_file(path: &Path) -> Result<CheckpointFile> {
    let format = Format::of(path);
    let unreadable = || {
        format!(
            "checkpoint {} is not a readable {} file",
            path.display(),
            format.describe()
        )
    };
    if format == Format::Ot {
        // The archive's end records first, from the file: a mostly empty (sparse) file that
        // declares millions of entries is refused before its bytes are read into memory. What
        // is read next is checked again, whole.
        let mut file = fsutil::open_regular(path).context("cannot read the checkpoint")?;
        if file.metadata().is_ok_and(|m| m.len() > 0) {
            ot::check_end_records(&mut file, ot::ArchiveLimits::default())
                .with_context(unreadable)?;
        }
    }
    let bytes = fsutil::read_limited(path, MAX_CHECKPOINT_BYTES, "checkpoint")
        .context("cannot read the checkpoint")?;
    ensure!(!bytes.is_empty(), "checkpoint {} is empty", path.display());
    let tensors = tensors_from_bytes(&bytes, format).with_context(unreadable)?;
    let metadata_architecture = match format {
        Format::Safetensors => {
            safetensors::declared_architecture(&bytes).with_context(unreadable)?
        }
        Format::Ot => None,
    };
    Ok(CheckpointFile {
        tensors,
        metadata_architecture,
    })
}

/// The named tensors of a checkpoint in memory: safetensors through its own validating parser,
/// `.ot` through [`super::ot`] (never libtorch's loader, which would run code the file
/// carries). Floating-point tensors must be finite.
pub fn tensors_from_bytes(bytes: &[u8], format: Format) -> Result<BTreeMap<String, Tensor>> {
    let tensors = match format {
        Format::Safetensors => safetensors::read(bytes)?,
        Format::Ot => ot::read(std::io::Cursor::new(bytes), ot::ArchiveLimits::default())?,
    };
    check_values(&tensors)?;
    Ok(tensors)
}

/// Refuses NaN and infinite values, and values their name rules out: a batch norm's running
/// variance (`…running_var`, in a model, a training state's `model.`, `ema.` and `best.`
/// copies) and Adam's second moments (`adam.v.…`) are never negative. Each names the tensor.
fn check_values(tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    for (name, tensor) in tensors {
        if !tensor.is_floating_point() || tensor.numel() == 0 {
            continue;
        }
        let finite = tensor.isfinite().all().int64_value(&[]) == 1;
        ensure!(finite, "tensor {name} holds NaN or infinite values");
        if let Some(what) = never_negative(name) {
            let least = tensor.min().double_value(&[]);
            ensure!(
                least >= 0.0,
                "tensor {name} holds {least}: {what} cannot be negative"
            );
        }
    }
    Ok(())
}

/// What a tensor named `name` holds, when that can never be negative.
fn never_negative(name: &str) -> Option<&'static str> {
    if name.ends_with(".running_var") {
        Some("a batch norm's running variance")
    } else if name.starts_with("adam.v.") {
        Some("Adam's second moment")
    } else {
        None
    }
}

/// The architecture of a checkpoint: told by its tensors, and checked against what the
/// checkpoint declares, if anything.
/// `metadata` is the architecture a safetensors file's metadata names.
pub fn checkpoint_architecture(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: Option<&str>,
) -> Result<Architecture> {
    if tensors.contains_key("state.epoch") {
        bail!(
            "{} is a training state (resume.ot, for `train --resume`), not a model; the run's \
             weights are in {}",
            path.display(),
            path.with_file_name(super::run_folder::MODEL_FILE).display()
        );
    }
    let inferred =
        Architecture::infer(tensors).with_context(|| format!("checkpoint {}", path.display()))?;
    if let Some(declared) = declared_architecture(path, metadata)? {
        ensure!(
            declared.architecture == inferred,
            "checkpoint {}: {} gives the architecture as {}, but the tensors are those of \
             {inferred}",
            path.display(),
            declared.source,
            declared.architecture
        );
    }
    Ok(inferred)
}

/// What a checkpoint says it is, and where it says so.
struct Declared {
    architecture: Architecture,
    source: String,
}

fn declared_architecture(path: &Path, metadata: Option<&str>) -> Result<Option<Declared>> {
    if is_safetensors(path) {
        let Some(name) = metadata else {
            return Ok(None);
        };
        const LONGEST_SHOWN: usize = 40;
        if name.len() > LONGEST_SHOWN {
            let shown: String = name.chars().take(LONGEST_SHOWN).collect();
            bail!(
                "checkpoint {}: its safetensors metadata declares an architecture of {} bytes \
                 ({shown:?}…); architectures are names such as tutorial or vgg-32",
                path.display(),
                name.len()
            );
        }
        let architecture = name.parse::<Architecture>().map_err(|e| {
            anyhow!(
                "checkpoint {}: its safetensors metadata declares {e}",
                path.display()
            )
        })?;
        let source = "its safetensors metadata".to_owned();
        return Ok(Some(Declared {
            architecture,
            source,
        }));
    }
    let config = config_beside(path).with_context(|| format!("checkpoint {}", path.display()))?;
    Ok(config.map(|config| Declared {
        architecture: config.architecture,
        source: format!(
            "the run's {}",
            path.with_file_name(super::run_folder::CONFIG_FILE)
                .display()
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::batch_shape;
    use tch::Kind;

    fn assert_same_weights(a: &Classifier, b: &Classifier) {
        let (a, b) = (a.named_parameters(), b.named_parameters());
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{name} differs");
        }
    }

    /// Every storage a writer emits is tagged `cpu`, whatever device the model is on (on a
    /// machine with CUDA the model is put there first, so this checks the move itself).
    #[test]
    fn writers_emit_only_cpu_storages() {
        let device = Device::cuda_if_available();
        let dir = tempfile::tempdir().unwrap();
        let model = Classifier::new(Architecture::Vgg { width: 4 }, device);
        let model_path = dir.path().join("model.ot");
        save(&model, &model_path).unwrap();
        let state: Vec<NamedTensor> = model
            .variables()
            .into_iter()
            .map(|v| NamedTensor {
                name: format!("model.{}", v.name),
                tensor: v.tensor.shallow_clone(),
            })
            .chain([NamedTensor {
                name: "adam.step".to_owned(),
                tensor: Tensor::from(3i64).to_device(device),
            }])
            .collect();
        let state_path = dir.path().join("resume.ot");
        save_tensors(&state, &state_path).unwrap();
        for path in [&model_path, &state_path] {
            let file = std::fs::File::open(path).unwrap();
            let locations = ot::storage_locations(file, ot::ArchiveLimits::default()).unwrap();
            assert_eq!(
                locations.into_iter().collect::<Vec<_>>(),
                [ot::StorageLocation::Cpu],
                "{}",
                path.display()
            );
        }
        let moved = for_writing(&Tensor::ones([2, 3], (Kind::Float, device)).transpose(0, 1));
        assert_eq!(moved.device(), Device::Cpu);
        assert!(moved.is_contiguous());
        assert!(!moved.requires_grad());
    }

    #[test]
    fn checkpoints_round_trip_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        tch::manual_seed(1);
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        for file in ["model.ot", "model.safetensors"] {
            let path = dir.path().join(file);
            save(&model, &path).unwrap();
            let loaded = load(&path, Device::Cpu).unwrap();
            assert_same_weights(&model, &loaded);
        }
    }

    /// Running statistics are part of the checkpoint: a vgg model trained a little (so they
    /// moved) comes back identical, architecture and all, from both formats.
    #[test]
    fn vgg_checkpoints_round_trip_with_their_running_statistics() {
        let dir = tempfile::tempdir().unwrap();
        tch::manual_seed(2);
        let model = Classifier::new(Architecture::Vgg { width: 8 }, Device::Cpu);
        let _ = model.forward(
            &Tensor::rand(batch_shape(8), (Kind::Float, Device::Cpu)),
            true,
        );
        let mean = &model.named_parameters()["bn1.running_mean"];
        assert!(mean.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        for file in ["model.ot", "model.safetensors"] {
            let path = dir.path().join(file);
            save(&model, &path).unwrap();
            let loaded = load(&path, Device::Cpu).unwrap();
            assert_eq!(loaded.architecture(), Architecture::Vgg { width: 8 });
            assert_same_weights(&model, &loaded);
        }
    }

    fn write_tensors(path: &Path, tensors: &[(&str, Tensor)]) {
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        if is_safetensors(path) {
            Tensor::write_safetensors(&named, path).unwrap();
        } else {
            Tensor::save_multi(&named, path).unwrap();
        }
    }

    fn full_set() -> Vec<(String, Tensor)> {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        model.named_parameters().into_iter().collect()
    }

    fn load_error(tensors: &[(String, Tensor)], file: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file);
        let named: Vec<(&str, Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t.copy()))
            .collect();
        write_tensors(&path, &named);
        let err = load(&path, Device::Cpu).unwrap_err();
        format!("{err:#}")
    }

    fn replaced(name: &str, tensor: Tensor) -> Vec<(String, Tensor)> {
        let mut tensors = full_set();
        tensors.iter_mut().find(|(n, _)| n == name).unwrap().1 = tensor;
        tensors
    }

    #[test]
    fn a_wrong_shape_names_the_tensor_and_both_shapes() {
        let broadcastable = Tensor::zeros([1600], (Kind::Float, Device::Cpu));
        let err = load_error(&replaced("fc.weight", broadcastable), "m.ot");
        assert!(err.contains("fc.weight has shape [1600]"), "{err}");
        assert!(err.contains("[10, 1600]"), "{err}");
    }

    #[test]
    fn missing_and_extra_tensors_are_named() {
        let mut tensors = full_set();
        tensors.retain(|(n, _)| n != "conv1.bias");
        assert!(load_error(&tensors, "m.safetensors").contains("conv1.bias is missing"));
        let mut tensors = full_set();
        tensors.push((
            "fc2.weight".to_owned(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        ));
        assert!(load_error(&tensors, "m.ot").contains("fc2.weight is not part of the model"));
    }

    #[test]
    fn a_scalar_first_convolution_is_an_error_not_a_panic() {
        let mut tensors = replaced("conv1.weight", Tensor::from(1.0f32));
        tensors.push((
            "bn1.running_mean".to_owned(),
            Tensor::zeros([4], (Kind::Float, Device::Cpu)),
        ));
        let err = load_error(&tensors, "m.safetensors");
        assert!(err.contains("conv1.weight has shape []"), "{err}");
    }

    #[test]
    fn unreadable_checkpoints_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("empty.ot", b"", "is empty"),
            (
                "text.ot",
                b"these are not weights\n",
                "not a readable libtorch",
            ),
            (
                "random.ot",
                &[0x50, 0x4b, 0x03, 0x04, 9, 9, 9, 9, 1, 2, 3],
                "not a readable",
            ),
            (
                "text.safetensors",
                b"{\"not\": \"weights\"}",
                "not a readable safetensors",
            ),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = load(&path, Device::Cpu).unwrap_err();
            let err = format!("{err:#}");
            assert!(
                err.contains(expected) && err.contains(name),
                "{name}: {err}"
            );
        }
    }

    /// Finite values that mean nothing: a negative batch-norm variance (in a model, and in a
    /// training state's copies) and a negative Adam second moment are refused by tensor name,
    /// in both formats.
    #[test]
    fn values_their_name_rules_out_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let model = Classifier::new(Architecture::Vgg { width: 4 }, Device::Cpu);
        let mut tensors = model.named_parameters();
        tensors.insert(
            "bn2.running_var".to_owned(),
            Tensor::from_slice(&[1.0f32, -0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        );
        let tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
        for file in ["vgg.ot", "vgg.safetensors"] {
            let err = load_error(&tensors, file);
            assert!(err.contains(file), "{err}");
            assert!(
                err.contains("tensor bn2.running_var holds -0.5")
                    && err.contains("running variance cannot be negative"),
                "{err}"
            );
        }
        for (name, what) in [
            ("ema.bn1.running_var", "running variance"),
            ("adam.v.fc.weight", "second moment"),
        ] {
            let path = dir.path().join("resume.ot");
            write_tensors(&path, &[(name, Tensor::from_slice(&[0.0f32, -1e-3]))]);
            let err = format!("{:#}", read_tensors(&path).unwrap_err());
            assert!(err.contains(name) && err.contains(what), "{err}");
        }
    }

    #[test]
    fn truncated_checkpoint_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.ot");
        save(&Classifier::new(Architecture::Tutorial, Device::Cpu), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(&path, Device::Cpu).unwrap_err();
        assert!(format!("{err:#}").contains("model.ot"), "{err:#}");
    }
}
