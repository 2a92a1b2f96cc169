//! Images in: folders, decoding, preprocessing.

pub mod augment;
pub mod check;
pub mod decode;
pub mod fetch;
pub mod folder;
pub mod loader;
pub mod preprocess;
pub mod preview;
