//! The certificates the hub client trusts: the public roots (webpki-roots, ureq's default) and, where an
//! organisation's proxy inspects HTTPS with its own certificate authority, the PEM bundle named by
//! `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` or `SSL_CERT_FILE` — the variables Python's requests (so
//! huggingface_hub) and curl read, first set first. The bundle adds to the public roots rather than replacing
//! them, so that hosts the proxy passes through untouched (a CDN in `NO_PROXY`) still verify. An empty variable
//! is ignored: verification is never turned off.

use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The variables that name a certificate bundle, in the order they are read.
pub const BUNDLE_VARIABLES: [&str; 3] = ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"];

/// What to tell a user whose HTTPS connection failed on an unknown certificate.
pub const UNKNOWN_CERTIFICATE_ADVICE: &str = "if a proxy of your organisation inspects HTTPS, point \
     REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at its certificate bundle (PEM); or download the weights elsewhere and \
     pass the file to --weights";

/// The first bundle variable `env` sets to a non-empty value, and that value.
pub fn bundle_variable(env: &dyn Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    BUNDLE_VARIABLES
        .iter()
        .find_map(|&k| env(k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
}

/// The TLS configuration with the bundle `env` names: `None` when none is named (ureq's default then applies),
/// an error saying which variable, which file and what is wrong when the file cannot be read or holds no PEM
/// certificate.
pub fn config(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let Some((var, path)) = bundle_variable(env) else {
        return Ok(None);
    };
    let fix = "point it at a PEM file of certificates (-----BEGIN CERTIFICATE-----) or unset it";
    let pem = std::fs::read(&path).map_err(|e| format!("{var}={path} cannot be read ({e}): {fix}"))?;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let certificates: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{var}={path} is not a valid PEM bundle ({e}): {fix}"))?;
    let (added, unusable) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!(
            "{var}={path} holds no usable certificate ({unusable} could not be parsed): {fix}"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up ({e})"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// [`config`] for this process's environment, read once.
pub fn process_config() -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    static CONFIG: OnceLock<Result<Option<Arc<rustls::ClientConfig>>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| config(&|k| std::env::var(k).ok())).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_bundle_variables_are_read_in_requests_order_and_empty_ones_are_skipped() {
        assert_eq!(bundle_variable(&env_of(&[])), None);
        let both = env_of(&[("SSL_CERT_FILE", "/b"), ("REQUESTS_CA_BUNDLE", "/a")]);
        assert_eq!(bundle_variable(&both), Some(("REQUESTS_CA_BUNDLE", "/a".into())));
        let empty = env_of(&[
            ("REQUESTS_CA_BUNDLE", ""),
            ("CURL_CA_BUNDLE", " "),
            ("SSL_CERT_FILE", "/c"),
        ]);
        assert_eq!(bundle_variable(&empty), Some(("SSL_CERT_FILE", "/c".into())));
        assert!(config(&env_of(&[("CURL_CA_BUNDLE", "")])).unwrap().is_none());
    }

    #[test]
    fn a_missing_or_certificate_less_bundle_is_refused_naming_the_variable_and_the_file() {
        let e = config(&env_of(&[("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")])).unwrap_err();
        assert!(
            e.contains("REQUESTS_CA_BUNDLE=/nonexistent/ca.pem cannot be read"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let e = config(&env_of(&[("SSL_CERT_FILE", text.to_str().unwrap())])).unwrap_err();
        assert!(
            e.contains("SSL_CERT_FILE=") && e.contains("no usable certificate"),
            "{e}"
        );
    }

    #[test]
    fn a_system_bundle_loads() {
        // Debian's bundle (what REQUESTS_CA_BUNDLE names on many machines): ~150 certificates in one PEM file.
        let system = "/etc/ssl/certs/ca-certificates.crt";
        if !std::path::Path::new(system).exists() {
            eprintln!("skipped: no {system} here");
            return;
        }
        assert!(config(&env_of(&[("REQUESTS_CA_BUNDLE", system)])).unwrap().is_some());
    }
}
