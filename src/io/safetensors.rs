//! safetensors files with the architecture in their metadata: written here (tch's own writer
//! takes no metadata) and read by tch; their metadata read here.

use crate::model::NamedTensor;
use crate::nn::Architecture;
use anyhow::{anyhow, bail, ensure, Context, Result};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde::Serialize;
use std::collections::BTreeMap;
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
    let bytes = file_bytes(buffers, architecture)?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// What a tensor's header entry holds (its keys written in sorted order, as every map here).
#[derive(Serialize)]
struct HeaderEntry {
    dtype: &'static str,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// A safetensors file: its header's length (8 bytes, little-endian), the header (JSON, padded
/// with spaces to a multiple of 8 bytes), then the tensors' bytes. Written here rather than by
/// the safetensors crate, whose metadata is a `HashMap` (its order, and so the file's bytes,
/// changed from one save to the next): here keys and tensors are in sorted order, so the same
/// weights always give the same file.
fn file_bytes(mut buffers: Vec<Buffer>, architecture: Architecture) -> Result<Vec<u8>> {
    buffers.sort_by(|a, b| a.name.cmp(&b.name));
    let metadata = BTreeMap::from([
        (ARCHITECTURE_KEY, architecture.to_string()),
        // What Hugging Face's loaders expect of a PyTorch state dict.
        ("format", "pt".to_owned()),
    ]);
    let mut header = BTreeMap::from([("__metadata__".to_owned(), serde_json::to_value(metadata)?)]);
    let mut offset = 0;
    for b in &buffers {
        ensure!(
            !header.contains_key(&b.name),
            "tensor {} is named twice",
            b.name
        );
        let entry = HeaderEntry {
            dtype: dtype_name(b.dtype)?,
            shape: b.shape.clone(),
            data_offsets: [offset, offset + b.bytes.len()],
        };
        offset += b.bytes.len();
        header.insert(b.name.clone(), serde_json::to_value(entry)?);
    }
    let mut json = serde_json::to_string(&header)?.into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut bytes = Vec::with_capacity(8 + json.len() + offset);
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    for b in &buffers {
        bytes.extend_from_slice(&b.bytes);
    }
    Ok(bytes)
}

/// The format's name of a dtype this writer produces.
fn dtype_name(dtype: Dtype) -> Result<&'static str> {
    Ok(match dtype {
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
        Dtype::I64 => "I64",
        Dtype::F16 => "F16",
        Dtype::BF16 => "BF16",
        other => bail!("{other:?} is not written here"),
    })
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
