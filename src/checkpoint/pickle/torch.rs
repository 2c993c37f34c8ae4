//! What the few accepted globals build: the allowlist itself ([`resolve`]), storages from persistent
//! ids, `OrderedDict`s and tensor views, whose sizes, strides and offsets are checked with checked
//! arithmetic against their storage before a view is accepted.

use std::rc::Rc;

use super::value::{nest, Node, Value};
use super::{malformed, Dtype, PickleError};

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
    /// aside), so its bytes can be read in one piece. A shape whose element count overflows is not.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = Some(1u64);
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            let Some(e) = expected else { return false };
            if d != 1 && s != e {
                return false;
            }
            expected = e.checked_mul(d as u64);
        }
        true
    }
}

/// Elements a strided view spans in its storage, from its first element (0 for an empty view);
/// `None` when that overflows.
pub fn span(shape: &[usize], strides: &[u64]) -> Option<u64> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().zip(strides).try_fold(1u64, |n, (&d, &s)| n.checked_add((d as u64 - 1).checked_mul(s)?))
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
pub(super) enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

/// The accepted global `module.name`, or a refusal naming it.
pub(super) fn resolve(module: &str, name: &str) -> Result<Global, PickleError> {
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

/// A persistent id `('storage', type, key, location, numel)`.
pub(super) fn storage(pid: &Value) -> Result<StorageRef, PickleError> {
    let bad = || malformed("a persistent id that is not ('storage', type, key, location, numel)");
    let Value::Tuple(items) = pid else { return Err(bad()) };
    match &items.items()[..] {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_), Value::Int(n)]
            if &**tag == "storage" && *n >= 0 =>
        {
            Ok(StorageRef { key: key.to_string(), dtype: *dtype, numel: *n as u64 })
        }
        _ => Err(bad()),
    }
}

/// What calling an accepted global with `args` builds.
pub(super) fn call(callable: &Value, args: &Value) -> Result<Value, PickleError> {
    let Value::Tuple(args) = args else { return Err(malformed("call arguments that are not a tuple")) };
    let args = args.items();
    match callable {
        Value::Global(Global::OrderedDict) => ordered_dict(&args),
        Value::Global(Global::RebuildTensor) => rebuild_tensor(&args),
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
            for item in items.items().iter() {
                let Value::Tuple(pair) = item else { return Err(malformed("OrderedDict item not a pair")) };
                let [k, v] = &pair.items()[..] else { return Err(malformed("OrderedDict item not a pair")) };
                entries.push((k.clone(), v.clone()));
            }
        }
        _ => return Err(malformed("OrderedDict called with unexpected arguments")),
    }
    let depth = nest(entries.iter().flat_map(|(k, v)| [k, v]))?;
    Ok(Value::Dict(Node::new(entries, depth)))
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
    let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let (Some(_), Ok(shape)) =
        (numel, shape.iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<_>, _>>())
    else {
        return Err(bad(&format!("size {shape:?}, whose element count overflows")));
    };
    let span = span(&shape, &strides);
    let Some((span, end)) = span.and_then(|s| Some((s, (*offset as u64).checked_add(s)?))) else {
        return Err(bad(&format!("offset {offset}, size {shape:?} and stride {strides:?}, which overflow")));
    };
    // An empty view reads nothing, wherever it starts.
    if span > 0 && end > storage.numel {
        return Err(bad(&format!(
            "a view (offset {offset}, size {shape:?}, stride {strides:?}) past its {}-element storage",
            storage.numel
        )));
    }
    let tensor = PickledTensor { storage: (**storage).clone(), offset: *offset as u64, shape, strides };
    Ok(Value::Tensor(Rc::new(tensor)))
}

/// A tuple of non-negative ints.
fn ints(value: &Value) -> Option<Vec<u64>> {
    let Value::Tuple(items) = value else { return None };
    let items = items.items();
    items.iter().map(|v| if let Value::Int(i) = v { u64::try_from(*i).ok() } else { None }).collect()
}
