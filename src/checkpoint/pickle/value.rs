//! The values the pickle reader builds, and what keeps a hostile pickle's values harmless to hold
//! and to drop. Each container records how deep it nests, so nesting past [`MAX_DEPTH`] is refused
//! the moment it is built, and whether it already sits inside another container: then it is sealed,
//! and filling it is refused. The pickler always fills a container before placing it, so a state
//! dict never meets that refusal, and sealed containers mean the values can form no cycle (a cycle
//! would need a container filled after being placed; one placed in itself is sealed first), so no
//! `Rc` is leaked. Dropping a value takes its children apart one at a time on a heap stack instead
//! of recursing, so no nesting, however it came about, can overflow the thread's stack.

use std::cell::{Cell, Ref, RefCell};
use std::rc::Rc;

use super::torch::Global;
use super::{malformed, Limit, PickleError, PickledTensor, StorageRef, MAX_DEPTH};

/// A tuple's, list's or dict's items, shared between the stack and the memo.
pub(super) struct Node<T> {
    /// 1 for a container of scalars, one more than its deepest item otherwise.
    depth: Cell<usize>,
    /// Whether it sits inside another container (and so can no longer be filled).
    sealed: Cell<bool>,
    items: RefCell<Vec<T>>,
}

impl<T> Node<T> {
    /// A container of `items`, whose depth [`nest`] worked out.
    pub(super) fn new(items: Vec<T>, depth: usize) -> Rc<Self> {
        Rc::new(Self { depth: Cell::new(depth), sealed: Cell::new(false), items: RefCell::new(items) })
    }

    /// An empty container.
    pub(super) fn empty() -> Rc<Self> {
        Self::new(Vec::new(), 1)
    }

    /// Its items.
    pub(super) fn items(&self) -> Ref<'_, Vec<T>> {
        self.items.borrow()
    }

    /// Adds `more`, whose containing depth [`nest`] worked out; refused once the container is sealed.
    pub(super) fn fill(&self, more: impl IntoIterator<Item = T>, depth: usize) -> Result<(), PickleError> {
        if self.sealed.get() {
            return Err(malformed(
                "filling a container that already sits inside another (a recursive structure; a state \
                 dict is a tree)",
            ));
        }
        self.depth.set(self.depth.get().max(depth));
        self.items.borrow_mut().extend(more);
        Ok(())
    }
}

/// A value on the reader's stack or in its memo.
#[derive(Clone)]
pub(super) enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(Rc<Node<Value>>),
    List(Rc<Node<Value>>),
    Dict(Rc<Node<(Value, Value)>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<PickledTensor>),
}

impl Value {
    /// What it is, for messages.
    pub(super) fn kind(&self) -> &'static str {
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

    /// A tuple of `items`.
    pub(super) fn tuple(items: Vec<Value>) -> Result<Value, PickleError> {
        let depth = nest(&items)?;
        Ok(Value::Tuple(Node::new(items, depth)))
    }

    fn depth(&self) -> usize {
        match self {
            Value::Tuple(n) | Value::List(n) => n.depth.get(),
            Value::Dict(n) => n.depth.get(),
            _ => 0,
        }
    }

    fn seal(&self) {
        match self {
            Value::Tuple(n) | Value::List(n) => n.sealed.set(true),
            Value::Dict(n) => n.sealed.set(true),
            _ => {}
        }
    }

    /// Moves the items of a container this is the last holder of into `out`, so that dropping it
    /// recurses no further.
    fn release(&mut self, out: &mut Vec<Value>) {
        match self {
            Value::Tuple(n) | Value::List(n) => {
                if let Some(n) = Rc::get_mut(n) {
                    out.append(n.items.get_mut());
                }
            }
            Value::Dict(n) => {
                if let Some(n) = Rc::get_mut(n) {
                    for (key, value) in n.items.get_mut().drain(..) {
                        out.push(key);
                        out.push(value);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The depth of a container holding `items`, which are sealed since they now sit inside it; a
/// depth past [`MAX_DEPTH`] is an error (the machine adds where it happened).
pub(super) fn nest<'a>(items: impl IntoIterator<Item = &'a Value>) -> Result<usize, PickleError> {
    let mut depth = 1;
    for item in items {
        item.seal();
        depth = depth.max(item.depth() + 1);
    }
    if depth > MAX_DEPTH {
        return Err(PickleError::OverLimit { limit: Limit::Depth, value: depth, at: 0 });
    }
    Ok(depth)
}

/// Iterative, so a value nested any depth is freed in constant stack: each container this value
/// was the last holder of hands its items to a heap stack before it is freed.
impl Drop for Value {
    fn drop(&mut self) {
        let mut orphans = Vec::new();
        self.release(&mut orphans);
        while let Some(mut orphan) = orphans.pop() {
            orphan.release(&mut orphans);
        }
    }
}

/// Only the kind: a derived `Debug` would recurse through the nesting.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}
