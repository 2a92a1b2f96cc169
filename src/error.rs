//! The library's error type. Every variant says what was wrong and, where there is one, what to do.

use std::path::PathBuf;

/// The error of an fp16 product whose output overflowed f16 (`kernels::precision`; it reaches callers inside
/// candle's error, recognised by [`Error::is_f16_overflow`]).
pub const F16_OVERFLOW: &str =
    "an activation overflowed f16's ±65504 under --precision fp16 (the weights or inputs are \
                                too large for f16): use --precision bf16 or fp32";

/// Result alias used across the library.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// The cause is part of the message and deliberately not the error's `source()`: anyhow's `{:#}` prints the
    /// chain, which would say it twice ("File exists (os error 17): File exists (os error 17)").
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },

    /// The hub could not be reached and the file is not in the local cache.
    #[error("{0}")]
    HubUnavailable(Box<HubUnavailable>),

    /// A hub repository or file that does not exist, or another hub failure that is not about the network.
    #[error("hub error for '{model_id}': {message}")]
    Hub { model_id: String, message: String },

    /// A safetensors file that cannot be parsed (truncated, not safetensors, bad header).
    #[error(
        "{path}: not a readable safetensors file ({message}); \
         if it was downloaded, it may be truncated: delete it and download again"
    )]
    BadSafetensors { path: PathBuf, message: String },

    #[error(
        "{source_name}: tensor '{tensor}' ({layer}) is missing; a VGG16 conv base needs \
         features.{{0,2,5,7,10,12,14,17,19,21,24,26,28}}.{{weight,bias}} (torchvision/timm names)"
    )]
    MissingTensor {
        source_name: String,
        tensor: String,
        layer: String,
    },

    #[error("{source_name}: tensor '{tensor}' has shape {found:?}, expected {expected}")]
    ShapeMismatch {
        source_name: String,
        tensor: String,
        expected: String,
        found: Vec<usize>,
    },

    #[error("{source_name}: tensor '{tensor}' has dtype {found}, expected a float type (f32, f16, bf16, f64)")]
    BadDtype {
        source_name: String,
        tensor: String,
        found: String,
    },

    /// An ONNX file that is not a readable VGG16 (truncated, not ONNX, not 13 convolutions, unsupported storage).
    #[error("{path}: cannot read a VGG16 conv base from this ONNX file: {message}")]
    BadOnnx { path: PathBuf, message: String },

    #[error("unknown layer '{name}'; known layers: {known}")]
    UnknownLayer { name: String, known: String },

    /// An image that could not be read or decoded.
    #[error("{path}: {reason}")]
    BadImage { path: PathBuf, reason: String },

    /// A data folder that cannot be used as it is (empty, one class, no images).
    #[error("{0}")]
    Data(String),

    /// A checkpoint that does not fit what is asked of it.
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    /// A user argument that is out of range or inconsistent; the message names the flag.
    #[error("{0}")]
    InvalidArgument(String),

    #[error("interrupted")]
    Interrupted,

    /// `--precision fp16` met a value past f16's range that loss scaling cannot avoid (see
    /// [`Error::is_f16_overflow`] for the forward's, which comes through candle).
    #[error("{0}")]
    F16Overflow(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// An fp16 overflow: the loss scaler's floor, or an activation past ±65504 (candle's error carrying
    /// [`F16_OVERFLOW`]).
    pub fn is_f16_overflow(&self) -> bool {
        match self {
            Error::F16Overflow(_) => true,
            Error::Candle(e) => e.to_string().contains(F16_OVERFLOW),
            _ => false,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Other(format!("JSON: {e}"))
    }
}

/// Why a hub file could not be had, and what to do.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot get {what} '{id}' ({file}): {reason}\n  \
     looked in the Hugging Face cache at {cache_dir} and found no copy.\n  \
     {ways_out}\n  \
     (HF_HOME moves the cache, HF_HUB_OFFLINE=1 forbids network use.)",
    cache_dir = cache_dir.display()
)]
pub struct HubUnavailable {
    /// "weights" or "data set".
    pub what: String,
    pub id: String,
    pub file: String,
    pub cache_dir: PathBuf,
    pub reason: String,
    pub ways_out: String,
}
