//! Authorising requests to Azure Storage: an account key (`SharedKey` for Blob,
//! `SharedKeyLite` for Table), a SAS, or an
//! Entra ID bearer token.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use lock_core::{Error, Result};
use std::fmt;

/// The REST API version every request names.
pub(crate) const API_VERSION: &str = "2021-12-02";

/// How requests are authorised. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The account key (decoded from its base64 form), for `SharedKey` signatures.
    AccountKey(Vec<u8>),
    /// A shared access signature: the query string, without its leading `?`.
    Sas(String),
    /// An Entra ID (OAuth) access token.
    Bearer(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AccountKey(_) => "AccountKey(<redacted>)",
            Self::Sas(_) => "Sas(<redacted>)",
            Self::Bearer(_) => "Bearer(<redacted>)",
        })
    }
}

impl Credential {
    /// The first of `AZURE_STORAGE_KEY`, `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_TOKEN`
    /// that is set; an error naming them (and `scheme`) if none is.
    pub fn from_env(scheme: &str) -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(key) = var("AZURE_STORAGE_KEY") {
            return STANDARD.decode(key.trim()).map(Self::AccountKey).map_err(|_| {
                Error::Config(format!("{scheme}://: AZURE_STORAGE_KEY is not an account key (base64, as the portal shows it)"))
            });
        }
        if let Some(sas) = var("AZURE_STORAGE_SAS_TOKEN") {
            return Ok(Self::Sas(sas.trim_start_matches('?').to_string()));
        }
        if let Some(token) = var("AZURE_STORAGE_TOKEN") {
            return Ok(Self::Bearer(token));
        }
        Err(Error::Config(format!(
            "{scheme}:// needs a credential: set AZURE_STORAGE_KEY (the account key), AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_TOKEN (Entra ID)"
        )))
    }
}

/// The signature of `string_to_sign` with `key` (HMAC-SHA256, base64).
fn sign(key: &[u8], string_to_sign: &str) -> String {
    let mut mac = <Hmac<sha2_11::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Which service a request goes to: their `SharedKeyLite` strings differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Blob,
    Table,
}

/// Adds the date, version and authorisation to a request for `url` (the full URL,
/// without a SAS; it is appended here when that is the credential).
pub(crate) fn authorize(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    account: &str,
    credential: &Credential,
    service: Service,
    content_type: &str,
) -> Result<reqwest::RequestBuilder> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let parsed =
        reqwest::Url::parse(url).map_err(|e| Error::Config(format!("not a URL for the Azure Storage {service:?} service: {e}")))?;
    let with_sas = match credential {
        Credential::Sas(sas) if parsed.query().is_some() => format!("{url}&{sas}"),
        Credential::Sas(sas) => format!("{url}?{sas}"),
        _ => url.to_string(),
    };
    let mut request = client
        .request(method.clone(), with_sas)
        .header("x-ms-date", &date)
        .header("x-ms-version", API_VERSION)
        .header("DataServiceVersion", "3.0;NetFx")
        .header("MaxDataServiceVersion", "3.0;NetFx");
    match credential {
        Credential::AccountKey(key) => {
            // The resource: the account, then the path as sent (Azurite's path starts with
            // the account again).
            let resource = format!("/{account}{}", parsed.path());
            let (scheme, string_to_sign) = match service {
                // Table: SharedKeyLite, the date and the resource with `?comp=` if any.
                Service::Table => {
                    let comp = parsed.query_pairs().find(|(k, _)| k == "comp").map(|(_, v)| format!("?comp={v}")).unwrap_or_default();
                    ("SharedKeyLite", format!("{date}\n{resource}{comp}"))
                }
                // Blob: SharedKey (Azurite knows no SharedKeyLite for blobs): the verb, eleven
                // standard headers (only Content-Type is ever set here; a zero length is
                // empty), the x-ms- headers, the resource and every query parameter.
                Service::Blob => {
                    let mut query: Vec<(String, String)> = parsed.query_pairs().map(|(k, v)| (k.to_lowercase(), v.into_owned())).collect();
                    query.sort();
                    let query: String = query.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
                    let headers = format!("x-ms-date:{date}\nx-ms-version:{API_VERSION}\n");
                    ("SharedKey", format!("{method}\n\n\n\n\n{content_type}\n\n\n\n\n\n\n{headers}{resource}{query}"))
                }
            };
            request = request.header("Authorization", format!("{scheme} {account}:{}", sign(key, &string_to_sign)));
        }
        Credential::Bearer(token) => request = request.bearer_auth(token),
        Credential::Sas(_) => {}
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_hides_every_secret() {
        for c in [Credential::AccountKey(b"hunter2".to_vec()), Credential::Sas("sig=hunter2".into()), Credential::Bearer("hunter2".into())]
        {
            assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        }
    }

    /// The emulator's published key signing a Table request's string; the expected value
    /// was computed independently (Python's `hmac` module).
    #[test]
    fn shared_key_lite_signs_with_hmac_sha256_in_base64() {
        let key =
            STANDARD.decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==").expect("base64");
        let signature = sign(&key, "Mon, 07 Dec 2026 10:00:00 GMT\n/devstoreaccount1/devstoreaccount1/Tables");
        assert_eq!(signature, "B4tGyRDu1/1d8q2/1FAu6U1ARdt2rZvoy+lKZGpfjLk=");
    }
}
