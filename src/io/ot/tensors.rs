//! Tensors from a checkpoint's storages, made only after the storage has been checked to hold
//! every element the shape, strides and offset reach.

use super::value::{StorageKind, StorageRef, TensorSpec};
use anyhow::{ensure, Context, Result};
use tch::{Kind, Tensor};

/// The tensor `spec` describes, as its own contiguous copy of the data in `storage`.
pub fn build(spec: &TensorSpec, storage: &[u8]) -> Result<Tensor> {
    view(spec, &flat(&spec.storage, storage)?)
}

/// A storage's bytes as one flat tensor of its kind, after checking that they are exactly the
/// `numel` elements the pickle declares. Made once per storage and shared by its views.
pub fn flat(storage: &StorageRef, bytes: &[u8]) -> Result<Tensor> {
    let element = storage.kind.element_size();
    let expected = storage
        .numel
        .checked_mul(element)
        .context("the storage's size overflows")?;
    ensure!(
        bytes.len() as u64 == expected,
        "its storage holds {} bytes; {} elements of {element} bytes need {expected}",
        bytes.len(),
        storage.numel
    );
    let kind = match storage.kind {
        StorageKind::Float => Kind::Float,
        StorageKind::Double => Kind::Double,
        StorageKind::Long => Kind::Int64,
    };
    let numel = i64::try_from(storage.numel).context("the storage is too large")?;
    Ok(Tensor::f_from_data_size(bytes, &[numel], kind)?)
}

/// The bytes the view `spec` describes will take once copied out of its storage (checked
/// against the storage's size first, so that it cannot overflow).
pub fn view_bytes(spec: &TensorSpec) -> Result<u64> {
    Ok(view_elements(spec)? * spec.storage.kind.element_size())
}

fn view_elements(spec: &TensorSpec) -> Result<u64> {
    let elements = spec
        .size
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
        .context("a dimension is negative, or the shape overflows")?;
    ensure!(
        elements <= spec.storage.numel,
        "its shape {:?} has {elements} elements, more than the {} its storage holds",
        spec.size,
        spec.storage.numel
    );
    Ok(elements)
}

/// The view `spec` describes of a storage made by [`flat`], as its own contiguous copy, after
/// checking that every element the shape, strides and offset reach lies in the storage.
pub fn view(spec: &TensorSpec, flat: &Tensor) -> Result<Tensor> {
    ensure!(
        flat.size() == [spec.storage.numel as i64],
        "its storage is not the one it names"
    );
    view_elements(spec)?;
    let reach = reach(spec)?;
    ensure!(
        reach <= spec.storage.numel,
        "its shape {:?} with strides {:?} from offset {} reaches element {reach}, beyond the \
         {} its storage holds",
        spec.size,
        spec.stride,
        spec.offset,
        spec.storage.numel
    );
    let offset = i64::try_from(spec.offset).context("the offset is too large")?;
    Ok(flat
        .f_as_strided(spec.size.as_slice(), spec.stride.as_slice(), offset)?
        .contiguous())
}

/// One past the last storage element the view touches (the offset when it is empty).
fn reach(spec: &TensorSpec) -> Result<u64> {
    let mut last = spec.offset;
    let mut empty = false;
    for (&size, &stride) in spec.size.iter().zip(&spec.stride) {
        let size = u64::try_from(size).context("a dimension is negative")?;
        let stride = u64::try_from(stride).context("a stride is negative")?;
        if size == 0 {
            empty = true;
            continue;
        }
        let span = (size - 1)
            .checked_mul(stride)
            .context("the shape overflows")?;
        last = last.checked_add(span).context("the shape overflows")?;
    }
    if empty {
        return Ok(spec.offset);
    }
    last.checked_add(1).context("the shape overflows")
}

#[cfg(test)]
mod tests {
    use super::super::value::StorageLocation;
    use super::*;

    fn spec(numel: u64, offset: u64, size: &[i64], stride: &[i64]) -> TensorSpec {
        TensorSpec {
            storage: StorageRef {
                key: "0".to_owned(),
                kind: StorageKind::Float,
                numel,
                location: StorageLocation::Cpu,
            },
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn a_strided_view_is_copied_out_of_its_storage() {
        let storage = floats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // 2×2 with a row stride of 3, from offset 1: [[1, 2], [4, 5]].
        let tensor = build(&spec(6, 1, &[2, 2], &[3, 1]), &storage).unwrap();
        let values = Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap();
        assert_eq!(values, [1.0, 2.0, 4.0, 5.0]);
        let scalar = build(&spec(6, 5, &[], &[]), &storage).unwrap();
        assert_eq!(scalar.double_value(&[]), 5.0);
        assert!(build(&spec(6, 0, &[0, 4], &[4, 1]), &storage).is_ok());
    }

    #[test]
    fn storages_shorter_than_the_view_are_refused() {
        let storage = floats(&[0.0; 6]);
        for (numel, offset, size, stride, message) in [
            (6, 0, vec![2, 3], vec![4, 1], "reaches element 7"),
            (6, 6, vec![1], vec![1], "reaches element 7"),
            (8, 0, vec![6], vec![1], "holds 24 bytes"),
            (6, 0, vec![-1], vec![1], "negative"),
            (6, 0, vec![4], vec![i64::MAX], "overflows"),
            (6, 0, vec![1 << 20, 1 << 20], vec![0, 0], "more than the 6"),
        ] {
            let err = build(&spec(numel, offset, &size, &stride), &storage).unwrap_err();
            assert!(format!("{err:#}").contains(message), "{err:#}");
        }
    }
}
