//! safetensors files with the architecture in their metadata: written here (tch's own writer
//! takes no metadata) and read by tch; their metadata read here.

use crate::model::NamedTensor;
use crate::nn::Architecture;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The metadata key of a safetensors checkpoint that names its architecture.
pub const ARCHITECTURE_KEY: &str = "architecture";

/// Whether `path` names a safetensors file (by its extension).
pub fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// A tensor's bytes as safetensors stores them.
struct Buffer {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn buffer(named: &NamedTensor) -> Result<Buffer> {
    let name = &named.name;
    let tensor = named.tensor.to_device(Device::Cpu).contiguous();
    let dtype = match tensor.kind() {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        other => bail!("tensor {name}: {other:?} cannot be written to safetensors here"),
    };
    let mut bytes = vec![0u8; tensor.numel() * tensor.kind().elt_size_in_bytes()];
    tensor
        .f_copy_data_u8(&mut bytes, tensor.numel())
        .with_context(|| format!("cannot read tensor {name}"))?;
    let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
    Ok(Buffer {
        name: name.clone(),
        dtype,
        shape,
        bytes,
    })
}

/// Writes named tensors as safetensors with the architecture in the metadata.
pub fn write(tensors: &[NamedTensor], architecture: Architecture, path: &Path) -> Result<()> {
    let buffers = tensors.iter().map(buffer).collect::<Result<Vec<_>>>()?;
    let views = buffers
        .iter()
        .map(|b| {
            TensorView::new(b.dtype, b.shape.clone(), &b.bytes)
                .map(|view| (b.name.as_str(), view))
                .map_err(|e| anyhow!("tensor {}: {e:?}", b.name))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([
        (ARCHITECTURE_KEY.to_owned(), architecture.to_string()),
        // What Hugging Face's loaders expect of a PyTorch state dict.
        ("format".to_owned(), "pt".to_owned()),
    ]);
    safetensors::tensor::serialize_to_file(views, &Some(metadata), path)
        .map_err(|e| anyhow!("cannot write {}: {e:?}", path.display()))
}

/// The tensors of a safetensors file in memory (the parser checks every offset and size).
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{e:?}"))?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let tensor = Tensor::try_from(view).with_context(|| format!("tensor {name}"))?;
            Ok((name, tensor))
        })
        .collect()
}

/// The architecture named in the metadata of a safetensors file's bytes, if any.
pub fn declared_architecture(bytes: &[u8]) -> Result<Option<String>> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{e:?}"))?;
    Ok(metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ARCHITECTURE_KEY).cloned()))
}
