//! What the known globals become: a storage reference from a persistent id, a tensor from
//! `_rebuild_tensor_v2`, and the module's named tensors at the end. Each is checked, and none is
//! called: all of them are plain data.

use super::value::{Global, StorageLocation, StorageRef, TensorSpec, Value, MAX_RANK};
use anyhow::{bail, ensure, Context, Result};
use std::rc::Rc;

/// REDUCE: `OrderedDict()` and `_rebuild_tensor_v2(...)` are the only calls a tch file makes,
/// and neither is run: both become data.
pub fn reduce(callable: &Value, arguments: &Value) -> Result<Value> {
    let Value::Tuple(arguments) = arguments else {
        bail!("a call's arguments must be a tuple");
    };
    match callable {
        Value::Global(Global::OrderedDict) => {
            ensure!(
                arguments.is_empty(),
                "OrderedDict() takes no arguments here"
            );
            Ok(Value::EmptyOrderedDict)
        }
        Value::Global(Global::RebuildTensor) => Ok(Value::Tensor(tensor_spec(arguments)?)),
        _ => bail!("only OrderedDict() and torch._utils._rebuild_tensor_v2 may be called"),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks)`.
fn tensor_spec(arguments: &[Rc<Value>]) -> Result<TensorSpec> {
    ensure!(
        arguments.len() == 6,
        "a tensor is rebuilt from 6 arguments, not {}",
        arguments.len()
    );
    let Value::Storage(storage) = &*arguments[0] else {
        bail!("a tensor's first argument must be its storage");
    };
    let offset = u64::try_from(int(&arguments[1])?).context("a tensor's offset is negative")?;
    let size = ints(&arguments[2], "size")?;
    let stride = ints(&arguments[3], "stride")?;
    ensure!(
        size.len() == stride.len(),
        "a tensor's size and stride differ in length"
    );
    ensure!(
        matches!(*arguments[4], Value::Bool),
        "requires_grad must be a bool"
    );
    ensure!(
        matches!(*arguments[5], Value::EmptyOrderedDict),
        "a tensor's backward hooks must be an empty OrderedDict"
    );
    Ok(TensorSpec {
        storage: storage.clone(),
        offset,
        size,
        stride,
    })
}

fn int(value: &Value) -> Result<i64> {
    match value {
        Value::Int(n) => Ok(*n),
        _ => bail!("an integer was expected"),
    }
}

/// A tuple of at most [`MAX_RANK`] integers.
fn ints(value: &Value, what: &str) -> Result<Vec<i64>> {
    let Value::Tuple(items) = value else {
        bail!("a tensor's {what} must be a tuple");
    };
    ensure!(
        items.len() <= MAX_RANK,
        "a tensor's {what} has {} dimensions; at most {MAX_RANK} are accepted",
        items.len()
    );
    items.iter().map(|item| int(item)).collect()
}

/// BINPERSID: `("storage", <Float|Double|Long>Storage, key, location, numel)`.
pub fn persistent_storage(id: &Value) -> Result<StorageRef> {
    let Value::Tuple(parts) = id else {
        bail!("a persistent id must be a tuple");
    };
    ensure!(parts.len() == 5, "a storage reference has 5 parts");
    ensure!(
        matches!(&*parts[0], Value::Str(tag) if tag == "storage"),
        "only storages may be persistent ids"
    );
    let Value::Global(Global::Storage(kind)) = &*parts[1] else {
        bail!("a storage must be a Float, Double or Long storage");
    };
    let Value::Str(key) = &*parts[2] else {
        bail!("a storage's key must be a string");
    };
    ensure!(
        !key.is_empty() && key.len() <= 20 && key.bytes().all(|b| b.is_ascii_digit()),
        "a storage's key must be a number"
    );
    let location = storage_location(&parts[3])?;
    let numel = u64::try_from(int(&parts[4])?).context("a storage's size is negative")?;
    Ok(StorageRef {
        key: key.clone(),
        kind: *kind,
        numel,
        location,
    })
}

/// A storage's device tag: `cpu`, `cuda` or `cuda:N`, as tch and PyTorch write them (a model
/// saved on a GPU tags its storages `cuda:0`). Any other tag is refused by name, cut short.
fn storage_location(tag: &Value) -> Result<StorageLocation> {
    let Value::Str(tag) = tag else {
        bail!("a storage's location must be a string");
    };
    StorageLocation::parse(tag).with_context(|| {
        let shown: String = tag.chars().take(40).collect();
        let cut = if shown.len() < tag.len() { "…" } else { "" };
        format!("a storage's location {shown:?}{cut} is not cpu, cuda or cuda:N")
    })
}

/// The named tensors of the `__torch__.Module` the pickle ends with.
pub fn module_tensors(result: &Value) -> Result<Vec<(String, TensorSpec)>> {
    let Value::Module(Some(state)) = result else {
        bail!("the pickle does not hold a __torch__.Module with attributes");
    };
    let Value::Dict(entries) = &**state else {
        bail!("a module's state must be a dict");
    };
    let entries = entries.borrow();
    entries
        .iter()
        .map(|(key, value)| {
            let (Value::Str(name), Value::Tensor(spec)) = (&**key, &**value) else {
                bail!("a module attribute is not a named tensor");
            };
            Ok((name.clone(), spec.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage_id(location: &str) -> Value {
        let part = |v: Value| Rc::new(v);
        Value::Tuple(vec![
            part(Value::Str("storage".to_owned())),
            part(Value::Global(Global::Storage(
                super::super::value::StorageKind::Float,
            ))),
            part(Value::Str("0".to_owned())),
            part(Value::Str(location.to_owned())),
            part(Value::Int(4)),
        ])
    }

    /// The tags tch and PyTorch write: a model saved on a GPU tags its storages `cuda:0`.
    #[test]
    fn storages_saved_from_the_cpu_or_a_gpu_are_read() {
        for (tag, location) in [
            ("cpu", StorageLocation::Cpu),
            ("cuda", StorageLocation::Cuda(None)),
            ("cuda:0", StorageLocation::Cuda(Some(0))),
            ("cuda:7", StorageLocation::Cuda(Some(7))),
        ] {
            let storage = persistent_storage(&storage_id(tag)).unwrap();
            assert_eq!(storage.location, location, "{tag}");
            assert_eq!(storage.location.to_string(), tag);
        }
    }

    /// Anything else is refused, by name, and a long tag is cut short in the message.
    #[test]
    fn other_locations_are_refused_by_name() {
        let long = "x".repeat(10_000);
        for tag in [
            "mps",
            "xla:0",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:0:1",
            "CPU",
            "cuda: 0",
            "",
            "cuda:99999999999",
            &long,
        ] {
            let err = format!("{:#}", persistent_storage(&storage_id(tag)).unwrap_err());
            assert!(err.contains("is not cpu, cuda or cuda:N"), "{tag}: {err}");
            assert!(err.len() < 200, "{err}");
        }
        let not_a_string = Value::Tuple(vec![
            Rc::new(Value::Str("storage".to_owned())),
            Rc::new(Value::Global(Global::Storage(
                super::super::value::StorageKind::Float,
            ))),
            Rc::new(Value::Str("0".to_owned())),
            Rc::new(Value::Int(0)),
            Rc::new(Value::Int(4)),
        ]);
        let err = format!("{:#}", persistent_storage(&not_a_string).unwrap_err());
        assert!(err.contains("location must be a string"), "{err}");
    }
}
