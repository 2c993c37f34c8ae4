//! The service-level error and its one mapping to gRPC status codes.
//!
//! Every layer's error converts into [`Error`] here, from its type rather than its text (a field
//! error keeps its field, the message its limit and value); [`Error::to_status`] is the only place
//! that picks a `tonic::Code`, so the table in DESIGN.md lives here and nowhere else.

use tonic::{Code, Status};

use crate::resources::{
    cache::CacheError,
    ledger::LedgerError,
    model_id::ModelIdError,
    requirements::{RequirementsError, UnknownDType},
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
    /// An unknown model, lease or other named thing.
    #[error("{0}")]
    NotFound(String),
    /// Not enough memory, a full queue or too many streams; says required vs available.
    #[error("{0}")]
    ResourceExhausted(String),
    /// libtorch could not allocate: the device, the bytes asked for and the bytes free.
    #[error("{0}")]
    OutOfMemory(Box<crate::inference::oom::OutOfMemory>),
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
            Error::ResourceExhausted(_) | Error::OutOfMemory(_) => Code::ResourceExhausted,
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

impl From<ModelIdError> for Error {
    fn from(e: ModelIdError) -> Self {
        match e {
            ModelIdError::Invalid { reason } => Error::invalid("model", reason),
            ModelIdError::Incomplete { .. } | ModelIdError::NotFound { .. } => Error::NotFound(e.to_string()),
        }
    }
}

impl From<LedgerError> for Error {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Insufficient { .. } => Error::ResourceExhausted(e.to_string()),
            LedgerError::UnknownLease { .. } => Error::NotFound(e.to_string()),
            LedgerError::GpuIndex(reason) => Error::invalid("gpu_index", reason.to_string()),
        }
    }
}

impl From<CacheError> for Error {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::NotLoaded(_) => Error::NotFound(e.to_string()),
            CacheError::InUse { .. } | CacheError::Unloading(_) => Error::FailedPrecondition(e.to_string()),
        }
    }
}

/// A request that does not fit its model: INVALID_ARGUMENT naming the field, or FAILED_PRECONDITION
/// when only another model could serve it.
impl From<crate::generation::ValidationError> for Error {
    fn from(e: crate::generation::ValidationError) -> Self {
        if e.wrong_model() {
            return Error::FailedPrecondition(e.to_string());
        }
        let field = e.field();
        let message = e.to_string();
        let message = message.strip_prefix(field).and_then(|m| m.strip_prefix(": ")).unwrap_or(&message);
        Error::invalid(field, message)
    }
}

impl From<UnknownDType> for Error {
    fn from(e: UnknownDType) -> Self {
        Error::invalid("dtype", e.to_string())
    }
}

/// A checkpoint that cannot be sized makes the `model` asked about unusable; one whose config
/// describes a model that is not served (a melody checkpoint) is a state of the folder the request
/// cannot change: FAILED_PRECONDITION naming the type.
impl From<RequirementsError> for Error {
    fn from(e: RequirementsError) -> Self {
        match e {
            RequirementsError::Unsupported { .. } => Error::FailedPrecondition(e.to_string()),
            other => Error::invalid("model", other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ledger::GpuIndexError;

    #[test]
    fn field_errors_keep_their_field_and_message() {
        let e = Error::from(LedgerError::GpuIndex(GpuIndexError::Unknown { index: 7, known: vec![0] }));
        assert!(
            matches!(&e, Error::InvalidArgument { field: "gpu_index", message }
            if message == "must be one of the GPUs present [0], got 7"),
            "{e:?}"
        );
        assert_eq!(e.to_status().code(), Code::InvalidArgument);
        let e = Error::from(UnknownDType { value: "f8".into() });
        assert!(
            matches!(&e, Error::InvalidArgument { field: "dtype", message } if message.ends_with("got \"f8\""))
        );
        assert_eq!(e.to_string(), format!("dtype: {}", UnknownDType { value: "f8".into() }));
        let e = Error::from(ModelIdError::Invalid { reason: "must not be empty, got \"\"".into() });
        assert!(matches!(&e, Error::InvalidArgument { field: "model", .. }), "{e:?}");
    }

    #[test]
    fn state_errors_pick_their_codes() {
        let in_use = Error::from(CacheError::InUse { model: "m".into(), in_flight: 2 });
        assert_eq!(in_use.to_status().code(), Code::FailedPrecondition);
        assert_eq!(Error::from(CacheError::NotLoaded("m".into())).to_status().code(), Code::NotFound);
        let short = LedgerError::Insufficient { resource: "host memory".into(), requested: 2, available: 1 };
        assert_eq!(Error::from(short).to_status().code(), Code::ResourceExhausted);
        let gone = LedgerError::UnknownLease { id: "lease-1".into() };
        assert_eq!(Error::from(gone).to_status().code(), Code::NotFound);
        let melody = RequirementsError::Unsupported {
            path: "m/config.json".into(),
            reason: "model_type \"musicgen_melody\" is not served".into(),
        };
        let status = Error::from(melody).to_status();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("musicgen_melody"), "{status:?}");
        let reported =
            crate::inference::oom::classify("CUDA out of memory. Tried to allocate 2.00 GiB").unwrap();
        let oom = crate::inference::oom::OutOfMemory::new(
            crate::resources::device::Device::Cuda(0),
            "loading m".into(),
            reported,
        );
        let status = Error::OutOfMemory(Box::new(oom.clone())).to_status();
        assert_eq!((status.code(), status.message()), (Code::ResourceExhausted, oom.to_string().as_str()));
    }
}
