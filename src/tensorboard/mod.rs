//! TensorBoard event files, written as Keras' `TensorBoard` callback lays them out, so that `tensorboard --logdir`
//! overlays catdog's training and validation curves as it does a Keras run's (and `wandb.init(sync_tensorboard=
//! True)` picks them up): `DIR/train/` and `DIR/validation/`, scalars `epoch_<name>` at step = epoch.
//!
//! The format is TensorFlow's: TFRecord framing (length, masked CRC-32C, data, masked CRC-32C) around `Event`
//! protobufs holding `Summary` values. [`crc32c`] and [`proto`] (over [`crate::protobuf`]) write those two encodings, so no
//! TensorFlow or protobuf library is needed.

pub mod crc32c;
pub mod proto;
mod run_board;
mod writer;

pub use run_board::RunBoard;
pub use writer::EventWriter;
