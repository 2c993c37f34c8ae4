//! A restricted reader of the `data.pkl` that `torch.save` writes for a state dict: a small pickle
//! opcode interpreter that understands tensor rebuilding and nothing else. It never calls anything:
//! the only globals it accepts are `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` and the typed storages (`torch.FloatStorage`, ...), each turned
//! into data; any other global (`os.system`, `builtins.eval`, ...) is refused the moment the opcode
//! naming it is read. Storages arrive as persistent ids `('storage', type, key, location, numel)`
//! and are recorded by key, not loaded, so a file is sized from its pickle alone.
//!
//! The pickle comes from a file anyone may have placed under a model root, so what it can cost is
//! bounded, whatever its bytes: at most [`MAX_OPCODES`] opcodes are run, the memo holds at most
//! [`MAX_MEMO_ENTRIES`] entries and containers nest at most [`MAX_DEPTH`] deep (the values, in
//! `value`, are dropped iteratively, so no nesting can overflow the stack either). Containers are
//! shared (`Rc`) so that memo lookups copy nothing, and a container cannot be filled once it sits
//! inside another (the pickler never does so for a tree), so the values form no cycle to leak.

use std::collections::HashMap;
use std::rc::Rc;

use super::Dtype;
use torch::{call, resolve, storage};
pub use torch::{span, PickledTensor, StorageRef};
use value::{nest, Node, Value};

mod torch;
mod value;

/// Most opcodes one pickle may run. A state dict of 2 500 tensors, as `torch.save` writes it, runs
/// about 80 000; each opcode holds at most about a hundred bytes besides its own data, so this bounds
/// a hostile pickle's values to about 200 MiB.
pub const MAX_OPCODES: usize = 1 << 21;

/// Most memo entries one pickle may set. The same 2 500-tensor state dict sets about 20 000. The
/// protocol lets a 5-byte `LONG_BINPUT` name any index, so the memo is a map of the entries set,
/// never a table as long as the largest index.
pub const MAX_MEMO_ENTRIES: usize = 1 << 18;

/// Deepest nesting of containers (tuples, lists, dicts) read. A state dict nests 3 deep (its
/// `_metadata` is a dict of dicts); a pickle of 200 000 nested lists is 400 KB.
pub const MAX_DEPTH: usize = 64;

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// It names a global outside the allowlist (`module.name`).
    #[error("it names `{0}`")]
    Refused(String),
    /// It is malformed or holds something a state dict does not.
    #[error("{0}")]
    Malformed(String),
    /// It goes past one of the reader's limits at byte `at`.
    #[error("{limit} at byte {at} is {value}, over the limit of {}", limit.max())]
    OverLimit {
        /// Which limit.
        limit: Limit,
        /// What the pickle reached: the limit plus one.
        value: usize,
        /// Where, in bytes from the pickle's start.
        at: usize,
    },
}

/// The limits on what a pickle may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_DEPTH`].
    Depth,
    /// [`MAX_MEMO_ENTRIES`].
    MemoEntries,
    /// [`MAX_OPCODES`].
    Opcodes,
}

impl Limit {
    /// The limit's value.
    pub fn max(self) -> usize {
        match self {
            Limit::Depth => MAX_DEPTH,
            Limit::MemoEntries => MAX_MEMO_ENTRIES,
            Limit::Opcodes => MAX_OPCODES,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Depth => "the nesting depth of containers",
            Limit::MemoEntries => "the number of memo entries",
            Limit::Opcodes => "the number of opcodes",
        })
    }
}

/// Reads a pickled state dict: every `(name, tensor)` in pickle order.
pub fn read_state_dict(data: &[u8]) -> Result<Vec<(String, PickledTensor)>, PickleError> {
    let machine =
        Machine { data, at: 0, opcodes: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    let top = machine.run()?;
    let Value::Dict(entries) = &top else {
        return Err(malformed(format!("the pickle holds {}, not a state dict", top.kind())));
    };
    let entries = entries.items();
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
    opcodes: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
}

impl Machine<'_> {
    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.at;
            let op = self.take(1)?[0];
            self.opcodes += 1;
            if self.opcodes > MAX_OPCODES {
                return Err(PickleError::OverLimit { limit: Limit::Opcodes, value: self.opcodes, at });
            }
            if op == b'.' {
                return self.pop();
            }
            self.step(op).map_err(|e| match e {
                PickleError::Malformed(m) => malformed(format!("{m} (opcode {:?} at byte {at})", op as char)),
                PickleError::OverLimit { limit, value, .. } => PickleError::OverLimit { limit, value, at },
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
            b'}' => self.push(Value::Dict(Node::empty())),
            b']' => self.push(Value::List(Node::empty())),
            b')' => self.push(Value::Tuple(Node::empty())),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::tuple(items)?);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let items = self.pop_n(n)?;
                self.push(Value::tuple(items)?);
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
                let depth = nest([&key, &value])?;
                self.dict()?.fill([(key, value)], depth)?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(malformed("SETITEMS with an odd number of items"));
                }
                let depth = nest(&items)?;
                let mut items = items.into_iter();
                let pairs = std::iter::from_fn(|| Some((items.next()?, items.next()?)));
                self.dict()?.fill(pairs, depth)?;
            }
            b'a' => {
                let value = self.pop()?;
                let depth = nest([&value])?;
                self.list()?.fill([value], depth)?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let depth = nest(&items)?;
                self.list()?.fill(items, depth)?;
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

    /// Memoizes the top of the stack at index `i`; a new index past [`MAX_MEMO_ENTRIES`] entries is
    /// refused (overwriting one is not).
    fn put(&mut self, i: usize) -> Result<(), PickleError> {
        let top = self.stack.last().cloned().ok_or_else(|| malformed("memoizing an empty stack"))?;
        if self.memo.len() >= MAX_MEMO_ENTRIES && !self.memo.contains_key(&i) {
            let value = self.memo.len() + 1;
            return Err(PickleError::OverLimit { limit: Limit::MemoEntries, value, at: 0 });
        }
        self.memo.insert(i, top);
        Ok(())
    }

    fn get(&mut self, i: usize) -> Result<(), PickleError> {
        let value = self.memo.get(&i).cloned().ok_or_else(|| malformed(format!("memo {i} unset")))?;
        self.push(value);
        Ok(())
    }

    fn dict(&self) -> Result<Rc<Node<(Value, Value)>>, PickleError> {
        match self.stack.last() {
            Some(Value::Dict(d)) => Ok(d.clone()),
            _ => Err(malformed("setting an item on something other than a dict")),
        }
    }

    fn list(&self) -> Result<Rc<Node<Value>>, PickleError> {
        match self.stack.last() {
            Some(Value::List(l)) => Ok(l.clone()),
            _ => Err(malformed("appending to something other than a list")),
        }
    }
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

#[cfg(test)]
#[path = "tests/pickle.rs"]
mod tests;
