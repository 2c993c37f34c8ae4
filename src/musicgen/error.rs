//! The one error type of the `musicgen` module: loading, validation and compute failures.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a MusicGen model.
#[derive(Debug, thiserror::Error)]
pub enum MusicgenError {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` or `generation_config.json` is not valid for MusicGen.
    #[error("invalid config {path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The checkpoint lacks a tensor the config requires.
    #[error("missing tensor `{key}` in the checkpoint")]
    MissingTensor {
        /// The safetensors key that was looked up.
        key: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error("tensor `{key}` has shape {found:?}, the config requires {expected:?}")]
    ShapeMismatch {
        /// The safetensors key.
        key: String,
        /// The shape derived from the config.
        expected: Vec<i64>,
        /// The shape stored in the file.
        found: Vec<i64>,
    },
    /// The safetensors file is truncated, malformed or uses an unsupported element type.
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptWeights {
        /// The checkpoint file.
        path: PathBuf,
        /// What was found wrong.
        reason: String,
    },
    /// A configuration this implementation does not handle (for example GroupNorm EnCodec).
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// `tokenizer.json` could not be loaded or a prompt could not be encoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A generation request field is out of range.
    #[error("invalid `{field}`: {message}")]
    InvalidRequest {
        /// The offending request field.
        field: &'static str,
        /// The limit and the value received.
        message: String,
    },
    /// The checkpoint's files could not be read, are refused, or describe a model that is not
    /// served: the checkpoint reader's own error.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// `config.json` or `generation_config.json` could not be read or is not valid for MusicGen.
    #[error(transparent)]
    ConfigFile(#[from] crate::checkpoint::config::ConfigError),
    /// What the checkpoint would need could not be worked out.
    #[error(transparent)]
    Requirements(#[from] crate::resources::requirements::RequirementsError),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Result alias of the module.
pub type Result<T, E = MusicgenError> = std::result::Result<T, E>;
