//! A restricted reader of the `data.pkl` that `torch.save` writes for a state dict: a small pickle
//! opcode interpreter that understands tensor rebuilding and nothing else. It never calls anything:
//! the only globals it accepts are `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` and the typed storages (`torch.FloatStorage`, ...), each turned
//! into data; any other global (`os.system`, `builtins.eval`, ...) is refused the moment the opcode
//! naming it is read. Storages arrive as persistent ids `('storage', type, key, location, numel)`
//! and are recorded by key, not loaded, so a file is sized from its pickle alone.
//!
//! Containers are shared (`Rc`) so that memo lookups copy nothing: a pickle cannot grow memory
//! faster than its own length.

use std::cell::RefCell;
use std::rc::Rc;

use super::Dtype;

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickleError {
    /// It names a global outside the allowlist (`module.name`).
    Refused(String),
    /// It is malformed or holds something a state dict does not.
    Malformed(String),
}

/// A storage a tensor views: its key in the archive (`data/<key>`), element type and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// The archive record holding its bytes.
    pub key: String,
    /// Element type.
    pub dtype: Dtype,
    /// Elements the persistent id declares.
    pub numel: u64,
}

/// A tensor as the pickle rebuilds it: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickledTensor {
    /// The storage it views.
    pub storage: StorageRef,
    /// First element, in elements.
    pub offset: u64,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub strides: Vec<u64>,
}

impl PickledTensor {
    /// Whether the view is the row-major layout of its shape (empty dimensions and size-1 strides
    /// aside), so its bytes can be read in one piece.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1u64;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d as u64;
        }
        true
    }
}

/// Elements a strided view spans in its storage, from its first element (0 for an empty view).
pub fn span(shape: &[usize], strides: &[u64]) -> u64 {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape.iter().zip(strides).map(|(&d, &s)| (d as u64 - 1) * s).sum::<u64>()
}

/// The typed storages `torch.save` names, and their element types.
const STORAGES: [(&str, Dtype); 10] = [
    ("FloatStorage", Dtype::F32),
    ("DoubleStorage", Dtype::F64),
    ("HalfStorage", Dtype::F16),
    ("BFloat16Storage", Dtype::BF16),
    ("LongStorage", Dtype::I64),
    ("IntStorage", Dtype::I32),
    ("ShortStorage", Dtype::I16),
    ("CharStorage", Dtype::I8),
    ("ByteStorage", Dtype::U8),
    ("BoolStorage", Dtype::BOOL),
];

/// The globals the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

/// A dict's entries, in insertion order, shared between the stack and the memo.
type Entries = Rc<RefCell<Vec<(Value, Value)>>>;

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Entries),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<PickledTensor>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "a bool",
            Value::Int(_) => "an int",
            Value::Float => "a float",
            Value::Str(_) => "a str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class or function",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

/// Reads a pickled state dict: every `(name, tensor)` in pickle order.
pub fn read_state_dict(data: &[u8]) -> Result<Vec<(String, PickledTensor)>, PickleError> {
    let top = Machine { data, at: 0, stack: Vec::new(), marks: Vec::new(), memo: Vec::new() }.run()?;
    let Value::Dict(entries) = top else {
        return Err(malformed(format!("the pickle holds {}, not a state dict", top.kind())));
    };
    let entries = entries.borrow();
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries.iter() {
        let (Value::Str(name), Value::Tensor(t)) = (key, value) else {
            return Err(malformed(format!("a state dict entry maps {} to {}", key.kind(), value.kind())));
        };
        out.push((name.to_string(), (**t).clone()));
    }
    Ok(out)
}

fn malformed(reason: impl Into<String>) -> PickleError {
    PickleError::Malformed(reason.into())
}

struct Machine<'a> {
    data: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
}

impl Machine<'_> {
    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.at;
            let op = self.take(1)?[0];
            if op == b'.' {
                return self.pop();
            }
            self.step(op).map_err(|e| match e {
                PickleError::Malformed(m) => malformed(format!("{m} (opcode {:?} at byte {at})", op as char)),
                refused => refused,
            })?;
        }
    }

    fn step(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            0x80 => {
                let protocol = self.take(1)?[0];
                if protocol > 5 {
                    return Err(malformed(format!("pickle protocol {protocol}")));
                }
            }
            0x95 => drop(self.take(8)?),
            b'(' => self.marks.push(self.stack.len()),
            b'}' => self.push(Value::Dict(Rc::default())),
            b']' => self.push(Value::List(Rc::default())),
            b')' => self.push(Value::Tuple(Rc::from(Vec::new()))),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(items.into()));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let items = self.pop_n(n)?;
                self.push(Value::Tuple(items.into()));
            }
            b'X' => {
                let n = self.u32()? as usize;
                self.string(n)?;
            }
            0x8c => {
                let n = self.take(1)?[0] as usize;
                self.string(n)?;
            }
            0x8d => {
                let n = usize::try_from(self.u64()?).map_err(|_| malformed("string length"))?;
                self.string(n)?;
            }
            b'B' => {
                let n = self.u32()? as usize;
                self.take(n)?;
                self.push(Value::Bytes);
            }
            b'C' => {
                let n = self.take(1)?[0] as usize;
                self.take(n)?;
                self.push(Value::Bytes);
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let global = resolve(&module, &name)?;
                self.push(Value::Global(global));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    return Err(malformed("STACK_GLOBAL without two strings"));
                };
                let global = resolve(module, name)?;
                self.push(Value::Global(global));
            }
            b'q' => {
                let i = self.take(1)?[0] as usize;
                self.put(i)?;
            }
            b'r' => {
                let i = self.u32()? as usize;
                self.put(i)?;
            }
            0x94 => self.put(self.memo.len())?,
            b'h' => {
                let i = self.take(1)?[0] as usize;
                self.get(i)?;
            }
            b'j' => {
                let i = self.u32()? as usize;
                self.get(i)?;
            }
            b'K' => {
                let v = self.take(1)?[0];
                self.push(Value::Int(v.into()));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(v.into()));
            }
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(v.into()));
            }
            0x8a => {
                let n = self.take(1)?[0] as usize;
                let value = long(self.take(n)?)?;
                self.push(Value::Int(value));
            }
            b'G' => {
                self.take(8)?;
                self.push(Value::Float);
            }
            b'N' => self.push(Value::None),
            0x88 | 0x89 => self.push(Value::Bool),
            b'0' => drop(self.pop()?),
            b'Q' => {
                let pid = self.pop()?;
                let storage = storage(&pid)?;
                self.push(Value::Storage(Rc::new(storage)));
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let made = call(&callable, &args)?;
                self.push(made);
            }
            b'b' => {
                // OrderedDict state (`_metadata` of a module's state dict): not needed for loading.
                let _state = self.pop()?;
                if !matches!(self.stack.last(), Some(Value::Dict(_))) {
                    return Err(malformed("BUILD on something other than a dict"));
                }
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.dict()?.borrow_mut().push((key, value));
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(malformed("SETITEMS with an odd number of items"));
                }
                let mut pairs = items.into_iter();
                let dict = self.dict()?;
                while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
                    dict.borrow_mut().push((k, v));
                }
            }
            b'a' => {
                let value = self.pop()?;
                self.list()?.borrow_mut().push(value);
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.list()?.borrow_mut().extend(items);
            }
            other => return Err(malformed(format!("unsupported opcode 0x{other:02x}"))),
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| malformed(format!("cut short: {n} bytes wanted at byte {}", self.at)))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.at..];
        let end =
            rest.iter().position(|&b| b == b'\n').ok_or_else(|| malformed("GLOBAL without a newline"))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(text)
    }

    fn string(&mut self, n: usize) -> Result<(), PickleError> {
        let text = std::str::from_utf8(self.take(n)?).map_err(|_| malformed("a string that is not UTF-8"))?;
        let value = Value::Str(Rc::from(text));
        self.push(value);
        Ok(())
    }

    fn push(&mut self, value: Value) {
        self.stack.push(value);
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(malformed("the stack is empty"));
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(malformed(format!("{n} items wanted on the stack")));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| malformed("no MARK"))?;
        Ok(self.stack.split_off(mark))
    }

    fn put(&mut self, i: usize) -> Result<(), PickleError> {
        let top = self.stack.last().cloned().ok_or_else(|| malformed("memoizing an empty stack"))?;
        if i > self.data.len() {
            return Err(malformed(format!("memo index {i} beyond the pickle's length")));
        }
        if self.memo.len() <= i {
            self.memo.resize(i + 1, None);
        }
        self.memo[i] = Some(top);
        Ok(())
    }

    fn get(&mut self, i: usize) -> Result<(), PickleError> {
        let value =
            self.memo.get(i).cloned().flatten().ok_or_else(|| malformed(format!("memo {i} unset")))?;
        self.push(value);
        Ok(())
    }

    fn dict(&self) -> Result<Entries, PickleError> {
        match self.stack.last() {
            Some(Value::Dict(d)) => Ok(d.clone()),
            _ => Err(malformed("setting an item on something other than a dict")),
        }
    }

    fn list(&self) -> Result<Rc<RefCell<Vec<Value>>>, PickleError> {
        match self.stack.last() {
            Some(Value::List(l)) => Ok(l.clone()),
            _ => Err(malformed("appending to something other than a list")),
        }
    }
}

/// The accepted global `module.name`, or a refusal naming it.
fn resolve(module: &str, name: &str) -> Result<Global, PickleError> {
    Ok(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch", storage) => match STORAGES.iter().find(|(n, _)| *n == storage) {
            Some(&(_, dtype)) => Global::Storage(dtype),
            None => return Err(PickleError::Refused(format!("{module}.{name}"))),
        },
        _ => return Err(PickleError::Refused(format!("{module}.{name}"))),
    })
}

/// A little-endian two's-complement integer of at most 8 bytes (LONG1).
fn long(bytes: &[u8]) -> Result<i64, PickleError> {
    if bytes.len() > 8 {
        return Err(malformed(format!("a {}-byte integer", bytes.len())));
    }
    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
    let mut full = [fill; 8];
    full[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(full))
}

/// A persistent id `('storage', type, key, location, numel)`.
fn storage(pid: &Value) -> Result<StorageRef, PickleError> {
    let bad = || malformed("a persistent id that is not ('storage', type, key, location, numel)");
    let Value::Tuple(items) = pid else { return Err(bad()) };
    match &items[..] {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_), Value::Int(n)]
            if &**tag == "storage" && *n >= 0 =>
        {
            Ok(StorageRef { key: key.to_string(), dtype: *dtype, numel: *n as u64 })
        }
        _ => Err(bad()),
    }
}

/// What calling an accepted global with `args` builds.
fn call(callable: &Value, args: &Value) -> Result<Value, PickleError> {
    let Value::Tuple(args) = args else { return Err(malformed("call arguments that are not a tuple")) };
    match callable {
        Value::Global(Global::OrderedDict) => ordered_dict(args),
        Value::Global(Global::RebuildTensor) => rebuild_tensor(args),
        Value::Global(Global::RebuildParameter) => match args.first() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor.clone()),
            _ => Err(malformed("_rebuild_parameter without a tensor")),
        },
        Value::Global(Global::Storage(_)) => Err(malformed("a storage class called directly")),
        other => Err(malformed(format!("calling {}", other.kind()))),
    }
}

/// `OrderedDict()` or `OrderedDict([(key, value), ...])`.
fn ordered_dict(args: &[Value]) -> Result<Value, PickleError> {
    let mut entries = Vec::new();
    match args {
        [] => {}
        [Value::List(items)] => {
            for item in items.borrow().iter() {
                let Value::Tuple(pair) = item else { return Err(malformed("OrderedDict item not a pair")) };
                let [k, v] = &pair[..] else { return Err(malformed("OrderedDict item not a pair")) };
                entries.push((k.clone(), v.clone()));
            }
        }
        _ => return Err(malformed("OrderedDict called with unexpected arguments")),
    }
    Ok(Value::Dict(Rc::new(RefCell::new(entries))))
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
fn rebuild_tensor(args: &[Value]) -> Result<Value, PickleError> {
    let bad = |what: &str| malformed(format!("_rebuild_tensor_v2 with {what}"));
    let (Some(Value::Storage(storage)), Some(Value::Int(offset)), Some(size), Some(stride)) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        return Err(bad("arguments other than (storage, offset, size, stride, ...)"));
    };
    if !(6..=7).contains(&args.len()) {
        return Err(bad(&format!("{} arguments", args.len())));
    }
    let shape = ints(size).ok_or_else(|| bad("a size that is not a tuple of non-negative ints"))?;
    let strides = ints(stride).ok_or_else(|| bad("a stride that is not a tuple of non-negative ints"))?;
    if shape.len() != strides.len() || *offset < 0 {
        return Err(bad(&format!("size {shape:?}, stride {strides:?} and offset {offset}")));
    }
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
    let end = numel.and_then(|_| {
        let span = shape
            .iter()
            .zip(&strides)
            .try_fold(0u64, |s, (&d, &st)| s.checked_add((d as u64).saturating_sub(1).checked_mul(st)?))?;
        (*offset as u64).checked_add(span)
    });
    let Some(end) = end else { return Err(bad(&format!("size {shape:?} that overflows"))) };
    if !shape.contains(&0) && end >= storage.numel {
        return Err(bad(&format!(
            "a view (offset {offset}, size {shape:?}, stride {strides:?}) past its {}-element storage",
            storage.numel
        )));
    }
    let tensor = PickledTensor { storage: (**storage).clone(), offset: *offset as u64, shape, strides };
    Ok(Value::Tensor(Rc::new(tensor)))
}

fn ints(value: &Value) -> Option<Vec<u64>> {
    let Value::Tuple(items) = value else { return None };
    items.iter().map(|v| if let Value::Int(i) = v { u64::try_from(*i).ok() } else { None }).collect()
}

#[cfg(test)]
#[path = "tests/pickle.rs"]
mod tests;
