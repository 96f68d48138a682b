//! Plumbing the Highlander AWS backends share: configuration from a store URL and the
//! environment, secrets that never print, and AWS errors in one line.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lock_core::{Error, Params, Result};
use std::{fmt, time::Duration};

/// The environment variables that hold AWS secrets.
pub const SECRET_ENV: &[&str] = &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret, for the one place that must send it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach an AWS service: region, endpoint, credentials, timeout.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    region: Option<String>,
    endpoint: Option<String>,
    static_credentials: Option<(String, Secret)>,
    call_timeout: Duration,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self { region: None, endpoint: None, static_credentials: None, call_timeout: Duration::from_secs(5) }
    }
}

impl AwsConfig {
    /// The region (default: the AWS configuration chain).
    pub fn set_region(&mut self, region: impl Into<String>) {
        self.region = Some(region.into());
    }

    /// An endpoint override (an emulator, a VPC endpoint, an S3-compatible store).
    pub fn set_endpoint(&mut self, url: impl Into<String>) {
        self.endpoint = Some(url.into());
    }

    /// Static credentials instead of the chain (for emulators and tests).
    pub fn set_static_credentials(&mut self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) {
        self.static_credentials = Some((access_key_id.into(), Secret::new(secret_access_key)));
    }

    /// The bound on each request, retries included (default 5 s).
    pub fn set_call_timeout(&mut self, d: Duration) {
        self.call_timeout = d;
    }

    /// The region, if set.
    #[must_use]
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The endpoint override, if set (it holds no credentials: [`check`](Self::check) refuses those).
    #[must_use]
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Takes `region=` and `endpoint=` from a store URL's parameters.
    pub fn take_params(&mut self, params: &mut Params<'_>) {
        if let Some(region) = params.take("region") {
            self.set_region(region);
        }
        if let Some(endpoint) = params.take("endpoint") {
            self.set_endpoint(endpoint);
        }
    }

    /// Checks what was set; `what` names the store in messages. An endpoint is
    /// `http(s)://HOST[:PORT][/PATH]` and never carries credentials (they come from the
    /// AWS chain): one that does is refused without being echoed.
    pub fn check(&self, what: &str) -> Result<()> {
        if let Some(endpoint) = &self.endpoint {
            let Some((scheme, rest)) = endpoint.split_once("://") else {
                return Err(Error::Config(format!("{what}: the endpoint must be an http:// or https:// URL")));
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if !matches!(scheme, "http" | "https") || authority.is_empty() {
                return Err(Error::Config(format!("{what}: the endpoint must be an http:// or https:// URL with a host")));
            }
            if authority.contains('@') {
                return Err(Error::Config(format!(
                    "{what}: the endpoint URL must not carry a user or password (AWS credentials come from the environment or the AWS chain)"
                )));
            }
        }
        if let Some(region) = &self.region
            && (region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(Error::Config(format!("{what}: region {} is not an AWS region name", lock_core::Escaped(region))));
        }
        if self.call_timeout.is_zero() {
            return Err(Error::Config(format!("{what}: the call timeout must be greater than zero")));
        }
        Ok(())
    }

    /// Loads the shared configuration: credentials and region from the chain unless set.
    pub async fn load(&self, what: &str) -> Result<aws_config::SdkConfig> {
        self.check(what)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((id, secret)) = &self.static_credentials {
            loader =
                loader.credentials_provider(aws_credential_types::Credentials::new(id, secret.expose(), None, None, "highlander-static"));
        }
        loader = loader.timeout_config(aws_config::timeout::TimeoutConfig::builder().operation_timeout(self.call_timeout).build());
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(Error::Config(format!("{what}: no AWS region configured (set AWS_REGION, or region= in the URL)")));
        }
        Ok(shared)
    }

    /// ` at ENDPOINT` or ` in REGION`, for a store's description.
    #[must_use]
    pub fn describe(&self) -> String {
        match (&self.endpoint, &self.region) {
            (Some(e), _) => format!(" at {}", lock_core::redact_userinfo(e)),
            (None, Some(r)) => format!(" in {r}"),
            (None, None) => String::new(),
        }
    }
}

/// An SDK error in one line: `Code: message (HTTP 400)` for a service's answer, the
/// cause for a connection that failed, never the SDK's `Debug` form.
pub fn message<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + HasStatus + 'static,
{
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let status = service.raw().status_code();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg} (HTTP {status})"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                (None, Some(msg)) => format!("{msg} (HTTP {status})"),
                (None, None) => format!("HTTP {status} with no error code"),
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".into(),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                "timed out connecting"
            } else if failure.is_io() {
                "connection failed"
            } else {
                "could not send the request"
            };
            format!("{kind}: {}", causes(e))
        }
        SdkError::ResponseError(_) => format!("unreadable response: {}", causes(e)),
        SdkError::ConstructionFailure(_) => format!("invalid request: {}", causes(e)),
        _ => causes(e),
    }
}

/// The HTTP status of a raw response.
pub trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Each cause's message once: the SDK's own message for these says only "dispatch failure".
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    match e.source() {
        Some(cause) => lock_core::error_chain(cause),
        None => e.to_string(),
    }
}

/// The setters every AWS store builder has, written once: expand inside the builder's
/// `impl` block; the builder keeps its [`AwsConfig`] in a field named `aws`.
#[macro_export]
macro_rules! builder_methods {
    () => {
        /// The region (default: from the AWS configuration chain).
        pub fn region(mut self, region: impl Into<String>) -> Self {
            self.aws.set_region(region);
            self
        }

        /// An endpoint override (an emulator, a VPC endpoint, an S3-compatible store).
        pub fn endpoint(mut self, url: impl Into<String>) -> Self {
            self.aws.set_endpoint(url);
            self
        }

        /// Static credentials instead of the default chain (for emulators and tests).
        pub fn static_credentials(mut self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
            self.aws.set_static_credentials(access_key_id, secret_access_key);
            self
        }

        /// The bound on each request, retries included (default 5 s).
        pub fn call_timeout(mut self, d: std::time::Duration) -> Self {
            self.aws.set_call_timeout(d);
            self
        }

        /// Follows an elector's settings: no request outlives its call timeout.
        pub fn options(mut self, options: &lock_core::OpenOptions) -> Self {
            self.aws.set_call_timeout(options.call_timeout);
            self
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_with_credentials_are_refused_without_echoing_them() {
        let mut c = AwsConfig::default();
        c.set_endpoint("http://user:hunter2@127.0.0.1:8000");
        let e = c.check("dynamodb table t").expect_err("credentials in the endpoint").to_string();
        assert!(e.contains("must not carry a user or password") && !e.contains("hunter2"), "{e}");
        for bad in ["127.0.0.1:8000", "ftp://h", "http://", "http:///path"] {
            c.set_endpoint(bad);
            assert!(c.check("t").is_err(), "{bad}");
        }
        c.set_endpoint("http://127.0.0.1:8000/base");
        c.check("t").expect("fine");
        assert_eq!(c.describe(), " at http://127.0.0.1:8000/base");
        c.set_region("eu west");
        assert!(c.check("t").expect_err("bad region").to_string().contains("not an AWS region"));
    }
}
