//! Test inputs written byte by byte: PyTorch zip checkpoints with hand-made pickles (for
//! crafted tensor views) and npz archives of f32 arrays (loss probe inputs).

use npyz::WriterBuilder;
use std::io::Write;
use std::path::Path;

/// A protocol-2 pickle of the state dict `{"t": tensor}` whose tensor view is `shape` / `stride`
/// at `offset` into a FloatStorage of `numel` elements (key `0`), as torch.save writes one.
pub fn tensor_pickle(shape: &[u64], stride: &[u64], offset: u64, numel: u64) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    let text = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    };
    // LONG1 with 8 little-endian bytes (every value here is below 2^63).
    let int = |p: &mut Vec<u8>, v: u64| {
        p.extend([0x8a, 8]);
        p.extend(v.to_le_bytes());
    };
    text(&mut p, "t");
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    text(&mut p, "storage");
    p.extend(b"ctorch\nFloatStorage\n");
    text(&mut p, "0");
    text(&mut p, "cpu");
    int(&mut p, numel);
    p.extend(b"tQ");
    int(&mut p, offset);
    for values in [shape, stride] {
        p.push(b'(');
        for &v in values {
            int(&mut p, v);
        }
        p.push(b't');
    }
    p.push(0x89);
    p.extend(b"ccollections\nOrderedDict\n)RtRs.");
    p
}

/// A PyTorch zip checkpoint (`archive/`) holding `pickle` and the storage `0`.
pub fn pth_bytes(pickle: &[u8], storage: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (entry, bytes) in [
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", storage),
    ] {
        zip.start_file(entry, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Writes `arrays` (name, shape, f32 values) as an npz archive at `path`.
pub fn write_npz(path: &Path, arrays: &[(&str, Vec<u64>, Vec<f32>)]) {
    let mut npz = npyz::npz::NpzWriter::create(path).expect("create");
    for (name, shape, data) in arrays {
        let mut w = npz
            .array::<f32>(name, Default::default())
            .unwrap()
            .default_dtype()
            .shape(shape)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
    }
    npz.zip_writer().finish().unwrap();
}
