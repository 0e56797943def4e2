//! A restricted pickle interpreter: it reads the opcodes PyTorch checkpoints use (protocols
//! 2–4) into plain [`Value`]s and never calls anything.
//!
//! Design: Python's unpickler resolves every `GLOBAL` to a live object and calls it on
//! `REDUCE`, which is how a malicious pickle runs `os.system`. Here `GLOBAL`/`STACK_GLOBAL`
//! resolve only the names of [`Global`] (tensor rebuilders, storage types, `OrderedDict`,
//! `_codecs.encode`); any other name stops the parse with [`Refusal::Global`] before the
//! following opcodes are even read. `REDUCE`/`NEWOBJ` apply one of those known functions to
//! plain data (a tensor *reference*: storage key, offset, size, stride; no bytes are touched
//! here), and persistent ids become [`StorageRef`]s. `INST`, `OBJ`, extension registries and
//! out-of-band buffers are refused. Rejected: `serde-pickle` (no persistent ids, and it maps
//! unknown globals to values instead of refusing them) and candle's `pickle.rs` (a general
//! object model whose unknown globals also pass through as opaque objects).
//!
//! Lists and dicts are shared (`Rc<RefCell<..>>`) so that memoised references see the items
//! added after they were memoised, as in Python.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::DType;

/// A pickled value, as plain data.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int (the legacy format's magic number needs 80 bits).
    Int(i128),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A list.
    List(Rc<RefCell<Vec<Value>>>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A set (its items).
    Set(Vec<Value>),
    /// One of the allowed globals (not yet applied).
    Global(Global),
    /// A storage from a persistent id.
    Storage(StorageRef),
    /// A tensor view of a storage.
    Tensor(TensorRef),
}

/// A storage named by a persistent id: the bytes live elsewhere in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Its key (the legacy format's id, the zip format's `data/<key>`).
    pub key: String,
    /// Element type.
    pub dtype: DType,
    /// Elements it holds.
    pub numel: u64,
}

/// A tensor as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Its storage.
    pub storage: StorageRef,
    /// Offset into the storage, in elements.
    pub offset: u64,
    /// Shape.
    pub size: Vec<u64>,
    /// Strides, in elements.
    pub stride: Vec<u64>,
}

/// The globals a checkpoint may name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor` / `_rebuild_tensor_v2`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter` / `_rebuild_parameter_with_state`.
    RebuildParameter,
    /// `torch.<Type>Storage`.
    Storage(DType),
    /// `_codecs.encode` (how protocol 2 writes `bytes`).
    CodecsEncode,
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                Global::RebuildParameter
            }
            ("torch", s) => Global::Storage(DType::of_storage(s)?),
            ("_codecs", "encode") => Global::CodecsEncode,
            _ => return None,
        })
    }
}

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// It names a global outside the allowed set.
    Global {
        /// Module.
        module: String,
        /// Name.
        name: String,
    },
    /// An opcode this reader does not run (or a corrupt byte).
    Opcode {
        /// The byte.
        op: u8,
        /// Its offset.
        at: usize,
    },
    /// Malformed: truncated, stack underflow, wrong argument types.
    Malformed {
        /// What.
        what: String,
        /// Offset of the opcode.
        at: usize,
    },
}

/// Reads one pickle starting at `data[start..]`; returns the value and the offset after `STOP`.
pub fn load(data: &[u8], start: usize) -> Result<(Value, usize), Refusal> {
    let mut m = Machine {
        data,
        pos: start,
        op_at: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        m.op_at = m.pos;
        let op = m.take(1)?[0];
        if op == b'.' {
            let v = m.pop()?;
            return Ok((v, m.pos));
        }
        m.step(op)?;
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

fn list(v: Vec<Value>) -> Value {
    Value::List(Rc::new(RefCell::new(v)))
}

fn dict(v: Vec<(Value, Value)>) -> Value {
    Value::Dict(Rc::new(RefCell::new(v)))
}

impl Machine<'_> {
    fn bad(&self, what: impl Into<String>) -> Refusal {
        Refusal::Malformed {
            what: what.into(),
            at: self.op_at,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Refusal> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(self.bad("the pickle ends early"));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Refusal> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    }

    fn line(&mut self) -> Result<String, Refusal> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.bad("a text argument has no end of line"));
        };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn sized(&mut self, len_bytes: usize) -> Result<Vec<u8>, Refusal> {
        let n = self.uint(len_bytes)?;
        let n = usize::try_from(n).map_err(|_| self.bad("a length does not fit"))?;
        Ok(self.take(n)?.to_vec())
    }

    fn text(&mut self, len_bytes: usize) -> Result<Value, Refusal> {
        let b = self.sized(len_bytes)?;
        String::from_utf8(b)
            .map(Value::Str)
            .map_err(|_| self.bad("a string is not UTF-8"))
    }

    fn pop(&mut self) -> Result<Value, Refusal> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => Err(self.bad("the stack is empty")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, Refusal> {
        match self.stack.last_mut() {
            Some(v) => Ok(v),
            None => Err(Refusal::Malformed {
                what: "the stack is empty".into(),
                at: self.op_at,
            }),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, Refusal> {
        let Some(m) = self.marks.pop() else {
            return Err(self.bad("no MARK"));
        };
        if m > self.stack.len() {
            return Err(self.bad("a MARK above the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn global(&self, module: &str, name: &str) -> Result<Value, Refusal> {
        Global::resolve(module, name)
            .map(Value::Global)
            .ok_or_else(|| Refusal::Global {
                module: module.into(),
                name: name.into(),
            })
    }

    fn memo_get(&self, k: u64) -> Result<Value, Refusal> {
        self.memo
            .get(&k)
            .cloned()
            .ok_or_else(|| self.bad(format!("memo {k} is not set")))
    }

    fn memo_put(&mut self, k: u64) -> Result<(), Refusal> {
        let v = self.top()?.clone();
        self.memo.insert(k, v);
        Ok(())
    }

    fn int_line(&mut self) -> Result<Value, Refusal> {
        let l = self.line()?;
        let t = l.trim().trim_end_matches('L');
        match t {
            "00" => Ok(Value::Bool(false)),
            "01" => Ok(Value::Bool(true)),
            _ => t
                .parse::<i128>()
                .map(Value::Int)
                .map_err(|_| self.bad(format!("bad int {l:?}"))),
        }
    }

    fn long(&mut self, len_bytes: usize) -> Result<Value, Refusal> {
        let b = self.sized(len_bytes)?;
        if b.len() > 16 {
            return Err(self.bad("an int wider than 128 bits"));
        }
        let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
        let mut bytes = [if neg { 0xff } else { 0 }; 16];
        bytes[..b.len()].copy_from_slice(&b);
        Ok(Value::Int(i128::from_le_bytes(bytes)))
    }

    fn step(&mut self, op: u8) -> Result<(), Refusal> {
        match op {
            0x80 => {
                self.take(1)?;
            }
            0x95 => {
                self.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            _ => return self.step_data(op),
        }
        Ok(())
    }

    fn step_data(&mut self, op: u8) -> Result<(), Refusal> {
        let v = match op {
            b'I' | b'L' => self.int_line()?,
            b'J' => Value::Int(i128::from(self.uint(4)? as u32 as i32)),
            b'K' => Value::Int(i128::from(self.uint(1)?)),
            b'M' => Value::Int(i128::from(self.uint(2)?)),
            0x8a => self.long(1)?,
            0x8b => self.long(4)?,
            b'F' => {
                let l = self.line()?;
                Value::Float(l.trim().parse().map_err(|_| self.bad("bad float"))?)
            }
            b'G' => Value::Float(f64::from_bits(u64::from_be_bytes(
                self.take(8)?.try_into().unwrap_or([0; 8]),
            ))),
            b'S' => Value::Str(self.line()?.trim_matches(['\'', '"']).to_string()),
            b'T' | b'X' => self.text(4)?,
            b'U' | 0x8c => self.text(1)?,
            0x8d => self.text(8)?,
            b'V' => Value::Str(self.line()?),
            b'B' => Value::Bytes(self.sized(4)?),
            b'C' => Value::Bytes(self.sized(1)?),
            0x8e => Value::Bytes(self.sized(8)?),
            b']' => list(Vec::new()),
            b'}' => dict(Vec::new()),
            b')' => Value::Tuple(Vec::new()),
            0x8f => Value::Set(Vec::new()),
            _ => return self.step_containers(op),
        };
        self.stack.push(v);
        Ok(())
    }

    fn step_containers(&mut self, op: u8) -> Result<(), Refusal> {
        match op {
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(list(items));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if self.stack.len() < n {
                    return Err(self.bad("the stack is too short for TUPLE"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.stack.push(Value::Tuple(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.stack.push(dict(pairs));
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Set(items));
            }
            b'a' => {
                let v = self.pop()?;
                self.extend(vec![v])?;
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                self.extend(items)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.set_items(pairs)?;
            }
            _ => return self.step_memo(op),
        }
        Ok(())
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, Refusal> {
        if !items.len().is_multiple_of(2) {
            return Err(self.bad("a dict with an odd number of items"));
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn extend(&mut self, items: Vec<Value>) -> Result<(), Refusal> {
        match self.top()? {
            Value::List(l) => l.borrow_mut().extend(items),
            Value::Set(s) => s.extend(items),
            _ => return Err(self.bad("APPEND to something that is not a list")),
        }
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), Refusal> {
        match self.top()? {
            Value::Dict(d) => d.borrow_mut().extend(pairs),
            _ => return Err(self.bad("SETITEM on something that is not a dict")),
        }
        Ok(())
    }

    fn step_memo(&mut self, op: u8) -> Result<(), Refusal> {
        match op {
            b'g' => {
                let k = self
                    .line()?
                    .trim()
                    .parse()
                    .map_err(|_| self.bad("bad GET"))?;
                let v = self.memo_get(k)?;
                self.stack.push(v);
            }
            b'h' | b'j' => {
                let k = self.uint(if op == b'h' { 1 } else { 4 })?;
                let v = self.memo_get(k)?;
                self.stack.push(v);
            }
            b'p' => {
                let k = self
                    .line()?
                    .trim()
                    .parse()
                    .map_err(|_| self.bad("bad PUT"))?;
                self.memo_put(k)?;
            }
            b'q' | b'r' => {
                let k = self.uint(if op == b'q' { 1 } else { 4 })?;
                self.memo_put(k)?;
            }
            0x94 => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            _ => return self.step_objects(op),
        }
        Ok(())
    }

    fn step_objects(&mut self, op: u8) -> Result<(), Refusal> {
        match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let g = self.global(&module, &name)?;
                self.stack.push(g);
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err(self.bad("STACK_GLOBAL needs two strings"));
                };
                let g = self.global(&module, &name)?;
                self.stack.push(g);
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let f = self.pop()?;
                let v = self.apply(f, args)?;
                self.stack.push(v);
            }
            b'b' => {
                // the state of an OrderedDict (`_metadata`) or a parameter: not needed
                self.pop()?;
                if !matches!(self.top()?, Value::Dict(_) | Value::Tensor(_)) {
                    return Err(self.bad("BUILD on something that is not a dict or tensor"));
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let s = self.persistent(pid)?;
                self.stack.push(Value::Storage(s));
            }
            _ => return Err(Refusal::Opcode { op, at: self.op_at }),
        }
        Ok(())
    }

    /// `('storage', <type>, key, location, numel[, view])`: location is ignored (CUDA
    /// checkpoints load on the CPU).
    fn persistent(&self, pid: Value) -> Result<StorageRef, Refusal> {
        let Value::Tuple(t) = pid else {
            return Err(self.bad("a persistent id that is not a tuple"));
        };
        match t.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _loc, Value::Int(n), rest @ ..]
                if tag == "storage" && rest.len() <= 1 =>
            {
                if let [v] = rest {
                    if !matches!(v, Value::None) {
                        return Err(self.bad("storage views are not supported"));
                    }
                }
                let key = match key {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(self.bad("a storage key that is not a string")),
                };
                Ok(StorageRef {
                    key,
                    dtype: *dtype,
                    numel: u64::try_from(*n).map_err(|_| self.bad("a negative storage size"))?,
                })
            }
            _ => Err(self.bad("a persistent id that is not a storage")),
        }
    }

    fn apply(&self, f: Value, args: Value) -> Result<Value, Refusal> {
        let Value::Global(g) = f else {
            return Err(self.bad("REDUCE of something that is not an allowed function"));
        };
        let Value::Tuple(a) = args else {
            return Err(self.bad("REDUCE arguments are not a tuple"));
        };
        match (g, a.as_slice()) {
            (Global::OrderedDict, []) => Ok(dict(Vec::new())),
            (Global::OrderedDict, [Value::List(items)]) => {
                let mut pairs = Vec::new();
                for it in items.borrow().iter() {
                    match it {
                        Value::Tuple(kv) if kv.len() == 2 => {
                            pairs.push((kv[0].clone(), kv[1].clone()))
                        }
                        _ => return Err(self.bad("OrderedDict items are not pairs")),
                    }
                }
                Ok(dict(pairs))
            }
            (
                Global::RebuildTensor,
                [Value::Storage(s), Value::Int(off), Value::Tuple(size), Value::Tuple(stride), ..],
            ) => Ok(Value::Tensor(TensorRef {
                storage: s.clone(),
                offset: self.u64_of(&Value::Int(*off))?,
                size: size
                    .iter()
                    .map(|v| self.u64_of(v))
                    .collect::<Result<_, _>>()?,
                stride: stride
                    .iter()
                    .map(|v| self.u64_of(v))
                    .collect::<Result<_, _>>()?,
            })),
            (Global::RebuildParameter, [t @ Value::Tensor(_), ..]) => Ok(t.clone()),
            (Global::CodecsEncode, [Value::Str(s), ..]) => {
                Ok(Value::Bytes(s.chars().map(|c| c as u32 as u8).collect()))
            }
            (g, _) => Err(self.bad(format!("unexpected arguments for {g:?}"))),
        }
    }

    fn u64_of(&self, v: &Value) -> Result<u64, Refusal> {
        match v {
            Value::Int(i) => u64::try_from(*i).map_err(|_| self.bad("a negative size or stride")),
            _ => Err(self.bad("a size or stride that is not an int")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_outside_the_allowed_set_is_refused_before_anything_is_applied() {
        // pickle.dumps of a __reduce__ returning (os.system, ("touch x",)), protocol 2
        let evil = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00touch xq\x01\x85q\x02Rq\x03.";
        let want = Refusal::Global {
            module: "posix".into(),
            name: "system".into(),
        };
        assert_eq!(load(evil, 0).unwrap_err(), want);
        // the same through STACK_GLOBAL (protocol 4)
        let evil4 = b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x01x\x85R.";
        assert_eq!(load(evil4, 0).unwrap_err(), want);
    }

    #[test]
    fn instance_opcodes_are_refused() {
        // INST: `i` module\n name\n after a MARK
        let inst = b"(iposix\nsystem\n.";
        assert!(matches!(
            load(inst, 0),
            Err(Refusal::Opcode { op: b'i', .. })
        ));
    }

    #[test]
    fn memoised_lists_see_later_appends_and_ordered_dicts_are_dicts() {
        // [l, l] where l = [1] is appended after it was memoised
        let p = b"\x80\x02]q\x00(]q\x01h\x01eh\x01K\x01a0.";
        let (v, _) = load(p, 0).unwrap();
        let Value::List(outer) = v else {
            panic!("{v:?}")
        };
        let outer = outer.borrow();
        assert_eq!(outer.len(), 2);
        for x in outer.iter() {
            let Value::List(l) = x else { panic!("{x:?}") };
            assert!(matches!(l.borrow().as_slice(), [Value::Int(1)]));
        }
        let od = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aK\x02s.";
        let (v, _) = load(od, 0).unwrap();
        let Value::Dict(d) = v else { panic!("{v:?}") };
        assert!(matches!(d.borrow().as_slice(), [(Value::Str(k), Value::Int(2))] if k == "a"));
    }
}
