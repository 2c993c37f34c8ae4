//! Hostile pickles against the reader's limits: deep nesting, a huge memo, endless opcodes and
//! sizes that overflow are each refused with the number reached; nothing panics, aborts or leaks,
//! whatever the bytes (the proptests feed arbitrary bytes and arbitrary opcode runs).

use proptest::prelude::*;

use super::super::value::{Node, Value};
use super::*;
use crate::checkpoint::tests::hostile::{memo_entries, nested_lists, torch_archive};
use crate::checkpoint::{Checkpoint, CheckpointError};

/// The limit a refusal names, what the pickle reached and where.
fn over(bytes: &[u8]) -> (Limit, usize, usize) {
    match read_state_dict(bytes) {
        Err(PickleError::OverLimit { limit, value, at }) => (limit, value, at),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_hundred_thousand_nested_lists_are_refused_at_the_depth_limit() {
    let pickle = nested_lists(200_000);
    assert_eq!(pickle.len(), 400_002);
    let (limit, value, at) = over(&pickle);
    assert_eq!((limit, value), (Limit::Depth, MAX_DEPTH + 1));
    // The 64th APPEND, after the 200 000 lists, is where the nesting reaches 65.
    assert_eq!(at, 2 + 200_000 + MAX_DEPTH - 1);
    let message = read_state_dict(&pickle).unwrap_err().to_string();
    assert!(
        message.contains("nesting depth") && message.contains("65") && message.contains("64"),
        "{message}"
    );
    // Right at the limit it is read (and refused only for not being a state dict).
    let reason = read_state_dict(&nested_lists(MAX_DEPTH)).unwrap_err().to_string();
    assert!(reason.contains("holds a list, not a state dict"), "{reason}");
}

#[test]
fn nested_tuples_and_dicts_are_refused_at_the_depth_limit_too() {
    // TUPLE1 over and over: one byte a level.
    let mut tuples = vec![0x80, 2, b')'];
    tuples.resize(3 + 100_000, 0x85);
    tuples.push(b'.');
    assert_eq!(over(&tuples).0, Limit::Depth);
    // MARK ... TUPLE, the protocol-0 way.
    let mut marks = vec![b'('; 100_000];
    marks.resize(200_000, b't');
    marks.push(b'.');
    assert_eq!(over(&marks).0, Limit::Depth);
    // Dicts set as values of the dict below them.
    let mut dicts = vec![0x80, 2, b'}'];
    for _ in 0..99 {
        dicts.extend([b'K', 1, b'}']);
    }
    dicts.resize(dicts.len() + 99, b's');
    assert_eq!(over(&dicts).0, Limit::Depth);
}

#[test]
fn a_value_nested_200_000_deep_drops_without_recursing() {
    // Built directly, past the limit the reader enforces: only the drop is under test. A recursive
    // drop of this overflows a test thread's stack.
    let mut value = Value::List(Node::empty());
    for _ in 0..200_000 {
        value = Value::List(Node::new(vec![value], 1));
    }
    let mut dict = Value::Dict(Node::empty());
    for _ in 0..200_000 {
        dict = Value::Dict(Node::new(vec![(Value::None, dict)], 1));
    }
    drop((value, dict));
}

#[test]
fn a_container_filled_after_it_was_placed_is_refused() {
    // A list appended to itself (a cycle that would leak) and a list filled once inside another.
    let reason = |bytes: &[u8]| read_state_dict(bytes).unwrap_err().to_string();
    assert!(reason(&[0x80, 2, b']', b'q', 0, b'h', 0, b'a', b'.']).contains("already sits inside another"));
    let filled_later = [0x80, 2, b']', b'q', 0, b']', b'h', 0, b'a', b'h', 0, b'N', b'a', b'.'];
    assert!(reason(&filled_later).contains("already sits inside another"));
}

#[test]
fn a_memo_past_its_entry_limit_is_refused() {
    let pickle = memo_entries(MAX_MEMO_ENTRIES + 1);
    let (limit, value, at) = over(&pickle);
    assert_eq!((limit, value, at), (Limit::MemoEntries, MAX_MEMO_ENTRIES + 1, 3 + MAX_MEMO_ENTRIES));
    // Overwriting an entry at the limit is not a new one; and a far index costs one entry, not a
    // table as long as the index.
    let mut overwrite = pickle[..3 + MAX_MEMO_ENTRIES].to_vec();
    overwrite.extend([b'q', 0]);
    overwrite.extend(&state_dict(&[])[2..]);
    assert_eq!(read_state_dict(&overwrite), Ok(vec![]));
    let far = [&[0x80, 2, b'N', b'r', 0xff, 0xff, 0xff, 0xff, b'0'][..], &state_dict(&[])[2..]].concat();
    assert_eq!(read_state_dict(&far), Ok(vec![]));
}

#[test]
fn a_pickle_past_its_opcode_limit_is_refused() {
    let mut pickle = vec![0x80, 2];
    for _ in 0..MAX_OPCODES / 2 {
        pickle.extend([b'N', b'0']);
    }
    pickle.push(b'.');
    // PROTO is opcode 1 (two bytes); from byte 2 on, byte b is opcode b.
    assert_eq!(over(&pickle), (Limit::Opcodes, MAX_OPCODES + 1, MAX_OPCODES + 1));
}

/// `LONG1` of `v`, which `K` cannot hold.
fn long1(v: i64) -> Vec<u8> {
    [&[0x8a, 8][..], &v.to_le_bytes()].concat()
}

/// A state dict of one float tensor `w` over a storage of `numel` elements.
fn one_tensor(numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let ints = |v: &[i64]| [vec![b'('], v.iter().flat_map(|&i| long1(i)).collect(), vec![b't']].concat();
    let storage = [
        vec![b'(', b'('],
        text("storage"),
        global("torch", "FloatStorage"),
        text("0"),
        text("cpu"),
        long1(numel),
        vec![b't', b'Q'],
    ]
    .concat();
    let args = [storage, long1(offset), ints(size), ints(stride), vec![0x89, b')', b't']].concat();
    let tensor = [global("torch._utils", "_rebuild_tensor_v2"), args, vec![b'R']].concat();
    state_dict(&[("w", tensor)])
}

#[test]
fn sizes_strides_and_offsets_that_overflow_are_refused() {
    let reason = |bytes: Vec<u8>| match read_state_dict(&bytes) {
        Err(PickleError::Malformed(m)) => m,
        other => panic!("{other:?}"),
    };
    let big = 1i64 << 32;
    assert!(reason(one_tensor(i64::MAX, 0, &[big, big, big], &[1, 1, 1])).contains("element count overflows"));
    assert!(reason(one_tensor(i64::MAX, 0, &[4], &[i64::MAX])).contains("which overflow"));
    assert!(reason(one_tensor(i64::MAX, i64::MAX, &[3], &[1 << 62])).contains("which overflow"));
    assert!(reason(one_tensor(8, -1, &[2], &[1])).contains("offset -1"));
    // The largest view that fits its storage is read.
    let tensors = read_state_dict(&one_tensor(i64::MAX, 0, &[i64::MAX], &[1])).unwrap();
    assert_eq!(tensors[0].1.shape, [i64::MAX as usize]);
    assert!(tensors[0].1.is_contiguous());
    // In an archive, that view's bytes overflow: refused, naming the storage.
    let dir = tempfile::tempdir().unwrap();
    let archive = torch_archive(&one_tensor(i64::MAX, 0, &[i64::MAX], &[1]), &[("0", 4)]);
    std::fs::write(dir.path().join("pytorch_model.bin"), archive).unwrap();
    match Checkpoint::open_dir(dir.path()) {
        Err(CheckpointError::Corrupt { reason, .. }) => {
            assert!(reason.contains(&format!("declares {} elements of 4 bytes in a 4-byte record", i64::MAX)))
        }
        other => panic!("{other:?}"),
    }
}

/// Opcodes the reader knows, weighted towards those that build and nest containers.
fn opcode() -> impl Strategy<Value = u8> {
    const KNOWN: [u8; 33] = [
        b'(', b'}', b']', b')', b't', 0x85, 0x86, 0x87, b'X', 0x8c, b'B', b'C', b'q', b'r', 0x94, b'h', b'j',
        b'K', b'M', b'J', 0x8a, b'G', b'N', 0x88, b'0', b'Q', b'R', b'b', b's', b'u', b'a', b'e', b'.',
    ];
    prop_oneof![
        8 => proptest::sample::select(&KNOWN[..]),
        4 => proptest::sample::select(&[b']', b'a', b'(', b'e', b'}', b's', 0x85][..]),
        1 => any::<u8>(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read_state_dict(&bytes);
    }

    #[test]
    fn arbitrary_opcode_runs_are_read_or_refused(ops in proptest::collection::vec(opcode(), 0..4096)) {
        let mut pickle = vec![0x80, 2];
        pickle.extend(ops);
        let _ = read_state_dict(&pickle);
    }

    #[test]
    fn a_state_dict_with_bytes_changed_is_read_or_refused(
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut pickle = state_dict(&[("w", tensor("0", 6, 0, &[2, 3], &[3, 1])), ("t", tensor("0", 6, 0, &[3, 2], &[1, 3]))]);
        let i = at.index(pickle.len());
        pickle[i] = byte;
        let _ = read_state_dict(&pickle);
    }
}
