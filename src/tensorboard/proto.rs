//! The protobuf messages of an event file (TensorFlow's `Event`, `Summary`, `SummaryMetadata`, `TensorProto`),
//! encoded with [`crate::protobuf::Message`]: only the fields catdog writes.

use crate::protobuf::Message;

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
