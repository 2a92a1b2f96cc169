//! A protobuf encoder of the little that catdog writes (TensorBoard's event files, ONNX models): varints, fixed
//! 32/64-bit values, and length-delimited strings, bytes and nested messages, appended field by field. Repeated
//! fields are written one field per value (unpacked), which every protobuf reader accepts.

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// A message being encoded.
#[derive(Debug, Default, Clone)]
pub struct Message(Vec<u8>);

impl Message {
    pub fn new() -> Self {
        Message(Vec::new())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn key(&mut self, field: u32, wire: u32) {
        varint(&mut self.0, u64::from(field << 3 | wire));
    }

    /// An `int32`/`int64` field: negative values as ten-byte two's complement, as protobuf writes them.
    pub fn int(self, field: u32, v: i64) -> Self {
        self.uint(field, v as u64)
    }

    pub fn uint(mut self, field: u32, v: u64) -> Self {
        self.key(field, VARINT);
        varint(&mut self.0, v);
        self
    }

    pub fn double(mut self, field: u32, v: f64) -> Self {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes_field(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, LEN);
        varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    pub fn string(self, field: u32, v: &str) -> Self {
        self.bytes_field(field, v.as_bytes())
    }

    pub fn message(self, field: u32, m: &Message) -> Self {
        self.bytes_field(field, &m.0)
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_encoded_as_protobuf_does() {
        // Reference bytes from protobuf's encoding rules: 150 as field 1 varint is 08 96 01.
        assert_eq!(Message::new().uint(1, 150).bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(Message::new().string(2, "testing").bytes()[..2], [0x12, 0x07]);
        assert_eq!(Message::new().float(2, 1.0).bytes(), [0x15, 0, 0, 0x80, 0x3f]);
        assert_eq!(Message::new().double(1, 0.0).bytes(), [0x09, 0, 0, 0, 0, 0, 0, 0, 0]);
        // A negative step (never written) would still be a 10-byte varint, as int64 is.
        assert_eq!(Message::new().uint(2, -1i64 as u64).bytes().len(), 11);
    }
}
