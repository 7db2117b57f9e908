//! Export of a trained model for use outside this tool: a safetensors or npz state dict with the
//! PyTorch parameter names, a traced TorchScript module that `torch.jit.load` runs without
//! any other code (for inference: the weights are frozen into it), or an ONNX graph.

use super::{onnx, safetensors};
use crate::choice::declare_choice;
use crate::fsutil;
use crate::model::{Classifier, NamedTensor};
use crate::nn::names;
use crate::shape::batch_shape;
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{CModule, Device, Kind, Tensor};

declare_choice! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ExportFormat {
        Safetensors = "safetensors":
            "A safetensors state dict (conv1.weight, …, fc.bias): `safetensors.torch.load_file`",
        Torchscript = "torchscript":
            "A traced TorchScript module, for inference: `torch.jit.load`",
        Npz = "npz":
            "A NumPy .npz archive of the state dict: `numpy.load`",
        Onnx = "onnx":
            "An ONNX graph (opset 17, dynamic batch, input `images`, outputs `logits` and \
            `probabilities`) for onnxruntime and other runtimes; several --model make one \
            graph that averages their probabilities",
    }
}

/// Writes `model` to `out` in `format`, atomically.
pub fn export(model: &mut Classifier, format: ExportFormat, out: &Path) -> Result<()> {
    ensure!(
        model.device() == Device::Cpu,
        "export runs on a model loaded on the CPU"
    );
    match format {
        ExportFormat::Safetensors => {
            let tensors: Vec<NamedTensor> = state_dict(model)
                .into_iter()
                .map(|(name, tensor)| NamedTensor { name, tensor })
                .collect();
            let architecture = model.architecture();
            fsutil::save_atomically(out, |temp| safetensors::write(&tensors, architecture, temp))
        }
        ExportFormat::Npz => {
            let parameters = state_dict(model);
            let named: Vec<(&str, &Tensor)> =
                parameters.iter().map(|(n, t)| (n.as_str(), t)).collect();
            fsutil::save_atomically(out, |temp| Ok(Tensor::write_npz(&named, temp)?))
        }
        ExportFormat::Torchscript => {
            let module = trace(model)?;
            fsutil::save_atomically(out, |temp| Ok(module.save(temp)?))
        }
        ExportFormat::Onnx => export_onnx(std::slice::from_ref(model), &Default::default(), out),
    }
}

/// Writes `members` (one model, or an ensemble averaged in the graph) to `out` as ONNX,
/// atomically.
pub fn export_onnx(
    members: &[Classifier],
    description: &onnx::Description,
    out: &Path,
) -> Result<()> {
    let bytes = onnx::encode(members, description)?;
    fsutil::write_bytes_atomically(out, &bytes)
}

/// The model's tensors as PyTorch's `state_dict()` holds them: the parameters and running
/// statistics, plus each batch norm's `num_batches_tracked` (a step counter PyTorch only reads
/// when its momentum is None; 0 here), so that `load_state_dict(strict=True)` takes the file.
pub fn state_dict(model: &Classifier) -> BTreeMap<String, Tensor> {
    let mut tensors = model.named_parameters();
    for layer in model.architecture().batch_norm_layers() {
        tensors.insert(names::batches_tracked_of(&layer), Tensor::from(0i64));
    }
    tensors
}

/// Traces the model on the CPU with its variables frozen, so the weights become constants of
/// the module and no gradient machinery is recorded.
pub fn trace(model: &mut Classifier) -> Result<CModule> {
    model.freeze();
    let example = Tensor::zeros(batch_shape(1), (Kind::Float, Device::Cpu));
    let mut forward = |inputs: &[Tensor]| vec![model.forward(&inputs[0], false)];
    CModule::create_by_tracing("MnistCnn", "forward", &[example], &mut forward)
        .context("cannot trace the model to TorchScript")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::checkpoint;
    use crate::nn::Architecture;

    fn trained_looking_model() -> Classifier {
        // Non-zero biases, so that a lost bias would show.
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        tch::no_grad(|| {
            for mut variable in model.variables() {
                let noise = Tensor::rand_like(&variable.tensor) * 0.01;
                let _ = variable.tensor.g_add_(&noise);
            }
        });
        model
    }

    #[test]
    fn safetensors_and_npz_hold_the_pytorch_state_dict() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = trained_looking_model();
        let expected = model.named_parameters();
        let st = dir.path().join("m.safetensors");
        export(&mut model, ExportFormat::Safetensors, &st).unwrap();
        let loaded = checkpoint::load(&st, Device::Cpu).unwrap();
        for (name, tensor) in loaded.named_parameters() {
            assert!(tensor.equal(&expected[&name]), "{name}");
        }
        let npz = dir.path().join("m.npz");
        export(&mut model, ExportFormat::Npz, &npz).unwrap();
        let arrays: Vec<(String, Tensor)> = Tensor::read_npz(&npz).unwrap();
        assert_eq!(arrays.len(), 6);
        for (name, tensor) in arrays {
            assert!(tensor.equal(&expected[&name]), "{name}");
        }
    }

    /// Two saves of the same weights are the same bytes, in every format: no temporary file
    /// name inside the archives (libtorch names their entries after the file), no metadata in
    /// a hash map's order.
    #[test]
    fn every_save_of_the_same_weights_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = trained_looking_model();
        let saves = ["first", "second"].map(|name| dir.path().join(name));
        for folder in &saves {
            std::fs::create_dir(folder).unwrap();
            checkpoint::save(&model, &folder.join("model.ot")).unwrap();
            checkpoint::save(&model, &folder.join("model.safetensors")).unwrap();
            for (format, file) in [
                (ExportFormat::Safetensors, "export.safetensors"),
                (ExportFormat::Npz, "export.npz"),
                (ExportFormat::Torchscript, "export.pt"),
                (ExportFormat::Onnx, "export.onnx"),
            ] {
                export(&mut model, format, &folder.join(file)).unwrap();
            }
        }
        for file in [
            "model.ot",
            "model.safetensors",
            "export.safetensors",
            "export.npz",
            "export.pt",
            "export.onnx",
        ] {
            let [a, b] = saves
                .clone()
                .map(|folder| std::fs::read(folder.join(file)).unwrap());
            assert!(a == b, "two saves of {file} differ");
            let temporary = String::from_utf8_lossy(&a).contains(".tmp");
            assert!(!temporary, "{file} holds a temporary name");
        }
        let listing: Vec<_> = std::fs::read_dir(&saves[0]).unwrap().collect();
        assert_eq!(listing.len(), 6, "temporary files left: {listing:?}");
    }

    #[test]
    fn safetensors_metadata_and_tensors_are_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        checkpoint::save(&trained_looking_model(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(length % 8, 0, "the header is padded to 8 bytes");
        let header = std::str::from_utf8(&bytes[8..8 + length]).unwrap();
        let expected = concat!(
            r#"{"__metadata__":{"architecture":"tutorial","format":"pt"},"#,
            r#""conv1.bias":{"data_offsets":[0,128],"dtype":"F32","shape":[32]},"#
        );
        assert!(header.starts_with(expected), "{header}");
    }

    #[test]
    fn torchscript_gives_the_same_logits_for_any_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = trained_looking_model();
        let path = dir.path().join("m.pt");
        export(&mut model, ExportFormat::Torchscript, &path).unwrap();
        let module = CModule::load(&path).unwrap();
        let images = Tensor::rand(batch_shape(7), (Kind::Float, Device::Cpu));
        let expected = tch::no_grad(|| model.forward(&images, false));
        let traced = tch::no_grad(|| module.forward_ts(&[&images])).unwrap();
        let diff = (&traced - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max logit difference {diff}");
    }

    #[test]
    fn exporting_into_a_missing_folder_names_it_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = trained_looking_model();
        let out = dir.path().join("missing").join("m.safetensors");
        let err = export(&mut model, ExportFormat::Safetensors, &out).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
        assert!(!out.exists());
    }
}
