//! A protobuf decoder for the tests that read back what catdog encodes (event files, ONNX models): every field of
//! a message as a number or bytes, without a schema.
#![allow(dead_code)]

/// A decoded protobuf field: a varint, a fixed 32/64-bit value, or bytes (a string or a nested message).
#[derive(Debug, Clone)]
pub enum Field {
    Varint(u64),
    Fixed64,
    Fixed32([u8; 4]),
    Bytes(Vec<u8>),
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

pub fn fields(b: &[u8]) -> Vec<(u64, Field)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = varint(b, &mut at);
        let f = match key & 7 {
            0 => Field::Varint(varint(b, &mut at)),
            1 => {
                at += 8;
                Field::Fixed64
            }
            2 => {
                let n = varint(b, &mut at) as usize;
                at += n;
                Field::Bytes(b[at - n..at].to_vec())
            }
            5 => {
                at += 4;
                Field::Fixed32(b[at - 4..at].try_into().unwrap())
            }
            w => panic!("wire type {w}"),
        };
        out.push((key >> 3, f));
    }
    out
}

pub fn get(fs: &[(u64, Field)], n: u64) -> Option<&Field> {
    fs.iter().find(|(k, _)| *k == n).map(|(_, f)| f)
}

pub fn bytes(f: Option<&Field>) -> &[u8] {
    match f {
        Some(Field::Bytes(b)) => b,
        other => panic!("expected bytes, got {other:?}"),
    }
}

/// Every value of repeated field `n`.
pub fn all(fs: &[(u64, Field)], n: u64) -> Vec<&Field> {
    fs.iter().filter(|(k, _)| *k == n).map(|(_, f)| f).collect()
}

/// A string field.
pub fn string(fs: &[(u64, Field)], n: u64) -> String {
    String::from_utf8(bytes(get(fs, n)).to_vec()).expect("UTF-8")
}

/// A varint field (0 when absent, as protobuf's default).
pub fn int(fs: &[(u64, Field)], n: u64) -> u64 {
    match get(fs, n) {
        Some(Field::Varint(v)) => *v,
        None => 0,
        other => panic!("expected a varint, got {other:?}"),
    }
}
