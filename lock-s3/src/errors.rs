//! S3's answers mapped into lock-core's error, in one place.
//!
//! aws-sdk-s3 models neither `412 PreconditionFailed` nor `409
//! ConditionalRequestConflict` for PutObject: both arrive as unmodelled errors, so
//! the mapping goes by HTTP status and error code.

use crate::S3Store;
use aws_sdk_s3::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
};
use lock_core::{Error, LockName};

/// Which call failed (the same status means different things for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GetObject.
    Get,
    /// PutObject with `If-None-Match: *`.
    Create,
    /// PutObject with `If-Match`.
    Update,
    /// Anything else (bucket and raw calls).
    Other,
}

/// What an S3 answer means for a lease store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Outcome {
    /// 412 on a create: the object exists.
    AlreadyExists,
    /// 412 on an update (the ETag moved), or 409 `ConditionalRequestConflict` (a
    /// concurrent conditional write): re-read and decide again.
    Conflict,
    /// 404 on a conditional update: the object is gone.
    NotFound,
    /// 404 `NoSuchBucket`.
    NoBucket,
    /// The store does not implement conditional writes (an S3-compatible store).
    Unsupported,
    /// 403 and signature or key errors.
    Denied,
    /// 503 `SlowDown`.
    RateLimited,
    /// Other 5xx, timeouts, connection failures.
    Transient,
    /// Anything else.
    Other,
}

/// Classifies an S3 answer by operation, HTTP status and error code.
#[must_use]
pub fn classify(op: Operation, status: Option<u16>, code: Option<&str>) -> S3Outcome {
    match (status, code) {
        (_, Some("NoSuchBucket")) => S3Outcome::NoBucket,
        (Some(412), _) | (_, Some("PreconditionFailed")) => match op {
            Operation::Create => S3Outcome::AlreadyExists,
            _ => S3Outcome::Conflict,
        },
        (Some(409), Some("ConditionalRequestConflict")) => S3Outcome::Conflict,
        (Some(404), _) | (_, Some("NoSuchKey")) if op == Operation::Update => S3Outcome::NotFound,
        (Some(501), _) | (_, Some("NotImplemented")) => S3Outcome::Unsupported,
        (_, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken")) | (Some(403), _) => {
            S3Outcome::Denied
        }
        (_, Some("SlowDown")) => S3Outcome::RateLimited,
        (Some(s), _) if s >= 500 => S3Outcome::Transient,
        _ => S3Outcome::Other,
    }
}

/// The error code of an S3 answer, if it has one.
pub(crate) fn code<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<String> {
    match e {
        SdkError::ServiceError(s) => s.err().code().map(str::to_string),
        _ => None,
    }
}

/// Maps an SDK error for `lock` (or the bucket, when `None`).
pub(crate) fn map<E>(store: &S3Store, lock: Option<&LockName>, op: Operation, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = store.to_string();
    let message = lock_aws::message(&e);
    let outcome = match &e {
        SdkError::ServiceError(s) => classify(op, Some(s.raw().status().as_u16()), s.err().code()),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => S3Outcome::Transient,
        _ => S3Outcome::Other,
    };
    let lock_error = |make: fn(LockName, String) -> Error| match lock {
        Some(l) => make(l.clone(), text.clone()),
        None => Error::Backend { store: text.clone(), source: message.clone().into() },
    };
    match outcome {
        S3Outcome::AlreadyExists => lock_error(|lock, store| Error::AlreadyExists { lock, store }),
        S3Outcome::Conflict => lock_error(|lock, store| Error::Conflict { lock, store }),
        S3Outcome::NotFound => lock_error(|lock, store| Error::NotFound { lock, store }),
        S3Outcome::NoBucket => {
            Error::Config(format!("{text}: the bucket does not exist; create it with --create (highlander) or ensure_bucket()"))
        }
        S3Outcome::Unsupported => Error::Config(format!(
            "{text}: this store does not support conditional writes (If-None-Match / If-Match); it cannot hold a lease"
        )),
        S3Outcome::Denied => Error::PermissionDenied {
            store: text,
            detail: format!("{message} (check the credentials and the IAM policy in the lock-s3 README)"),
        },
        S3Outcome::RateLimited => Error::RateLimited { store: text, retry_after: None },
        S3Outcome::Transient => Error::Unavailable { store: text, source: message.into() },
        S3Outcome::Other => Error::Backend { store: text, source: message.into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_write_answers_map_per_operation() {
        assert_eq!(classify(Operation::Create, Some(412), Some("PreconditionFailed")), S3Outcome::AlreadyExists);
        assert_eq!(classify(Operation::Update, Some(412), Some("PreconditionFailed")), S3Outcome::Conflict);
        assert_eq!(classify(Operation::Update, Some(412), None), S3Outcome::Conflict);
        assert_eq!(classify(Operation::Update, Some(404), Some("NoSuchKey")), S3Outcome::NotFound);
        assert_eq!(classify(Operation::Get, Some(404), Some("NoSuchBucket")), S3Outcome::NoBucket);
    }

    #[test]
    fn conditional_request_conflict_409_is_a_retryable_conflict() {
        // No emulator produces it; AWS answers 409 when conditional writes race.
        assert_eq!(classify(Operation::Update, Some(409), Some("ConditionalRequestConflict")), S3Outcome::Conflict);
        assert_eq!(classify(Operation::Create, Some(409), Some("ConditionalRequestConflict")), S3Outcome::Conflict);
        // Other 409s (e.g. a bucket being deleted) are not lease conflicts.
        assert_eq!(classify(Operation::Update, Some(409), Some("OperationAborted")), S3Outcome::Other);
    }

    #[test]
    fn throttling_denial_and_unsupported_stores_are_told_apart() {
        assert_eq!(classify(Operation::Get, Some(503), Some("SlowDown")), S3Outcome::RateLimited);
        assert_eq!(classify(Operation::Get, Some(500), Some("InternalError")), S3Outcome::Transient);
        assert_eq!(classify(Operation::Get, Some(403), Some("AccessDenied")), S3Outcome::Denied);
        assert_eq!(classify(Operation::Create, Some(501), Some("NotImplemented")), S3Outcome::Unsupported);
    }
}
