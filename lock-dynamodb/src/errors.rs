//! DynamoDB's failures mapped into lock-core's error, in one place.

use crate::DynamoDbStore;
use aws_sdk_dynamodb::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
};
use lock_core::{Error, LockName};

/// What an SDK error means for a lease store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `ConditionalCheckFailedException`, with or without the old item.
    ConditionFailed { item_present: bool },
    /// `ResourceInUseException` (the table already exists).
    InUse,
    /// The table does not exist.
    NoTable,
    /// Credentials or IAM.
    Denied,
    /// Throttling, 5xx, timeouts, connection failures: retry later.
    Transient,
    /// Anything else.
    Other,
}

/// Classifies by error code and HTTP status, the way DynamoDB documents them.
pub(crate) fn classify_parts(code: Option<&str>, status: Option<u16>, item_present: bool) -> Class {
    match code {
        Some("ConditionalCheckFailedException") => Class::ConditionFailed { item_present },
        Some("ResourceInUseException") => Class::InUse,
        Some("ResourceNotFoundException") => Class::NoTable,
        Some(
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "MissingAuthenticationTokenException"
            | "ExpiredTokenException",
        ) => Class::Denied,
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionConflictException",
        ) => Class::Transient,
        _ if status.is_some_and(|s| s >= 500) => Class::Transient,
        _ => Class::Other,
    }
}

pub(crate) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E, HttpResponse>) -> Class {
    match e {
        SdkError::ServiceError(service) => {
            classify_parts(service.err().code(), Some(service.raw().status().as_u16()), condition_item_present(service.err()))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Class::Transient,
        _ => Class::Other,
    }
}

/// Maps an SDK error for `lock` (or the table, when `None`).
pub(crate) fn map<E>(store: &DynamoDbStore, lock: Option<&LockName>, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = store.to_string();
    let class = classify(&e);
    let message = lock_aws::message(&e);
    match (class, lock) {
        (Class::ConditionFailed { item_present: true }, Some(lock)) => Error::Conflict { lock: lock.clone(), store: text },
        (Class::ConditionFailed { item_present: false }, Some(lock)) => Error::NotFound { lock: lock.clone(), store: text },
        (Class::NoTable, _) => Error::Config(format!(
            "{text}: the table does not exist ({message}); create it with --create (highlander) or ensure_table(), or with your infrastructure code"
        )),
        (Class::Denied, _) => Error::PermissionDenied {
            store: text,
            detail: format!("{message} (check the credentials and the IAM policy in the lock-dynamodb README)"),
        },
        (Class::Transient, _) => Error::Unavailable { store: text, source: message.into() },
        // A request DynamoDB refuses as malformed, e.g. a key attribute that is not the table's key.
        (Class::Other, _) if message.contains("ValidationException") => {
            Error::Config(format!("{text}: {message} (is the key= attribute the table's partition key? see the lock-dynamodb README)"))
        }
        _ => Error::Backend { store: text, source: message.into() },
    }
}

/// Whether a failed condition came back with the old item (`ReturnValuesOnConditionCheckFailure=ALL_OLD`).
fn condition_item_present<E: std::error::Error + 'static>(e: &E) -> bool {
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    (e as &dyn std::error::Error)
        .downcast_ref::<PutItemError>()
        .and_then(|p| match p {
            PutItemError::ConditionalCheckFailedException(c) => Some(c.item().is_some_and(|i| !i.is_empty())),
            _ => None,
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_error_codes_map_to_what_a_caller_can_act_on() {
        assert_eq!(classify_parts(Some("ConditionalCheckFailedException"), Some(400), true), Class::ConditionFailed { item_present: true });
        assert_eq!(
            classify_parts(Some("ConditionalCheckFailedException"), Some(400), false),
            Class::ConditionFailed { item_present: false }
        );
        for throttled in ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"] {
            assert_eq!(classify_parts(Some(throttled), Some(400), false), Class::Transient, "{throttled}");
        }
        assert_eq!(classify_parts(Some("SomethingNew"), Some(503), false), Class::Transient);
        assert_eq!(classify_parts(Some("AccessDeniedException"), Some(400), false), Class::Denied);
        assert_eq!(classify_parts(Some("ResourceNotFoundException"), Some(400), false), Class::NoTable);
        assert_eq!(classify_parts(Some("ValidationException"), Some(400), false), Class::Other);
    }
}
