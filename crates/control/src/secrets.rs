//! AccessKey secrets at rest: sealed with XChaCha20-Poly1305 under a master key kept in a
//! file of its own (mode 0600), so that a copy of the database alone reveals no secret. The
//! AccessKeyId is the associated data: a sealed secret moved to another key's row does not
//! open.
//!
//! The server needs the secrets themselves (a signature is an HMAC keyed by the secret), so
//! they are encrypted, not hashed.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngExt as _;

use crate::{ControlError, Result};

/// What a sealed secret starts with (the format's version).
const SEALED: &str = "xc1:";

/// The master key.
#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// The key in `path` (64 hex digits), created with a fresh random key (mode 0600) when
    /// the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<MasterKey> {
        let failed = |what: &str, e: std::io::Error| {
            ControlError::Storage(format!("{what} the key file {}: {e}", path.display()))
        };
        match std::fs::read_to_string(path) {
            Ok(text) => MasterKey::from_hex(text.trim()).ok_or_else(|| {
                ControlError::Storage(format!(
                    "the key file {} is not 64 hex digits",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::rng().random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| failed("cannot create", e))?;
                file.write_all(hex::encode(key).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| failed("cannot write", e))?;
                Ok(MasterKey::from_bytes(&key))
            }
            Err(e) => Err(failed("cannot read", e)),
        }
    }

    /// A key from its 64 hex digits.
    pub fn from_hex(text: &str) -> Option<MasterKey> {
        let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
        Some(MasterKey::from_bytes(&bytes))
    }

    fn from_bytes(key: &[u8; 32]) -> MasterKey {
        MasterKey(XChaCha20Poly1305::new(key.into()))
    }

    /// Seals `secret` for the row of `access_key_id`.
    pub(crate) fn seal(&self, access_key_id: &str, secret: &str) -> String {
        let nonce: [u8; 24] = rand::rng().random();
        let sealed = self
            .0
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: access_key_id.as_bytes(),
                },
            )
            .expect("encryption into a vector cannot fail");
        format!("{SEALED}{}{}", hex::encode(nonce), hex::encode(sealed))
    }

    /// Opens a stored secret of the row of `access_key_id`.
    pub(crate) fn open(&self, access_key_id: &str, stored: &str) -> Result<String> {
        let broken = || {
            ControlError::Storage(format!(
                "the secret of {access_key_id} does not open with this key file"
            ))
        };
        let bytes = stored
            .strip_prefix(SEALED)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() > 24)
            .ok_or_else(broken)?;
        let (nonce, sealed) = bytes.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| broken())?;
        let plain = self
            .0
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: access_key_id.as_bytes(),
                },
            )
            .map_err(|_| broken())?;
        String::from_utf8(plain).map_err(|_| broken())
    }

    /// Whether a stored value is sealed (stores written before sealing hold plain secrets,
    /// sealed when the store is opened).
    pub(crate) fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_row() {
        let key = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        let other = MasterKey::from_hex(&"22".repeat(32)).unwrap();
        let sealed = key.seal("LTAIa", "the secret");
        assert!(!sealed.contains("the secret"));
        assert_ne!(
            sealed,
            key.seal("LTAIa", "the secret"),
            "a fresh nonce each time"
        );
        assert_eq!(key.open("LTAIa", &sealed).unwrap(), "the secret");
        assert!(
            key.open("LTAIb", &sealed).is_err(),
            "bound to its AccessKeyId"
        );
        assert!(other.open("LTAIa", &sealed).is_err(), "bound to its key");
        assert!(key.open("LTAIa", "the secret").is_err());
        assert!(MasterKey::from_hex("abc").is_none());
    }
}
