//! Plumbing the Highlander AWS backends share: configuration from a store URL and the
//! environment, secrets that never print, and AWS errors in one line.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lock_core::{Error, Params, Result};
use std::{fmt, future::Future, sync::Arc, time::Duration};

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
    max_in_flight: usize,
}

/// Requests one store may have in flight at once unless told otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            static_credentials: None,
            call_timeout: Duration::from_secs(5),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
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

    /// At most `n` requests of the store in flight at once (default 16): its HTTP
    /// connections, which the SDK opens one per concurrent request, are bounded by it
    /// however many locks the store serves.
    pub fn set_max_in_flight(&mut self, n: usize) {
        self.max_in_flight = n;
    }

    /// The store's bound on requests in flight, waited for within the call timeout.
    #[must_use]
    pub fn in_flight(&self) -> InFlight {
        InFlight { permits: Arc::new(tokio::sync::Semaphore::new(self.max_in_flight)), n: self.max_in_flight, wait: self.call_timeout }
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

    /// Takes `region=`, `endpoint=` and `max_in_flight=` from a store URL's parameters.
    /// `what` names the store in messages.
    pub fn take_params(&mut self, params: &mut Params<'_>, what: &str) -> Result<()> {
        let named = |e: Error| match e {
            Error::Config(m) => Error::Config(format!("{what}: {m}")),
            other => other,
        };
        if let Some(region) = params.take("region").map_err(named)? {
            self.set_region(region);
        }
        if let Some(endpoint) = params.take("endpoint").map_err(named)? {
            self.set_endpoint(endpoint);
        }
        if let Some(n) = params.number::<usize>("max_in_flight").map_err(named)? {
            self.set_max_in_flight(n);
        }
        Ok(())
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
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return Err(Error::Config(format!("{what}: max_in_flight must be between 1 and {MAX_IN_FLIGHT}, not {}", self.max_in_flight)));
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

/// The largest `max_in_flight` accepted.
pub const MAX_IN_FLIGHT: usize = 1024;

/// A store's bound on its requests in flight (see [`AwsConfig::set_max_in_flight`]).
/// Clones share the bound.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    n: usize,
    wait: Duration,
}

impl InFlight {
    /// Sends `request` (an SDK call's `send()`) once fewer than the bound are in flight;
    /// a request that cannot start within the call timeout fails as a timeout.
    ///
    /// # Errors
    /// The request's own error, or [`SdkError::TimeoutError`] if it never started.
    pub async fn send<O, E, R>(
        &self,
        request: impl Future<Output = std::result::Result<O, SdkError<E, R>>>,
    ) -> std::result::Result<O, SdkError<E, R>> {
        match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(_permit)) => request.await,
            _ => Err(SdkError::timeout_error(format!(
                "{} requests of this store were in flight for the whole call timeout ({:?})",
                self.n, self.wait
            ))),
        }
    }
}

/// `request.send().within(&limit)`: [`InFlight::send`] at the end of an SDK call chain.
pub trait SendWithin<O, E, R>: Future<Output = std::result::Result<O, SdkError<E, R>>> + Sized {
    /// Sends once fewer than the store's bound are in flight.
    fn within(self, limit: &InFlight) -> impl Future<Output = std::result::Result<O, SdkError<E, R>>> {
        limit.send(self)
    }
}

impl<F, O, E, R> SendWithin<O, E, R> for F where F: Future<Output = std::result::Result<O, SdkError<E, R>>> {}

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

        /// At most `n` requests in flight at once (default 16, at most 1024): the
        /// store's HTTP connections are bounded by it, however many locks it serves.
        pub fn max_in_flight(mut self, n: usize) -> Self {
            self.aws.set_max_in_flight(n);
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

    type Sent = std::result::Result<(), SdkError<std::io::Error, ()>>;

    /// At most `max_in_flight` requests run at once; the others wait their turn, and
    /// one that cannot start within the call timeout fails as a timeout (paused clock).
    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_bounded_and_waiting_is_within_the_call_timeout() {
        let mut c = AwsConfig::default();
        c.set_max_in_flight(2);
        c.set_call_timeout(Duration::from_secs(5));
        let limit = c.in_flight();
        let (now, most) = (Arc::new(std::sync::atomic::AtomicUsize::new(0)), Arc::new(std::sync::atomic::AtomicUsize::new(0)));
        let request = |hold: Duration| {
            let (now, most) = (now.clone(), most.clone());
            async move {
                let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Sent::Ok(())
            }
        };
        // Six 1 s requests through a bound of 2: three rounds, all within 5 s.
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (limit, request) = (limit.clone(), request(Duration::from_secs(1)));
                tokio::spawn(async move { limit.send(request).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("sent");
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // Two requests hold both places for 10 s: a third waits 5 s, then times out.
        let (a, b) = (limit.send(request(Duration::from_secs(10))), limit.send(request(Duration::from_secs(10))));
        let third = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let asked = tokio::time::Instant::now();
            (limit.send(request(Duration::ZERO)).await, asked.elapsed())
        };
        let (_, _, (third, waited)) = tokio::join!(a, b, third);
        let err = third.expect_err("no place within the call timeout");
        assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
        assert_eq!(waited, Duration::from_secs(5));
    }

    #[test]
    fn max_in_flight_from_the_url_is_checked_and_named() {
        let url = lock_core::StoreUrl::parse("dynamodb://t?max_in_flight=abc").expect("url");
        let mut c = AwsConfig::default();
        let e = c.take_params(&mut url.params(), "dynamodb table t").expect_err("not a number").to_string();
        assert!(e.contains("dynamodb table t") && e.contains("max_in_flight"), "{e}");
        for bad in ["max_in_flight=%2B5", "max_in_flight=", "endpoint=", "region="] {
            let url = lock_core::StoreUrl::parse(&format!("dynamodb://t?{bad}")).expect("url");
            let e = AwsConfig::default().take_params(&mut url.params(), "dynamodb table t").expect_err(bad).to_string();
            assert!(e.contains("empty") || e.contains("whole number"), "{bad}: {e}");
        }
        for (n, ok) in [("0", false), ("1", true), ("1024", true), ("1025", false)] {
            let url = lock_core::StoreUrl::parse(&format!("dynamodb://t?max_in_flight={n}")).expect("url");
            let mut c = AwsConfig::default();
            c.take_params(&mut url.params(), "dynamodb table t").expect("a number");
            assert_eq!(c.check("dynamodb table t").is_ok(), ok, "max_in_flight={n}");
        }
    }
}
