//! Optional TLS on the public listener (rustls, with AWS-LC as its crypto provider), with the
//! certificate and key re-read while the gateway runs.
//!
//! The files are polled like the key files ([`crate::reload`]): when their bytes change, a new
//! `ServerConfig` is built and swapped in; connections already open keep theirs, new ones get
//! the new certificate. A broken update keeps the previous certificate and counts a failure.
//! ALPN offers `h2` and `http/1.1`.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntCounterVec, Opts};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;
use crate::keys::FileDigest;
use crate::reload::{ReloadOutcome, Reloadable};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no PEM object of the right kind.
    #[error("cannot read {what} from {path}")]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the certificate and key cannot be used together")]
    Config(#[source] rustls::Error),
}

/// The live TLS configuration and its reload counters.
#[derive(Debug)]
pub struct TlsState {
    files: TlsFiles,
    config: ArcSwap<ServerConfig>,
    digest: Mutex<FileDigest>,
    successes: IntCounter,
    failures: IntCounter,
    family: IntCounterVec,
}

fn read(files: &TlsFiles) -> Result<(ServerConfig, FileDigest), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect())
        .map_err(|source| TlsError::Pem {
            what: "certificate",
            path: files.cert.clone(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Pem {
        what: "private key",
        path: files.key.clone(),
        source,
    })?;
    let mut seen = Vec::new();
    for cert in &chain {
        seen.extend_from_slice(cert.as_ref());
    }
    seen.extend_from_slice(key.secret_der());
    let digest = FileDigest::of(&seen);
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, digest))
}

impl TlsState {
    /// Loads the certificate and key; an error here stops the gateway from starting.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let (config, digest) = read(files)?;
        let family = IntCounterVec::new(
            Opts::new(
                "gateway_tls_reloads_total",
                "TLS certificate reloads by result.",
            ),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        Ok(TlsState {
            files: files.clone(),
            config: ArcSwap::from_pointee(config),
            digest: Mutex::new(digest),
            successes: family.with_label_values(&["success"]),
            failures: family.with_label_values(&["failure"]),
            family,
        })
    }

    /// An acceptor for the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// The reload counter family, for registration.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.family.clone())
    }

    /// Re-reads the files; swaps the configuration in when they changed and are usable.
    pub fn reload(&self) -> ReloadOutcome {
        match read(&self.files) {
            Ok((config, digest)) => {
                let mut current = self.digest.lock().unwrap_or_else(|p| p.into_inner());
                if *current == digest {
                    return ReloadOutcome::Unchanged;
                }
                *current = digest;
                self.config.store(Arc::new(config));
                self.successes.inc();
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                ReloadOutcome::Installed
            }
            Err(e) => {
                self.failures.inc();
                tracing::warn!(error = %e, "TLS certificate unusable; keeping the previous one");
                ReloadOutcome::Failed
            }
        }
    }
}

impl Reloadable for TlsState {
    fn reload(&self) -> ReloadOutcome {
        TlsState::reload(self)
    }
}
