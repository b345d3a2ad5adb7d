//! A pickle reader that executes nothing, for PyTorch `.pt` files and CIFAR's python batches.
//!
//! It interprets the opcodes of protocols 0-4 that those files use and builds plain values (ints,
//! floats, strings, bytes, tuples, lists, dicts) in an arena. Globals are never imported: a global is
//! looked up in a fixed allow-list chosen by the caller ([`Allow`]) and anything else is refused with
//! an error naming it. Calls (REDUCE) and BUILD are only understood for those allowed globals.
//! Containers live in an arena and are referred to by index, so memo sharing keeps Python's object
//! identity, nothing is deep-copied and dropping a deeply nested pickle does not recurse.

mod calls;
mod machine;

use std::path::Path;

use crate::error::Result;

/// Which globals a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// What `torch.save` emits: tensor/parameter rebuild, storage types, OrderedDict.
    Torch,
    /// What a pickled numpy uint8 array inside a dict needs (CIFAR python batches).
    NumpyArrays,
}

/// Element types of torch storages and numpy arrays that the readers understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    U8,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::F16 | DType::BF16 => 2,
            DType::U8 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
        }
    }
}

/// An allowed global, resolved without importing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
    OrderedDict,
    NpReconstruct,
    NpNdarray,
    NpDtype,
    CodecsEncode,
}

/// A pickle value: scalars inline, everything else an index into the arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Obj(usize),
}

/// A torch storage named by a persistent id: ('storage', <type>, key, location, numel).
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub dtype: DType,
    pub key: String,
    pub numel: usize,
}

/// A tensor view rebuilt by `_rebuild_tensor_v2`: elements are storage[offset + Σ i_k·stride_k].
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A numpy array rebuilt by `_reconstruct` + BUILD (C order only).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
    NdArray(NdArray),
    /// A numpy dtype: its type string ("u1", "i8", ...) and byte order once BUILD has set it.
    Dtype(String, char),
}

/// The result of unpickling: the arena and the root value.
#[derive(Debug)]
pub struct Pickle {
    pub arena: Vec<Obj>,
    pub root: Value,
}

/// Nesting allowed when walking values (a hostile pickle may nest arbitrarily deep).
pub const MAX_DEPTH: usize = 64;

impl Pickle {
    pub fn obj(&self, v: Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.arena.get(i),
            _ => None,
        }
    }

    /// The text of a str (or a py2 byte string, read as latin-1).
    pub fn as_str(&self, v: Value) -> Option<String> {
        match self.obj(v)? {
            Obj::Str(s) => Some(s.clone()),
            Obj::Bytes(b) => Some(b.iter().map(|&c| c as char).collect()),
            _ => None,
        }
    }

    /// Entries of a dict (OrderedDicts are dicts here).
    pub fn dict(&self, v: Value) -> Option<&[(Value, Value)]> {
        match self.obj(v)? {
            Obj::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Look up a string key in a dict (str or py2 bytes keys).
    pub fn dict_get(&self, v: Value, key: &str) -> Option<Value> {
        self.dict(v)?
            .iter()
            .find(|(k, _)| self.as_str(*k).as_deref() == Some(key))
            .map(|(_, v)| *v)
    }

    /// Items of a list or tuple.
    pub fn seq(&self, v: Value) -> Option<&[Value]> {
        match self.obj(v)? {
            Obj::List(l) | Obj::Tuple(l) => Some(l),
            _ => None,
        }
    }
}

/// Unpickle `buf` (read from `path`, named in errors) under the given allow-list.
pub fn load(path: &Path, buf: &[u8], allow: Allow) -> Result<Pickle> {
    machine::Machine::new(path, buf, allow).run()
}
