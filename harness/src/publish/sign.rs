//! Signing keys and armored detached signatures (`FILE.asc`) with the pure-Rust `pgp` crate.

use std::path::{Path, PathBuf};

use pgp::composed::{
    ArmorOptions, Deserializable, DetachedSignature, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::Password;

use super::{io, PublishError};

/// File name of the armored secret signing key written by [`keygen`].
pub const SECRET_KEY_FILE: &str = "signing.key";
/// File name of the armored public key (the keyring clients trust) written by [`keygen`].
pub const PUBLIC_KEY_FILE: &str = "trusted.asc";

fn pgp_err(what: impl Into<String>) -> impl FnOnce(pgp::errors::Error) -> PublishError {
    let what = what.into();
    move |e| PublishError::Pgp {
        what,
        message: e.to_string(),
    }
}

/// Generates an Ed25519 signing key with user id `uid` and writes `signing.key` (mode
/// 0600) and `trusted.asc` into `dir`; returns both paths. Refuses to overwrite a key.
pub fn keygen(dir: &Path, uid: &str) -> Result<(PathBuf, PathBuf), PublishError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| io("create directory", dir, e))?;
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(uid.into());
    let mut rng = rand::thread_rng();
    let secret = params
        .build()
        .map_err(|e| PublishError::Pgp {
            what: "key parameters".into(),
            message: e.to_string(),
        })?
        .generate(&mut rng)
        .map_err(pgp_err("generate key"))?;
    let signed = secret
        .sign(&mut rng, &Password::empty())
        .map_err(pgp_err("self-sign key"))?;
    let secret_text = signed
        .to_armored_string(ArmorOptions::default())
        .map_err(pgp_err("armor secret key"))?;
    let public_text = SignedPublicKey::from(signed)
        .to_armored_string(ArmorOptions::default())
        .map_err(pgp_err("armor public key"))?;
    let secret_path = dir.join(SECRET_KEY_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .map_err(|e| io("create (it must not exist yet)", &secret_path, e))?;
    f.write_all(secret_text.as_bytes())
        .map_err(|e| io("write", &secret_path, e))?;
    let public_path = dir.join(PUBLIC_KEY_FILE);
    std::fs::write(&public_path, public_text).map_err(|e| io("write", &public_path, e))?;
    Ok((secret_path, public_path))
}

/// Reads an armored secret key (unprotected, as [`keygen`] writes it).
pub fn load_secret_key(path: &Path) -> Result<SignedSecretKey, PublishError> {
    let text = std::fs::read(path).map_err(|e| io("read", path, e))?;
    let (key, _) = SignedSecretKey::from_armor_single(&text[..])
        .map_err(pgp_err(format!("read secret key {}", path.display())))?;
    key.verify()
        .map_err(pgp_err(format!("check secret key {}", path.display())))?;
    Ok(key)
}

/// `FILE.asc`.
fn asc(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".asc");
    PathBuf::from(s)
}

/// Writes the armored detached signature `FILE.asc` of `file`; returns its path.
pub fn sign_file(key: &SignedSecretKey, file: &Path) -> Result<PathBuf, PublishError> {
    let data = std::fs::File::open(file).map_err(|e| io("open", file, e))?;
    let sig = DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        std::io::BufReader::new(data),
    )
    .map_err(pgp_err(format!("sign {}", file.display())))?;
    let text = sig
        .to_armored_string(ArmorOptions::default())
        .map_err(pgp_err("armor signature"))?;
    let out = asc(file);
    let tmp = out.with_extension("asc.tmp");
    std::fs::write(&tmp, text).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, &out).map_err(|e| io("rename to", &out, e))?;
    Ok(out)
}

/// Checks `file` against `FILE.asc` with the armored public key(s) in `keyring`.
pub fn verify_file(keyring: &Path, file: &Path) -> Result<(), PublishError> {
    let bad = |message: String| PublishError::BadSignature {
        file: file.to_path_buf(),
        message,
    };
    let text = std::fs::read(keyring).map_err(|e| io("read", keyring, e))?;
    let (keys, _) = SignedPublicKey::from_armor_many(&text[..])
        .map_err(pgp_err(format!("read keyring {}", keyring.display())))?;
    let keys: Vec<SignedPublicKey> = keys
        .collect::<Result<_, _>>()
        .map_err(pgp_err(format!("read keyring {}", keyring.display())))?;
    let sig_path = asc(file);
    let sig_text = std::fs::read(&sig_path).map_err(|e| io("read", &sig_path, e))?;
    let (sig, _) = DetachedSignature::from_armor_single(&sig_text[..])
        .map_err(|e| bad(format!("{}: {e}", sig_path.display())))?;
    let data = std::fs::read(file).map_err(|e| io("read", file, e))?;
    let mut last = String::from("the keyring holds no key");
    for k in &keys {
        match sig.verify(k, &data[..]) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(bad(last))
}
