//! The protobuf messages of an event file (TensorFlow's `Event`, `Summary`, `SummaryMetadata`, `TensorProto`),
//! encoded by hand: only the fields catdog writes.

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

/// `Event { wall_time = 1; step = 2; file_version = 3 }`: the first record of every event file.
pub fn file_version_event(wall_time: f64) -> Message {
    Message::new().double(1, wall_time).string(3, "brain.Event:2")
}

/// `Event { wall_time = 1; step = 2; summary = 5 }`.
pub fn summary_event(wall_time: f64, step: i64, summary: &Message) -> Message {
    Message::new()
        .double(1, wall_time)
        .uint(2, step as u64)
        .message(5, summary)
}

/// `Summary { value = 1: Value { tag = 1; simple_value = 2 } }`: one scalar.
pub fn scalar(tag: &str, value: f32) -> Message {
    let v = Message::new().string(1, tag).float(2, value);
    Message::new().message(1, &v)
}

/// `Summary { value = 1: Value { tag = 1; image = 4: Image { height = 1; width = 2; colorspace = 3;
/// encoded_image_string = 4 } } }`: one PNG (RGB).
pub fn image(tag: &str, height: u32, width: u32, png: &[u8]) -> Message {
    let img = Message::new()
        .uint(1, u64::from(height))
        .uint(2, u64::from(width))
        .uint(3, 3)
        .bytes_field(4, png);
    let v = Message::new().string(1, tag).message(4, &img);
    Message::new().message(1, &v)
}

/// `Summary { value = 1: Value { tag = 1; metadata = 9: { plugin_data = 1: { plugin_name = 1: "text" } };
/// tensor = 8: TensorProto { dtype = 1: DT_STRING (7); tensor_shape = 2: {}; string_val = 8 } } }`: markdown
/// for TensorBoard's text plugin.
pub fn text(tag: &str, markdown: &str) -> Message {
    let plugin = Message::new().string(1, "text");
    let metadata = Message::new().message(1, &plugin);
    let tensor = Message::new()
        .uint(1, 7)
        .message(2, &Message::new())
        .string(8, markdown);
    let v = Message::new().string(1, tag).message(9, &metadata).message(8, &tensor);
    Message::new().message(1, &v)
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
