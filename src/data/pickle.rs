//! A pickle reader that executes nothing, for PyTorch `.pt` files and CIFAR's python batches.
//!
//! It interprets the opcodes of protocols 0-4 that those files use and builds plain values (ints,
//! floats, strings, bytes, tuples, lists, dicts) in an arena. Globals are never imported: a global is
//! looked up in a fixed allow-list chosen by the caller ([`Allow`]) and anything else is refused with
//! an error naming it. Calls (REDUCE) and BUILD are only understood for those allowed globals.
//! Containers live in an arena and are referred to by index, so memo sharing keeps Python's object
//! identity, nothing is deep-copied and dropping a deeply nested pickle does not recurse.

use std::collections::HashMap;
use std::path::Path;

use crate::data::io::Cursor;
use crate::error::{Error, Result};

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
    Machine {
        cur: Cursor::new(path, buf),
        allow,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    cur: Cursor<'a>,
    allow: Allow,
    arena: Vec<Obj>,
    stack: Vec<Value>,
    /// Stacks saved by MARK; restored when the marked items are consumed.
    marks: Vec<Vec<Value>>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(
            self.cur.path,
            format!("pickle: {} (at byte {})", msg.into(), self.cur.pos),
        )
    }

    fn new_obj(&mut self, o: Obj) -> Value {
        self.arena.push(o);
        Value::Obj(self.arena.len() - 1)
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<Value> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err("stack underflow"))
    }

    /// Items pushed since the last MARK, restoring the stack beneath it.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let saved = self
            .marks
            .pop()
            .ok_or_else(|| self.err("MARK expected but none is open"))?;
        Ok(std::mem::replace(&mut self.stack, saved))
    }

    fn read_line(&mut self) -> Result<String> {
        let rest = &self.cur.buf[self.cur.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated text line"))?;
        let line = self.cur.take(n + 1)?;
        String::from_utf8(line[..n].to_vec()).map_err(|_| self.err("text line is not UTF-8"))
    }

    fn text(&mut self, n: usize) -> Result<Value> {
        let b = self.cur.take(n)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| self.err("string is not valid UTF-8"))?
            .to_string();
        Ok(self.new_obj(Obj::Str(s)))
    }

    fn bytes(&mut self, n: usize) -> Result<Value> {
        let b = self.cur.take(n)?.to_vec();
        Ok(self.new_obj(Obj::Bytes(b)))
    }

    fn len32(&mut self) -> Result<usize> {
        Ok(self.cur.u32_le()? as usize)
    }

    fn len64(&mut self) -> Result<usize> {
        let n = self.cur.u64_le()?;
        usize::try_from(n).map_err(|_| self.err(format!("length {n} does not fit in memory")))
    }

    fn memo_get(&self, k: u32) -> Result<Value> {
        self.memo
            .get(&k)
            .copied()
            .ok_or_else(|| self.err(format!("memo key {k} used before it was set")))
    }

    fn memo_put(&mut self, k: u32) -> Result<()> {
        let v = self.top()?;
        self.memo.insert(k, v);
        Ok(())
    }

    fn run(mut self) -> Result<Pickle> {
        loop {
            let op = self
                .cur
                .u8()
                .map_err(|_| self.err("ended without STOP (truncated)"))?;
            match op {
                0x80 => {
                    let p = self.cur.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported protocol {p}")));
                    }
                }
                0x95 => {
                    self.cur.u64_le()?; // FRAME: a length hint only
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Pickle {
                        arena: self.arena,
                        root,
                    });
                }
                b'(' => {
                    let s = std::mem::take(&mut self.stack);
                    self.marks.push(s);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?;
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.cur.u32_le()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.cur.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.cur.u16_le()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.cur.u8()? as usize;
                    let v = self.long(n)?;
                    self.stack.push(Value::Int(v));
                }
                b'I' => {
                    let line = self.read_line()?;
                    let v = match line.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => Value::Int(s.parse().map_err(|_| self.err(format!("bad INT {s:?}")))?),
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let b = self.cur.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.len32()?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.cur.u8()? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len64()?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                // py2 str (BINSTRING / SHORT_BINSTRING) and py3 bytes: kept as bytes.
                b'T' | b'B' => {
                    let n = self.len32()?;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                b'U' | b'C' => {
                    let n = self.cur.u8()? as usize;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                0x8e => {
                    let n = self.len64()?;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                b')' => {
                    let v = self.new_obj(Obj::Tuple(Vec::new()));
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::Tuple(items));
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow in TUPLE"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.new_obj(Obj::Tuple(items));
                    self.stack.push(v);
                }
                b']' => {
                    let v = self.new_obj(Obj::List(Vec::new()));
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::List(items));
                    self.stack.push(v);
                }
                b'}' => {
                    let v = self.new_obj(Obj::Dict(Vec::new()));
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items)
                        .ok_or_else(|| self.err("DICT with an odd number of items"))?;
                    let v = self.new_obj(Obj::Dict(pairs));
                    self.stack.push(v);
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.extend_list(list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend_list(list, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.extend_dict(d, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let kv = pairs(&items)
                        .ok_or_else(|| self.err("SETITEMS with an odd number of items"))?;
                    let d = self.top()?;
                    self.extend_dict(d, kv)?;
                }
                b'q' => {
                    let k = self.cur.u8()? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.cur.u32_le()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.cur.u8()? as u32;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let k = self.cur.u32_le()?;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.read_line()?;
                    let name = self.read_line()?;
                    let g = self.global(&module, &name)?;
                    let v = self.new_obj(Obj::Global(g));
                    self.stack.push(v);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (m, n) = match (self.str_of(module), self.str_of(name)) {
                        (Some(m), Some(n)) => (m, n),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    };
                    let g = self.global(&m, &n)?;
                    let v = self.new_obj(Obj::Global(g));
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    self.build(obj, state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.stack.push(v);
                }
                other => {
                    return Err(self.err(format!(
                        "opcode {:?} (0x{other:02x}) is not supported",
                        other as char
                    )))
                }
            }
        }
    }

    fn long(&mut self, n: usize) -> Result<i64> {
        if n > 8 {
            return Err(self.err(format!("integer of {n} bytes does not fit in 64 bits")));
        }
        let b = self.cur.take(n)?;
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b);
        if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
            a[n..].fill(0xff); // sign-extend two's complement
        }
        Ok(i64::from_le_bytes(a))
    }

    fn str_of(&self, v: Value) -> Option<String> {
        match v {
            Value::Obj(i) => match self.arena.get(i)? {
                Obj::Str(s) => Some(s.clone()),
                Obj::Bytes(b) => Some(b.iter().map(|&c| c as char).collect()),
                _ => None,
            },
            _ => None,
        }
    }

    fn int_of(&self, v: Value, what: &str) -> Result<usize> {
        match v {
            Value::Int(i) if i >= 0 => Ok(i as usize),
            _ => Err(self.err(format!("{what}: expected a non-negative int, found {v:?}"))),
        }
    }

    fn ints_of(&self, v: Value, what: &str) -> Result<Vec<usize>> {
        let items = match v {
            Value::Obj(i) => match self.arena.get(i) {
                Some(Obj::Tuple(t)) | Some(Obj::List(t)) => t.clone(),
                _ => return Err(self.err(format!("{what}: expected a tuple of ints"))),
            },
            _ => return Err(self.err(format!("{what}: expected a tuple of ints"))),
        };
        items.iter().map(|&x| self.int_of(x, what)).collect()
    }

    fn extend_list(&mut self, list: Value, items: Vec<Value>) -> Result<()> {
        if let Value::Obj(i) = list {
            if let Some(Obj::List(l)) = self.arena.get_mut(i) {
                l.extend(items);
                return Ok(());
            }
        }
        Err(self.err("APPEND to something that is not a list"))
    }

    fn extend_dict(&mut self, d: Value, kv: Vec<(Value, Value)>) -> Result<()> {
        if let Value::Obj(i) = d {
            if let Some(Obj::Dict(m)) = self.arena.get_mut(i) {
                m.extend(kv);
                return Ok(());
            }
        }
        Err(self.err("SETITEM on something that is not a dict"))
    }

    fn global(&self, module: &str, name: &str) -> Result<Global> {
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
            _ => None,
        };
        g.ok_or_else(|| {
            self.err(format!(
                "refusing global `{module}.{name}`: the only globals allowed are {} (nothing in a data file is executed)",
                match self.allow {
                    Allow::Torch => "torch tensor/parameter rebuilds, torch storage types and collections.OrderedDict",
                    Allow::NumpyArrays => "numpy array reconstruction",
                }
            ))
        })
    }

    fn global_of(&self, v: Value) -> Option<Global> {
        match v {
            Value::Obj(i) => match self.arena.get(i)? {
                Obj::Global(g) => Some(*g),
                _ => None,
            },
            _ => None,
        }
    }

    fn tuple_of(&self, v: Value, what: &str) -> Result<Vec<Value>> {
        match v {
            Value::Obj(i) => match self.arena.get(i) {
                Some(Obj::Tuple(t)) => Ok(t.clone()),
                _ => Err(self.err(format!("{what}: expected a tuple"))),
            },
            _ => Err(self.err(format!("{what}: expected a tuple"))),
        }
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
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

    fn build(&mut self, obj: Value, state: Value) -> Result<()> {
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

    fn persistent(&mut self, pid: Value) -> Result<Value> {
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

/// Consecutive (key, value) pairs, or None if the count is odd.
fn pairs(items: &[Value]) -> Option<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        return None;
    }
    Some(items.chunks(2).map(|c| (c[0], c[1])).collect())
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
