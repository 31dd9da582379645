//! Detached OpenPGP signatures (`FILE.asc`) checked against a keyring of armored public
//! keys, with the pure-Rust `pgp` crate.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};

use super::DownloadError;

/// The public keys an image must be signed by.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    path: PathBuf,
}

impl Keyring {
    /// Reads one or more armored public keys from `path`; every key's self-signatures
    /// must be valid.
    pub fn load(path: &Path) -> Result<Self, DownloadError> {
        let bad = |why: String| DownloadError::Keyring {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad(
                    "it does not exist; put the image server's armored public key there, \
                     give --keyring FILE, or skip verification with --no-validate"
                        .into(),
                )
            } else {
                bad(format!("cannot read it: {e}"))
            }
        })?;
        // A keyring file may hold several armor blocks one after the other.
        const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
        let text = String::from_utf8_lossy(&text);
        let starts: Vec<usize> = text.match_indices(BEGIN).map(|(i, _)| i).collect();
        let blocks: Vec<&str> = starts
            .iter()
            .enumerate()
            .map(|(n, &start)| &text[start..starts.get(n + 1).copied().unwrap_or(text.len())])
            .collect();
        if blocks.is_empty() {
            return Err(bad(
                "it holds no armored OpenPGP public key (-----BEGIN PGP PUBLIC KEY BLOCK-----)"
                    .into(),
            ));
        }
        let mut keys = Vec::new();
        for block in blocks {
            let (iter, _) = SignedPublicKey::from_armor_many(block.as_bytes())
                .map_err(|e| bad(format!("not an armored OpenPGP public key: {e}")))?;
            for k in iter {
                let k = k.map_err(|e| bad(format!("not an armored OpenPGP public key: {e}")))?;
                k.verify()
                    .map_err(|e| bad(format!("a key's self-signature is invalid: {e}")))?;
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Err(bad("it holds no public key".into()));
        }
        Ok(Keyring {
            keys,
            path: path.to_path_buf(),
        })
    }

    /// Where the keys came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `file` against its detached armored signature `sig` (both local files).
    pub fn verify_file(&self, file: &Path, sig: &Path) -> Result<(), DownloadError> {
        let bad = |why: String| DownloadError::Signature {
            file: file.to_path_buf(),
            why,
        };
        let sig_text = std::fs::read(sig).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad(format!("its signature {} is missing", sig.display()))
            } else {
                bad(format!("cannot read its signature {}: {e}", sig.display()))
            }
        })?;
        let (signature, _) = DetachedSignature::from_armor_single(&sig_text[..]).map_err(|e| {
            bad(format!(
                "{} is not an armored OpenPGP signature: {e}",
                sig.display()
            ))
        })?;
        let issuers: Vec<String> = signature
            .signature
            .issuer()
            .iter()
            .map(|k| k.to_string())
            .collect();
        for key in &self.keys {
            let data = || {
                std::fs::File::open(file)
                    .map(BufReader::new)
                    .map_err(|e| bad(format!("cannot read it: {e}")))
            };
            if signature
                .signature
                .verify(&key.primary_key, data()?)
                .is_ok()
            {
                return Ok(());
            }
            for sub in &key.public_subkeys {
                if sub.verify(&key.primary_key).is_ok()
                    && signature.signature.verify(&sub.key, data()?).is_ok()
                {
                    return Ok(());
                }
            }
        }
        Err(bad(format!(
            "its signature (by key {}) does not verify with any key in {}: the file was altered or signed by a key you do not trust",
            if issuers.is_empty() { "unknown".to_string() } else { issuers.join(", ") },
            self.path.display()
        )))
    }
}
