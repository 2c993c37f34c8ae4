//! The service-level error: every layer's error wrapped (not copied) by kind, plus the few
//! conditions of the service shell itself. Nothing here chooses a status code: the transports map
//! these kinds once each (`grpc::status` for gRPC). Field errors keep their field, messages their
//! limit and value.

use std::sync::Arc;

use crate::{
    engine::EngineError,
    generation::{GenerationError, ValidationError},
    resources::{
        cache::CacheError,
        ledger::LedgerError,
        model_id::ModelIdError,
        requirements::{RequirementsError, UnknownDType},
    },
};

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A request field is invalid; the message names the field, the limit and the value given.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field, as the proto spells it.
        field: &'static str,
        /// The limit and the value given.
        message: String,
    },
    /// A generation, a load or an unload was refused or failed.
    #[error(transparent)]
    Generation(#[from] GenerationError),
    /// The model cache refused (a model not loaded, in use, being unloaded).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The lease ledger refused (not enough memory, an unknown lease, an unknown GPU).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A model id that is malformed, unknown or incomplete.
    #[error(transparent)]
    ModelId(#[from] ModelIdError),
    /// A model whose requirements cannot be worked out (the `model` asked about is unusable), or
    /// whose config describes a model that is not served.
    #[error("{}", requirements_message(.0))]
    Requirements(Arc<RequirementsError>),
    /// A dtype that is not one of f32, f16, bf16.
    #[error("dtype: {0}")]
    DType(#[from] UnknownDType),
    /// Too many open streams: the limit and the flag that sets it.
    #[error("{0}")]
    TooManyStreams(String),
    /// Not found: a named thing outside the layers above (an unknown alert rule, say).
    #[error("{0}")]
    NotFound(String),
    /// A part of the server stopped, or it is shutting down.
    #[error("{0}")]
    Stopped(String),
    /// A bug or an unexpected failure; logged with details.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Service result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid field, with the limit and the value in the message.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument { field, message: message.into() }
    }
}

/// A checkpoint that cannot be sized makes the `model` asked about unusable: the field is named; a
/// model that is not served is a state of the folder, said as it is.
fn requirements_message(e: &RequirementsError) -> String {
    match e {
        e if e.unsupported() => e.to_string(),
        other => format!("model: {other}"),
    }
}

impl From<RequirementsError> for Error {
    fn from(e: RequirementsError) -> Self {
        Error::Requirements(Arc::new(e))
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        Error::Generation(e.into())
    }
}

impl From<ValidationError> for Error {
    fn from(e: ValidationError) -> Self {
        Error::Generation(e.into())
    }
}
