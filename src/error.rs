//! The service-level error and its one mapping to gRPC status codes.
//!
//! Every layer's error converts into [`Error`]; [`Error::to_status`] is the only place that picks a
//! `tonic::Code`, so the table in DESIGN.md lives here and nowhere else.

use tonic::{Code, Status};

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
    /// An unknown model, lease or other named thing.
    #[error("{0}")]
    NotFound(String),
    /// Not enough memory, a full queue or too many streams; says required vs available.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The thing is in a state that forbids the operation (a model in use).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server is shutting down or a background part stopped.
    #[error("{0}")]
    Unavailable(String),
    /// The capability belongs to a later part of the service.
    #[error("{0} is not available in this build yet")]
    Unimplemented(&'static str),
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

    /// The gRPC status for this error.
    pub fn to_status(&self) -> Status {
        let code = match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Internal(_) => Code::Internal,
        };
        Status::new(code, self.to_string())
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}
