//! The Ed25519 keys of issued tokens: PEM files in (OpenSSL's PKCS#8 and SPKI, as
//! `openssl genpkey -algorithm ed25519` writes them), key ids out, and `keygen`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::version4::V4;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::key_files::{self, KeyError, Kind};

/// The file names `keygen` writes.
pub(crate) const SIGNING_KEY: &str = "signing.key";
/// The public half, for `tokens.verification_key_files` on every node.
pub(crate) const PUBLIC_KEY: &str = "signing.pub";

/// The key id of a public key: the base64url SHA-256 of its 32 raw bytes, first 16
/// characters. The same on every node for the same key, so tokens name their key.
pub(crate) fn key_id(raw: &[u8]) -> String {
    let mut id = URL_SAFE_NO_PAD.encode(Sha256::digest(raw));
    id.truncate(16);
    id
}

/// A public key that verifies tokens.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub(crate) kid: String,
    pub(crate) key: AsymmetricPublicKey<V4>,
}

impl VerifyingKey {
    fn from_raw(raw: &[u8], path: &Path) -> Result<VerifyingKey, KeyError> {
        let key = AsymmetricPublicKey::<V4>::from(raw).map_err(|_| KeyError::Invalid {
            path: path.to_path_buf(),
            message: "not an Ed25519 public key",
        })?;
        Ok(VerifyingKey {
            kid: key_id(raw),
            key,
        })
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.kid)
    }
}

/// The key that signs tokens, with its public half. `Debug` shows only the key id.
pub(crate) struct SigningKey {
    pub(crate) secret: AsymmetricSecretKey<V4>,
    pub(crate) public: VerifyingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public.kid)
    }
}

/// Reads a signing key (PKCS#8 PEM, `PRIVATE KEY`) that only its owner and group may read
/// and only its owner may write (see [`key_files`]).
pub(crate) fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = key_files::read(path, Kind::Signing)?;
    let pair = ed25519_compact::KeyPair::from_pem(&pem).map_err(|_| KeyError::Invalid {
        path: path.to_path_buf(),
        message: "no Ed25519 private key (PKCS#8 PEM, as `kube-ldap-webhook keygen` or \
                  `openssl genpkey -algorithm ed25519` write it)",
    })?;
    let invalid = || KeyError::Invalid {
        path: path.to_path_buf(),
        message: "the Ed25519 private key is unusable",
    };
    let secret = AsymmetricSecretKey::<V4>::from(pair.sk.as_ref()).map_err(|_| invalid())?;
    let public = VerifyingKey::from_raw(pair.pk.as_ref(), path)?;
    Ok(SigningKey { secret, public })
}

/// Reads a public key (SPKI PEM, `PUBLIC KEY`) that others cannot replace.
pub(crate) fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = key_files::read(path, Kind::Verification)?;
    if pem.contains("PRIVATE KEY-----") {
        return Err(KeyError::Invalid {
            path: path.to_path_buf(),
            message: "holds a private key: list the public key (signing.pub) here, and keep \
                      the private key on the nodes that sign",
        });
    }
    let pk = ed25519_compact::PublicKey::from_pem(&pem).map_err(|_| KeyError::Invalid {
        path: path.to_path_buf(),
        message: "no Ed25519 public key (SPKI PEM `PUBLIC KEY`, as keygen writes signing.pub)",
    })?;
    VerifyingKey::from_raw(pk.as_ref(), path)
}

/// `kube-ldap-webhook keygen --out DIR`: a new key pair, `DIR/signing.key` (mode 0600,
/// created exclusively) and `DIR/signing.pub`. Existing files are never overwritten.
/// Returns the new key's id.
pub fn keygen(dir: &Path) -> Result<String, KeyError> {
    let pair = ed25519_compact::KeyPair::generate();
    let secret_pem = Zeroizing::new(pair.sk.to_pem());
    write_pair(dir, &secret_pem, &pair.pk.to_pem())?;
    Ok(key_id(pair.pk.as_ref()))
}

/// Writes a new key pair into `dir` (created, mode 0700, when missing): `signing.key`
/// (mode 0600, created exclusively) and `signing.pub`. Nothing is overwritten, and a
/// failure leaves neither file behind. Every algorithm's `keygen` ends here.
pub(crate) fn write_pair(dir: &Path, secret_pem: &str, public_pem: &str) -> Result<(), KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let (key_path, pub_path) = (dir.join(SIGNING_KEY), dir.join(PUBLIC_KEY));
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let create = |path: &Path, mode: u32| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
    };
    let written = create(&key_path, 0o600).and_then(|mut f| {
        f.write_all(secret_pem.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(KeyError::Exists { path: key_path });
        }
        let _ = std::fs::remove_file(&key_path);
        return Err(KeyError::Io {
            path: key_path,
            source: e,
        });
    }
    let written = create(&pub_path, 0o644).and_then(|mut f| {
        f.write_all(public_pem.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        // Without its public half the new private key is of no use: leave nothing behind.
        let _ = std::fs::remove_file(&key_path);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(KeyError::Exists { path: pub_path });
        }
        return Err(KeyError::Io {
            path: pub_path,
            source: e,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_writes_a_private_key_only_its_owner_reads_and_a_matching_public_key() {
        let d = tempfile::tempdir().unwrap();
        let kid = keygen(d.path()).unwrap();
        let mode = std::fs::metadata(d.path().join(SIGNING_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sk = load_signing_key(&d.path().join(SIGNING_KEY)).unwrap();
        let pk = load_verifying_key(&d.path().join(PUBLIC_KEY)).unwrap();
        assert_eq!(sk.public.kid, kid);
        assert_eq!(pk.kid, kid);
        assert_eq!(kid.len(), 16);
    }

    #[test]
    fn keygen_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        keygen(d.path()).unwrap();
        let before = std::fs::read(d.path().join(SIGNING_KEY)).unwrap();
        assert!(matches!(keygen(d.path()), Err(KeyError::Exists { .. })));
        std::fs::remove_file(d.path().join(SIGNING_KEY)).unwrap();
        assert!(
            matches!(keygen(d.path()), Err(KeyError::Exists { .. })),
            "signing.pub alone also stops it"
        );
        assert!(!d.path().join(SIGNING_KEY).exists());
        assert_ne!(before.len(), 0);
    }

    #[test]
    fn a_private_key_is_refused_where_a_public_key_belongs_and_the_reverse() {
        let d = tempfile::tempdir().unwrap();
        keygen(d.path()).unwrap();
        let e = load_verifying_key(&d.path().join(SIGNING_KEY)).unwrap_err();
        assert!(e.to_string().contains("holds a private key"), "{e}");
        assert!(load_signing_key(&d.path().join(PUBLIC_KEY)).is_err());
    }

    #[test]
    fn errors_and_debug_never_show_key_material() {
        let d = tempfile::tempdir().unwrap();
        keygen(d.path()).unwrap();
        let pem = std::fs::read_to_string(d.path().join(SIGNING_KEY)).unwrap();
        let body: String = pem.lines().nth(1).unwrap().to_string();
        let sk = load_signing_key(&d.path().join(SIGNING_KEY)).unwrap();
        assert!(!format!("{sk:?}").contains(&body));
        std::fs::write(d.path().join("bad.pub"), &pem[..pem.len() / 2]).unwrap();
        let e = load_verifying_key(&d.path().join("bad.pub")).unwrap_err();
        assert!(!e.to_string().contains(&body[..20]), "{e}");
    }

    #[test]
    fn key_ids_are_sixteen_base64url_characters_of_the_sha256() {
        // SHA-256 of 32 zero bytes is 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925.
        assert_eq!(key_id(&[0u8; 32]), "Zmh6rfhivXdsj8GL");
    }
}
