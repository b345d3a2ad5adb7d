//! The opcode loop of the pickle reader: stack, marks, memo and the arena of objects. Anything
//! that names or calls a global is delegated to `calls.rs`, the only place with an allow-list.

use std::collections::HashMap;
use std::path::Path;

use super::{Allow, Obj, Pickle, Value};
use crate::data::io::Cursor;
use crate::error::{Error, Result};

pub(super) struct Machine<'a> {
    pub(super) cur: Cursor<'a>,
    pub(super) allow: Allow,
    pub(super) arena: Vec<Obj>,
    pub(super) stack: Vec<Value>,
    /// Stacks saved by MARK; restored when the marked items are consumed.
    pub(super) marks: Vec<Vec<Value>>,
    pub(super) memo: HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    pub(super) fn new(path: &'a Path, buf: &'a [u8], allow: Allow) -> Self {
        Machine {
            cur: Cursor::new(path, buf),
            allow,
            arena: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    pub(super) fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(
            self.cur.path,
            format!("pickle: {} (at byte {})", msg.into(), self.cur.pos),
        )
    }

    pub(super) fn new_obj(&mut self, o: Obj) -> Value {
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

    pub(super) fn run(mut self) -> Result<Pickle> {
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

    pub(super) fn str_of(&self, v: Value) -> Option<String> {
        match v {
            Value::Obj(i) => match self.arena.get(i)? {
                Obj::Str(s) => Some(s.clone()),
                Obj::Bytes(b) => Some(b.iter().map(|&c| c as char).collect()),
                _ => None,
            },
            _ => None,
        }
    }

    pub(super) fn int_of(&self, v: Value, what: &str) -> Result<usize> {
        match v {
            Value::Int(i) if i >= 0 => Ok(i as usize),
            _ => Err(self.err(format!("{what}: expected a non-negative int, found {v:?}"))),
        }
    }

    pub(super) fn ints_of(&self, v: Value, what: &str) -> Result<Vec<usize>> {
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
}

/// Consecutive (key, value) pairs, or None if the count is odd.
fn pairs(items: &[Value]) -> Option<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        return None;
    }
    Some(items.chunks(2).map(|c| (c[0], c[1])).collect())
}
