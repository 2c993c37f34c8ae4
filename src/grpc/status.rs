//! The one mapping from the service's errors to gRPC status codes, the table DESIGN.md gives: a bad
//! field is INVALID_ARGUMENT; an unknown model or lease NOT_FOUND; not enough memory, a full queue or
//! too many streams RESOURCE_EXHAUSTED; a model in use or a checkpoint that cannot serve the request
//! FAILED_PRECONDITION; a stopping server UNAVAILABLE. Each layer's error is matched by kind, never
//! by its text; the message is the error's own.

use tonic::{Code, Status};

use crate::{
    engine::EngineError,
    error::Error,
    generation::GenerationError,
    resources::{cache::CacheError, ledger::LedgerError, model_id::ModelIdError},
};

/// The gRPC status for `e`.
pub fn status(e: &Error) -> Status {
    Status::new(code(e), e.to_string())
}

/// The code for `e`.
pub fn code(e: &Error) -> Code {
    match e {
        Error::InvalidArgument { .. } | Error::DType(_) => Code::InvalidArgument,
        Error::Generation(g) => generation(g),
        Error::Cache(CacheError::NotLoaded(_)) => Code::NotFound,
        Error::Cache(CacheError::InUse { .. } | CacheError::Unloading(_)) => Code::FailedPrecondition,
        Error::Ledger(LedgerError::Insufficient { .. }) => Code::ResourceExhausted,
        Error::Ledger(LedgerError::UnknownLease { .. }) => Code::NotFound,
        Error::Ledger(LedgerError::ServerLease { .. }) => Code::FailedPrecondition,
        Error::Ledger(LedgerError::NotYours { .. }) => Code::PermissionDenied,
        Error::Ledger(
            LedgerError::TokenLeases { .. }
            | LedgerError::TokenBytes { .. }
            | LedgerError::TooManyLeases { .. },
        ) => Code::ResourceExhausted,
        Error::Ledger(LedgerError::GpuIndex(_)) => Code::InvalidArgument,
        Error::ModelId(ModelIdError::Invalid { .. } | ModelIdError::AmbiguousRevision { .. }) => {
            Code::InvalidArgument
        }
        Error::ModelId(
            ModelIdError::Incomplete { .. }
            | ModelIdError::NotFound { .. }
            | ModelIdError::UnknownRevision { .. },
        ) => Code::NotFound,
        Error::Requirements(r) if r.unsupported() => Code::FailedPrecondition,
        Error::Requirements(_) => Code::InvalidArgument,
        Error::TooManyStreams(_) => Code::ResourceExhausted,
        Error::NotFound(_) => Code::NotFound,
        Error::Stopped(_) => Code::Unavailable,
        Error::Internal(_) => Code::Internal,
    }
}

fn generation(e: &GenerationError) -> Code {
    match e {
        GenerationError::Validation(v) if v.wrong_model() => Code::FailedPrecondition,
        GenerationError::Validation(_) => Code::InvalidArgument,
        GenerationError::Engine(e) => engine(e),
        GenerationError::DoesNotFit(_)
        | GenerationError::Stalled { .. }
        | GenerationError::QueueShare { .. } => Code::ResourceExhausted,
        GenerationError::OnAnotherDevice { .. } | GenerationError::Checkpoint { .. } => {
            Code::FailedPrecondition
        }
        GenerationError::ShutDown => Code::Unavailable,
        GenerationError::Internal(_) => Code::Internal,
    }
}

fn engine(e: &EngineError) -> Code {
    match e {
        EngineError::WorkerQueueFull { .. }
        | EngineError::GenerationQueueFull { .. }
        | EngineError::OutOfMemory(_) => Code::ResourceExhausted,
        EngineError::WorkerStopped { .. } | EngineError::StillRunning { .. } => Code::Unavailable,
        EngineError::NotPlaced { .. } | EngineError::InvalidRequest { .. } => Code::InvalidArgument,
        EngineError::LoadFailed { .. } => Code::FailedPrecondition,
        EngineError::NotHeld { .. } => Code::NotFound,
        EngineError::Failed(_) => Code::Internal,
        EngineError::Unimplemented(_) => Code::Unimplemented,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        status(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checkpoint::CheckpointError,
        generation::ValidationError,
        inference::oom::{classify, OutOfMemory},
        resources::{
            device::Device,
            ledger::GpuIndexError,
            requirements::{RequirementsError, UnknownDType},
        },
    };

    fn says(e: Error) -> (Code, String) {
        let s = status(&e);
        (s.code(), s.message().to_string())
    }

    #[test]
    fn field_errors_are_invalid_argument_and_keep_their_field_and_message() {
        let gpu = LedgerError::GpuIndex(GpuIndexError::Unknown { index: 7, known: vec![0] });
        let want = (Code::InvalidArgument, "gpu_index: must be one of the GPUs present [0], got 7".into());
        assert_eq!(says(gpu.into()), want);
        let (code, message) = says(UnknownDType { value: "f8".into() }.into());
        assert!(
            code == Code::InvalidArgument
                && message.starts_with("dtype: ")
                && message.ends_with("got \"f8\"")
        );
        let (code, message) =
            says(ModelIdError::Invalid { reason: "must not be empty, got \"\"".into() }.into());
        assert_eq!((code, message.as_str()), (Code::InvalidArgument, "model: must not be empty, got \"\""));
        let top_k = ValidationError::TopK { value: 9, codebook: 8 };
        let want = (Code::InvalidArgument, "top_k: must be 0 (off) ..= 8 (the codebook size), got 9".into());
        assert_eq!(says(top_k.into()), want);
        let melody = ValidationError::MelodyOnTextModel { model: "m".into() };
        assert_eq!(says(melody.into()).0, Code::FailedPrecondition, "only another model serves it");
    }

    #[test]
    fn state_errors_pick_their_codes() {
        assert_eq!(
            says(CacheError::InUse { model: "m".into(), in_flight: 2 }.into()).0,
            Code::FailedPrecondition
        );
        assert_eq!(says(CacheError::Unloading("m".into()).into()).0, Code::FailedPrecondition);
        assert_eq!(says(CacheError::NotLoaded("m".into()).into()).0, Code::NotFound);
        let short = LedgerError::Insufficient { resource: "host memory".into(), requested: 2, available: 1 };
        assert_eq!(says(short.into()).0, Code::ResourceExhausted);
        assert_eq!(says(LedgerError::UnknownLease { id: "lease-1".into() }.into()).0, Code::NotFound);
        let melody = CheckpointError::Unsupported {
            path: "m/config.json".into(),
            reason: "model_type \"musicgen_melody\" is not served".into(),
        };
        let (code, message) = says(RequirementsError::from(melody).into());
        assert!(code == Code::FailedPrecondition && message.contains("musicgen_melody"), "{message}");
        let full = EngineError::WorkerQueueFull { worker: 0, queued: 9, queue_capacity: 1, control_jobs: 8 };
        assert_eq!(says(full.into()).0, Code::ResourceExhausted);
        assert_eq!(says(EngineError::WorkerStopped { worker: 1 }.into()).0, Code::Unavailable);
        assert_eq!(says(GenerationError::ShutDown.into()).0, Code::Unavailable);
        assert_eq!(says(EngineError::Unimplemented("generation").into()).0, Code::Unimplemented);
    }

    #[test]
    fn out_of_memory_is_resource_exhausted_with_the_devices_numbers() {
        let reported = classify("CUDA out of memory. Tried to allocate 2.00 GiB").unwrap();
        let oom = OutOfMemory::new(Device::Cuda(0), "loading m".into(), reported);
        let (code, message) = says(EngineError::OutOfMemory(Box::new(oom.clone())).into());
        assert_eq!((code, message), (Code::ResourceExhausted, oom.to_string()));
    }
}
