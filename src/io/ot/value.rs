//! The values a tch pickle can hold, and the globals it may name: nothing else can be built,
//! so nothing else can be asked for.

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

/// A storage as the pickle refers to it: the archive entry `data/<key>` of `numel` elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub kind: StorageKind,
    pub numel: u64,
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
    Dict(Vec<(Rc<Value>, Rc<Value>)>),
    Global(Global),
    /// The result of `OrderedDict()` (tensors' backward hooks: always empty here).
    EmptyOrderedDict,
    /// A `__torch__.Module` and the attributes BUILD gave it.
    Module(Option<Rc<Value>>),
    Storage(StorageRef),
    Tensor(TensorSpec),
}
