//! The values a tch pickle can hold, and the globals it may name: nothing else can be built,
//! so nothing else can be asked for.

use std::cell::RefCell;
use std::rc::Rc;

/// The most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;

/// The element types of the storages a tch archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Float,
    Double,
    Long,
}

impl StorageKind {
    pub fn element_size(self) -> u64 {
        match self {
            Self::Float => 4,
            Self::Double | Self::Long => 8,
        }
    }
}

/// A storage as the pickle refers to it: the archive entry `data/<key>` of `numel` elements,
/// tagged with the device it was saved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub kind: StorageKind,
    pub numel: u64,
    pub location: StorageLocation,
}

/// The device tag of a storage, as tch and PyTorch write it (`cpu`, `cuda`, `cuda:N`). The
/// bytes in the archive are the same whatever the tag: the reader builds every tensor on the
/// CPU, and the command moves it to its own device, as `torch.load(map_location=...)` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StorageLocation {
    Cpu,
    /// `cuda` (no index: the current device when it was saved) or `cuda:N`.
    Cuda(Option<u32>),
}

impl StorageLocation {
    /// The most characters a tag may have (`cuda:` and a device number).
    const MAX_TAG: usize = 16;

    /// The location a tag names; `None` for anything but `cpu`, `cuda` and `cuda:N`.
    pub fn parse(tag: &str) -> Option<Self> {
        if tag.len() > Self::MAX_TAG {
            return None;
        }
        match tag {
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda(None)),
            _ => {
                let index = tag.strip_prefix("cuda:")?;
                let digits = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
                digits.then(|| index.parse().ok().map(|n| Self::Cuda(Some(n))))?
            }
        }
    }
}

impl std::fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(index)) => write!(f, "cuda:{index}"),
        }
    }
}

/// A tensor as the pickle describes it: a strided view into a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub storage: StorageRef,
    pub offset: u64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// The globals this reader knows, by their `module name` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    Module,
    OrderedDict,
    RebuildTensor,
    Storage(StorageKind),
}

impl Global {
    pub fn known(module: &str, name: &str) -> Option<Self> {
        Some(match (module, name) {
            ("__torch__", "Module") => Self::Module,
            ("collections", "OrderedDict") => Self::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Self::RebuildTensor,
            ("torch", "FloatStorage") => Self::Storage(StorageKind::Float),
            ("torch", "DoubleStorage") => Self::Storage(StorageKind::Double),
            ("torch", "LongStorage") => Self::Storage(StorageKind::Long),
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub enum Value {
    None,
    /// True or false: only a tensor's `requires_grad`, which loading ignores.
    Bool,
    Int(i64),
    Str(String),
    Tuple(Vec<Rc<Value>>),
    /// A dict, changed in place by SETITEM(S) as Python's is: the memo and the stack share it,
    /// so adding to it never copies it.
    Dict(RefCell<Vec<(Rc<Value>, Rc<Value>)>>),
    Global(Global),
    /// The result of `OrderedDict()` (tensors' backward hooks: always empty here).
    EmptyOrderedDict,
    /// A `__torch__.Module` and the attributes BUILD gave it.
    Module(Option<Rc<Value>>),
    Storage(StorageRef),
    Tensor(TensorSpec),
}

impl Value {
    /// The values this one holds, taken out of it (it is left without them).
    fn take_children(&mut self) -> Vec<Rc<Value>> {
        match self {
            Self::Tuple(items) => std::mem::take(items),
            Self::Dict(entries) => std::mem::take(entries.get_mut())
                .into_iter()
                .flat_map(|(key, value)| [key, value])
                .collect(),
            Self::Module(state) => state.take().into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// Dropped without recursion: a crafted pickle can nest values far deeper than the thread's
/// stack could follow one call per level, so the children are unlinked onto a list and dropped
/// from there.
impl Drop for Value {
    fn drop(&mut self) {
        let mut pending = self.take_children();
        while let Some(child) = pending.pop() {
            // Only the last reference drops a value; its own children join the list first.
            if let Ok(mut value) = Rc::try_unwrap(child) {
                pending.extend(value.take_children());
            }
        }
    }
}
