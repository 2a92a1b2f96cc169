//! Images in: folders, decoding, preprocessing.

pub mod decode;
pub mod folder;
pub mod preprocess;
