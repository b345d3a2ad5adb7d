//! The allow-listed globals of the pickle reader and what calling them means: torch tensor and
//! parameter rebuilds, storage persistent ids, OrderedDict, and numpy array reconstruction.
//! Every other global is refused here, by name, before anything could be called.

use super::machine::Machine;
use super::{Allow, DType, Global, NdArray, Obj, StorageRef, TensorRef, Value};
use crate::error::Result;

impl Machine<'_> {
    pub(super) fn global(&self, module: &str, name: &str) -> Result<Global> {
        let g = match (self.allow, module, name) {
            (Allow::Torch, "torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            (Allow::Torch, "torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            (Allow::Torch, "collections", "OrderedDict") => Some(Global::OrderedDict),
            (Allow::Torch, "torch", s) => storage_dtype(s).map(Global::Storage),
            (
                Allow::NumpyArrays,
                "numpy.core.multiarray" | "numpy._core.multiarray",
                "_reconstruct",
            ) => Some(Global::NpReconstruct),
            (Allow::NumpyArrays, "numpy", "ndarray") => Some(Global::NpNdarray),
            (Allow::NumpyArrays, "numpy", "dtype") => Some(Global::NpDtype),
            // Python 3 writing protocol 2 stores bytes as `_codecs.encode(str, 'latin1')` (a pure
            // function: the latin-1 code points back to bytes), e.g. a re-saved CIFAR batch.
            (Allow::NumpyArrays, "_codecs", "encode") => Some(Global::CodecsEncode),
            _ => None,
        };
        g.ok_or_else(|| {
            self.err(format!(
                "refusing global `{module}.{name}`: the only globals allowed are {} (nothing in a data file is executed)",
                match self.allow {
                    Allow::Torch => "torch tensor/parameter rebuilds, torch storage types and collections.OrderedDict",
                    Allow::NumpyArrays => "numpy array reconstruction and _codecs.encode",
                }
            ))
        })
    }

    pub(super) fn global_of(&self, v: Value) -> Option<Global> {
        match v {
            Value::Obj(i) => match self.arena.get(i)? {
                Obj::Global(g) => Some(*g),
                _ => None,
            },
            _ => None,
        }
    }

    pub(super) fn tuple_of(&self, v: Value, what: &str) -> Result<Vec<Value>> {
        match v {
            Value::Obj(i) => match self.arena.get(i) {
                Some(Obj::Tuple(t)) => Ok(t.clone()),
                _ => Err(self.err(format!("{what}: expected a tuple"))),
            },
            _ => Err(self.err(format!("{what}: expected a tuple"))),
        }
    }

    pub(super) fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        let g = self
            .global_of(func)
            .ok_or_else(|| self.err("REDUCE on something that is not an allowed global"))?;
        let a = self.tuple_of(args, "call arguments")?;
        match g {
            Global::OrderedDict if a.is_empty() => Ok(self.new_obj(Obj::Dict(Vec::new()))),
            Global::RebuildTensorV2 if a.len() >= 4 => {
                let storage = match a[0] {
                    Value::Obj(i) => match self.arena.get(i) {
                        Some(Obj::Storage(s)) => s.clone(),
                        _ => {
                            return Err(
                                self.err("_rebuild_tensor_v2: first argument is not a storage")
                            )
                        }
                    },
                    _ => {
                        return Err(self.err("_rebuild_tensor_v2: first argument is not a storage"))
                    }
                };
                let offset = self.int_of(a[1], "tensor storage offset")?;
                let shape = self.ints_of(a[2], "tensor size")?;
                let stride = self.ints_of(a[3], "tensor stride")?;
                if shape.len() != stride.len() {
                    return Err(self.err(format!(
                        "tensor size {shape:?} and stride {stride:?} differ in length"
                    )));
                }
                Ok(self.new_obj(Obj::Tensor(TensorRef {
                    storage,
                    offset,
                    shape,
                    stride,
                })))
            }
            Global::RebuildParameter if !a.is_empty() => match self.arena.get(match a[0] {
                Value::Obj(i) => i,
                _ => usize::MAX,
            }) {
                Some(Obj::Tensor(_)) => Ok(a[0]),
                _ => Err(self.err("_rebuild_parameter: first argument is not a tensor")),
            },
            Global::NpReconstruct if a.len() == 3 => Ok(self.new_obj(Obj::NdArray(NdArray {
                shape: Vec::new(),
                dtype: String::new(),
                data: Vec::new(),
            }))),
            Global::CodecsEncode if a.len() == 2 => {
                let enc = self
                    .str_of(a[1])
                    .ok_or_else(|| self.err("_codecs.encode: expected an encoding name"))?;
                if !matches!(
                    enc.to_ascii_lowercase().as_str(),
                    "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1"
                ) {
                    return Err(self.err(format!(
                        "_codecs.encode: only the latin1 encoding is understood, found '{enc}'"
                    )));
                }
                let text = match a[0] {
                    Value::Obj(i) => match self.arena.get(i) {
                        Some(Obj::Str(t)) => t,
                        _ => return Err(self.err("_codecs.encode: expected a string")),
                    },
                    _ => return Err(self.err("_codecs.encode: expected a string")),
                };
                let bytes = text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).ok())
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| {
                        self.err("_codecs.encode: a character above U+00FF is not latin1")
                    })?;
                Ok(self.new_obj(Obj::Bytes(bytes)))
            }
            Global::NpDtype if !a.is_empty() => {
                let s = self
                    .str_of(a[0])
                    .ok_or_else(|| self.err("numpy.dtype: expected a type string"))?;
                Ok(self.new_obj(Obj::Dtype(s, '=')))
            }
            other => Err(self.err(format!(
                "call of {other:?} with {} arguments is not understood",
                a.len()
            ))),
        }
    }

    pub(super) fn build(&mut self, obj: Value, state: Value) -> Result<()> {
        let Value::Obj(i) = obj else {
            return Err(self.err("BUILD on a scalar"));
        };
        match self.arena.get(i) {
            // OrderedDict `_metadata` of a state_dict: not needed.
            Some(Obj::Dict(_)) => Ok(()),
            Some(Obj::Dtype(s, _)) => {
                let order = match self
                    .tuple_of(state, "numpy dtype state")?
                    .get(1)
                    .and_then(|&v| self.str_of(v))
                {
                    Some(o) => o.chars().next().unwrap_or('='),
                    None => '=',
                };
                let s = s.clone();
                self.arena[i] = Obj::Dtype(s, order);
                Ok(())
            }
            Some(Obj::NdArray(_)) => {
                let st = self.tuple_of(state, "numpy array state")?;
                if st.len() != 5 {
                    return Err(self.err("numpy array state: expected 5 items"));
                }
                let shape = self.ints_of(st[1], "numpy array shape")?;
                let dtype = match st[2] {
                    Value::Obj(j) => match self.arena.get(j) {
                        Some(Obj::Dtype(s, order)) => {
                            if *order == '>' {
                                return Err(self.err("big-endian numpy arrays are not supported"));
                            }
                            s.clone()
                        }
                        _ => return Err(self.err("numpy array state: no dtype")),
                    },
                    _ => return Err(self.err("numpy array state: no dtype")),
                };
                if st[3] == Value::Bool(true) {
                    return Err(self.err("Fortran-order numpy arrays are not supported"));
                }
                let data = match st[4] {
                    Value::Obj(j) => match self.arena.get_mut(j) {
                        Some(Obj::Bytes(b)) => std::mem::take(b),
                        _ => return Err(self.err("numpy array data is not a byte string")),
                    },
                    _ => return Err(self.err("numpy array data is not a byte string")),
                };
                self.arena[i] = Obj::NdArray(NdArray { shape, dtype, data });
                Ok(())
            }
            _ => Err(self.err("BUILD on an object this reader does not rebuild")),
        }
    }

    pub(super) fn persistent(&mut self, pid: Value) -> Result<Value> {
        if self.allow != Allow::Torch {
            return Err(self.err("persistent ids are only allowed in torch files"));
        }
        let t = self.tuple_of(pid, "persistent id")?;
        if t.len() != 5 || self.str_of(t[0]).as_deref() != Some("storage") {
            return Err(self.err("persistent id: expected ('storage', type, key, location, numel)"));
        }
        let dtype = match self.global_of(t[1]) {
            Some(Global::Storage(d)) => d,
            _ => return Err(self.err("persistent id: second item is not a torch storage type")),
        };
        let key = self
            .str_of(t[2])
            .ok_or_else(|| self.err("persistent id: storage key is not a string"))?;
        let numel = self.int_of(t[4], "storage numel")?;
        Ok(self.new_obj(Obj::Storage(StorageRef { dtype, key, numel })))
    }
}

/// The dtype of a `torch.<Name>Storage` global.
fn storage_dtype(name: &str) -> Option<DType> {
    match name {
        "FloatStorage" => Some(DType::F32),
        "DoubleStorage" => Some(DType::F64),
        "HalfStorage" => Some(DType::F16),
        "BFloat16Storage" => Some(DType::BF16),
        "LongStorage" => Some(DType::I64),
        "IntStorage" => Some(DType::I32),
        "ByteStorage" => Some(DType::U8),
        _ => None,
    }
}
