//! A throw-away test CA and a server certificate it signs, for `serve --tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ServeError;

/// File name of the CA certificate (PEM) that [`TestCa::generate`] writes.
pub const CA_FILE: &str = "ca.pem";

/// A generated CA (its certificate written to a file clients trust) and a server
/// certificate for `localhost` and the given addresses, signed by it.
pub struct TestCa {
    /// The CA certificate in DER.
    pub ca_der: CertificateDer<'static>,
    /// Where the CA certificate is written as PEM.
    pub ca_path: PathBuf,
    server_der: CertificateDer<'static>,
    server_key: Vec<u8>,
}

fn tls_err(what: &str) -> impl Fn(rcgen::Error) -> ServeError + '_ {
    move |e| ServeError::Tls(format!("{what}: {e}"))
}

impl TestCa {
    /// Makes a new CA and a server certificate valid for `localhost` and each of `names`
    /// (host names or IP addresses); writes the CA's PEM to `dir/ca.pem`.
    pub fn generate(dir: &Path, names: &[String]) -> Result<Self, ServeError> {
        let ca_key = KeyPair::generate().map_err(tls_err("generate CA key"))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(tls_err("CA parameters"))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ulxc-harness test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(tls_err("sign CA certificate"))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut sans = vec!["localhost".to_owned()];
        sans.extend(names.iter().filter(|n| *n != "localhost").cloned());
        let server_key = KeyPair::generate().map_err(tls_err("generate server key"))?;
        let mut params = CertificateParams::new(sans).map_err(tls_err("server parameters"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "ulxc-harness serve");
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .map_err(tls_err("sign server certificate"))?;

        std::fs::create_dir_all(dir).map_err(|error| ServeError::Io {
            what: "create directory".into(),
            target: dir.display().to_string(),
            error,
        })?;
        let ca_path = dir.join(CA_FILE);
        std::fs::write(&ca_path, ca_cert.pem()).map_err(|error| ServeError::Io {
            what: "write".into(),
            target: ca_path.display().to_string(),
            error,
        })?;
        Ok(TestCa {
            ca_der: ca_cert.der().clone(),
            ca_path,
            server_der: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    /// The rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ServeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServeError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .map_err(|e| ServeError::Tls(e.to_string()))?;
        Ok(Arc::new(cfg))
    }
}
