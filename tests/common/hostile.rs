//! Hostile `torch.save` checkpoints, built byte by byte: pickles that nest deeper or memoize more
//! than the loader reads, inside the zip archive a `pytorch_model.bin` is. Shared by the checkpoint
//! unit tests and the server's integration test (included by path in both).
#![allow(dead_code)]

use std::io::{Cursor, Write};

/// A protocol-2 pickle of `n` empty lists, each then appended into the one below it: `n` deep, in 2
/// bytes a level (200 000 lists are 400 KB).
pub fn nested_lists(n: usize) -> Vec<u8> {
    let mut pickle = vec![0x80, 2];
    pickle.resize(2 + n, b']');
    pickle.resize(2 + 2 * n - 1, b'a');
    pickle.push(b'.');
    pickle
}

/// A protocol-4 pickle that memoizes `None` under `n` fresh indices, a byte each.
pub fn memo_entries(n: usize) -> Vec<u8> {
    let mut pickle = vec![0x80, 4, b'N'];
    pickle.resize(3 + n, 0x94);
    pickle.push(b'.');
    pickle
}

/// A `torch.save` archive holding `pickle` as `archive/data.pkl` and, for each `(key, bytes)`, a
/// stored record `archive/data/<key>` of that many zero bytes.
pub fn torch_archive(pickle: &[u8], storages: &[(&str, usize)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/byteorder", stored).unwrap();
    zip.write_all(b"little").unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), stored).unwrap();
        zip.write_all(&vec![0; *bytes]).unwrap();
    }
    zip.finish().unwrap().into_inner()
}
