//! The restricted reader on pickles written by hand, opcode by opcode: what `torch.save` writes is
//! read, and every global outside the allowlist is refused by name before anything else happens.

use super::*;

/// `GLOBAL module name`.
fn global(module: &str, name: &str) -> Vec<u8> {
    [b"c", module.as_bytes(), b"\n", name.as_bytes(), b"\n"].concat()
}

/// `BINUNICODE text`.
fn text(s: &str) -> Vec<u8> {
    [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat()
}

/// `_rebuild_tensor_v2(storage(key, FloatStorage, numel), offset, size, stride, False, OrderedDict())`.
fn tensor(key: &str, numel: u8, offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
    let ints = |v: &[u8]| -> Vec<u8> {
        let mut out = vec![b'('];
        for &i in v {
            out.extend([b'K', i]);
        }
        out.push(b't');
        out
    };
    [
        global("torch._utils", "_rebuild_tensor_v2"),
        vec![b'(', b'('],
        text("storage"),
        global("torch", "FloatStorage"),
        text(key),
        text("cpu"),
        vec![b'K', numel, b't', b'Q', b'K', offset],
        ints(size),
        ints(stride),
        vec![0x89],
        global("collections", "OrderedDict"),
        vec![b')', b'R', b't', b'R'],
    ]
    .concat()
}

/// A protocol-2 pickle of `OrderedDict(entries)` with `_metadata` state, as `torch.save` writes it.
fn state_dict(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0x80, 2];
    out.extend(global("collections", "OrderedDict"));
    out.extend([b')', b'R', b'q', 0, b'(']);
    for (name, value) in entries {
        out.extend(text(name));
        out.extend(value);
    }
    out.push(b'u');
    out.extend([b'}', b'b', b'.']);
    out
}

#[test]
fn a_state_dict_as_torch_writes_it_is_read() {
    let pickle = state_dict(&[
        ("w", tensor("0", 6, 0, &[2, 3], &[3, 1])),
        ("t", tensor("0", 6, 0, &[3, 2], &[1, 3])),
        ("s", tensor("1", 1, 0, &[], &[])),
    ]);
    let tensors = read_state_dict(&pickle).unwrap();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w", "t", "s"]);
    let (w, t, s) = (&tensors[0].1, &tensors[1].1, &tensors[2].1);
    assert_eq!((w.shape.as_slice(), w.strides.as_slice(), w.offset), (&[2, 3][..], &[3, 1][..], 0));
    assert_eq!(w.storage, StorageRef { key: "0".into(), dtype: Dtype::F32, numel: 6 });
    assert!(w.is_contiguous() && !t.is_contiguous() && s.is_contiguous());
    let spans = (span(&t.shape, &t.strides), span(&s.shape, &s.strides), span(&[0, 4], &[4, 1]));
    assert_eq!(spans, (Some(6), Some(1), Some(0)));
    assert_eq!(span(&[3, 2], &[u64::MAX, 1]), None);
}

#[test]
fn globals_outside_the_allowlist_are_refused_by_name() {
    let call =
        |callable: Vec<u8>| [vec![0x80, 2], callable, text("echo pwned"), vec![0x85, b'R', b'.']].concat();
    assert_eq!(read_state_dict(&call(global("os", "system"))), Err(PickleError::Refused("os.system".into())));
    assert_eq!(
        read_state_dict(&call(global("posix", "system"))),
        Err(PickleError::Refused("posix.system".into()))
    );
    let stack_global = [vec![0x80, 4], text("builtins"), text("eval"), vec![0x93]].concat();
    assert_eq!(read_state_dict(&call(stack_global)), Err(PickleError::Refused("builtins.eval".into())));
    let torch_other = call(global("torch", "load"));
    assert_eq!(read_state_dict(&torch_other), Err(PickleError::Refused("torch.load".into())));
    // Refused even inside an otherwise valid state dict, before the rest is read.
    let hidden = state_dict(&[("w", tensor("0", 6, 0, &[6], &[1])), ("x", call(global("builtins", "exec")))]);
    assert_eq!(read_state_dict(&hidden), Err(PickleError::Refused("builtins.exec".into())));
}

#[test]
fn malformed_pickles_are_errors_naming_the_problem() {
    let reason = |bytes: &[u8]| match read_state_dict(bytes) {
        Err(PickleError::Malformed(m)) => m,
        other => panic!("{other:?}"),
    };
    let valid = state_dict(&[("w", tensor("0", 6, 0, &[2, 3], &[3, 1]))]);
    for cut in [0, 1, 10, valid.len() - 1] {
        let _ = reason(&valid[..cut]);
    }
    assert!(reason(&state_dict(&[("w", tensor("0", 5, 0, &[2, 3], &[3, 1]))]))
        .contains("past its 5-element storage"));
    assert!(
        reason(&state_dict(&[("w", tensor("0", 6, 0, &[2, 3], &[1]))])).contains("size [2, 3], stride [1]")
    );
    assert!(reason(&[0x80, 2, b'K', 1, b'.']).contains("holds an int, not a state dict"));
    assert!(reason(&state_dict(&[("w", vec![b'K', 1])])).contains("maps a str to an int"));
    assert!(reason(&[0x80, 2, b'p', b'0', b'\n', b'.']).contains("unsupported opcode 0x70"));
    assert!(reason(&[0x80, 2, b'h', 3, b'.']).contains("memo 3 unset"));
    assert!(reason(&[0x80, 2, b'.']).contains("stack is empty"));
    assert!(reason(&[0x80, 9, b'.']).contains("protocol 9"));
    assert!(reason(b"(Q.").contains("stack is empty"));
}

#[test]
fn memo_lookups_share_rather_than_copy() {
    // Each list holds the one before it twice, through the memo: 60 levels are 60 small lists, not
    // 2^60 copies.
    let mut pickle = vec![0x80, 2, b']', b'q', 0];
    for level in 1..60u8 {
        pickle.extend([b']', b'q', level, b'(', b'h', level - 1, b'h', level - 1, b'e', b'0']);
    }
    pickle.extend(state_dict(&[])[2..].iter());
    assert_eq!(read_state_dict(&pickle).unwrap(), vec![]);
    assert_eq!(long(&[0xff]).unwrap(), -1);
    assert_eq!(long(&[0x00, 0x01]).unwrap(), 256);
}

#[path = "pickle_limits.rs"]
mod limits;
