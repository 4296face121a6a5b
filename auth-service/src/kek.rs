//! Key-encryption keys (KEKs): the signing keys' private halves are stored sealed, so a
//! reader of the database (a backup, a replica, another service's role) cannot sign tokens.
//!
//! A sealed key is XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`) under a 32-byte KEK
//! from the configuration: a random 24-byte nonce per seal, then the ciphertext and its tag.
//! The key's `kid` is the associated data, so a sealed key copied onto another row does not
//! open. Each row records the name of the KEK that sealed it.
//!
//! `key_encryption_keys` lists named KEKs (`name:base64`); the first seals, every one opens.
//! Rotation: put a new KEK first, restart (auth-service re-seals every stored key under it at
//! start), then remove the old one (docs/operations.md). Without `key_encryption_keys`, the
//! embedded default (SQLite) generates one into `generated_kek_file` (mode 0600) on first
//! start: it then sits next to the database it protects, fine for one machine only.
//!
//! Never logged: KEKs and private keys. Errors name the KEK and the `kid`, nothing else.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Deserializer};
use std::path::Path;
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Binds a sealed value to its purpose and format as well as to its `kid`.
const AAD_PREFIX: &[u8] = b"rpc-auth signing key v1\0";

/// The configured KEKs, each `name:base64` (32 bytes once decoded). From YAML, a list; from
/// an environment variable, one string with the entries separated by commas.
#[derive(Clone, Default)]
pub struct KekList(Vec<String>);

impl KekList {
    pub fn new(entries: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(entries.into_iter().map(Into::into).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for KekList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let entries = match OneOrMany::deserialize(d)? {
            OneOrMany::One(joined) => joined.split(',').map(str::to_owned).collect(),
            OneOrMany::Many(entries) => entries,
        };
        Ok(Self(
            entries
                .into_iter()
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect(),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("key_encryption_keys entry {0} is not `name:base64`")]
    NotNamed(usize),
    #[error(
        "key_encryption_keys entry {0}: the name must be letters, digits, `-`, `_` or `.`, at most 64"
    )]
    BadName(usize),
    #[error("key_encryption_keys entry {index} ({name}): the key must be 32 bytes in base64")]
    BadKey { index: usize, name: String },
    #[error("key_encryption_keys names {0} twice")]
    Duplicate(String),
    #[error("key_encryption_keys is empty")]
    Empty,
}

/// Why a stored key does not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "signing key {kid} was sealed under key-encryption key \"{kek}\", and no configured \
         key-encryption key opens it: configure that key in key_encryption_keys \
         (docs/operations.md, \"Key-encryption keys\")"
    )]
    NoKek { kid: String, kek: String },
}

/// A signing key's private half as stored: sealed under the KEK named `kek`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub kek: String,
    pub bytes: Vec<u8>,
}

struct Kek {
    name: String,
    cipher: XChaCha20Poly1305,
}

/// The KEKs in use: the first seals, every one opens.
pub struct Keks {
    keys: Vec<Kek>,
}

impl std::fmt::Debug for Keks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        f.debug_struct("Keks").field("names", &names).finish()
    }
}

impl Keks {
    /// Parses `name:base64` entries; errors name the entry, never its key.
    pub fn parse(list: &KekList) -> Result<Self, KekError> {
        let mut keys: Vec<Kek> = Vec::new();
        for (index, entry) in list.0.iter().enumerate() {
            let (name, key) = entry.split_once(':').ok_or(KekError::NotNamed(index))?;
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && (name.chars()).all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid_name {
                return Err(KekError::BadName(index));
            }
            let bad_key = || KekError::BadKey {
                index,
                name: name.to_owned(),
            };
            let key = Zeroizing::new(STANDARD.decode(key.trim()).map_err(|_| bad_key())?);
            if key.len() != KEY_LEN {
                return Err(bad_key());
            }
            if keys.iter().any(|k| k.name == name) {
                return Err(KekError::Duplicate(name.to_owned()));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| bad_key())?;
            keys.push(Kek {
                name: name.to_owned(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(KekError::Empty);
        }
        Ok(Self { keys })
    }

    /// The configured KEKs; without any, the embedded default's generated one (SQLite only:
    /// a KEK generated next to a shared PostgreSQL would protect nothing and be lost with
    /// the machine).
    pub fn from_settings(settings: &crate::Settings) -> anyhow::Result<Self> {
        let configured = settings.key_encryption_keys.expose();
        if !configured.is_empty() {
            return Ok(Self::parse(configured)?);
        }
        anyhow::ensure!(
            settings.database.url.expose().starts_with("sqlite:"),
            "key_encryption_keys must be set when the database is PostgreSQL \
             (AUTH_SERVICE__KEY_ENCRYPTION_KEYS=name:base64; see docs/operations.md)"
        );
        load_or_generate(&settings.generated_kek_file)
    }

    /// The name of the KEK that seals.
    pub fn sealing_name(&self) -> &str {
        &self.keys[0].name
    }

    /// Seals `der`, the private key named `kid`, under the first KEK.
    pub fn seal(&self, kid: &str, der: &[u8]) -> anyhow::Result<Sealed> {
        let kek = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(kid);
        let sealed = kek
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: der,
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("cannot seal signing key {kid}"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(Sealed {
            kek: kek.name.clone(),
            bytes,
        })
    }

    /// Opens the private key `kid` sealed as `sealed`: with the KEK it names first, then with
    /// every other (a KEK renamed in the configuration still opens its keys).
    pub fn open(&self, kid: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let no_kek = || OpenError::NoKek {
            kid: kid.to_owned(),
            kek: sealed.kek.clone(),
        };
        if sealed.bytes.len() < NONCE_LEN {
            return Err(no_kek());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| no_kek())?;
        let aad = aad(kid);
        let named = self.keys.iter().filter(|k| k.name == sealed.kek);
        let others = self.keys.iter().filter(|k| k.name != sealed.kek);
        named
            .chain(others)
            .find_map(|kek| {
                let payload = Payload {
                    msg: ciphertext,
                    aad: &aad,
                };
                kek.cipher.decrypt(&nonce, payload).ok()
            })
            .map(Zeroizing::new)
            .ok_or_else(no_kek)
    }
}

fn aad(kid: &str) -> Vec<u8> {
    [AAD_PREFIX, kid.as_bytes()].concat()
}

/// A new `name:base64` entry of 32 random bytes.
pub fn generate_entry(name: &str) -> String {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    format!("{name}:{}", STANDARD.encode(key.as_ref()))
}

/// The embedded default's KEK: read from `path`, or generated there once (mode 0600).
/// Only the file's path is logged, never the key.
fn load_or_generate(path: &Path) -> anyhow::Result<Keks> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let entries = KekList::new(text.lines().map(str::trim).filter(|l| !l.is_empty()));
            return Keks::parse(&entries)
                .with_context(|| format!("the key-encryption key in {}", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let entry = Zeroizing::new(generate_entry("generated"));
    let keks = Keks::parse(&KekList::new([entry.as_str()]))?;
    let line = Zeroizing::new(format!("{}\n", entry.as_str()));
    rpc_service::secret_file::create(path, line.as_bytes())?;
    tracing::info!(
        path = %path.display(),
        "generated the key-encryption key of the signing keys (one machine only; set key_encryption_keys in production)"
    );
    Ok(keks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keks(names: &[&str]) -> (Keks, Vec<String>) {
        let entries: Vec<String> = names.iter().map(|n| generate_entry(n)).collect();
        (
            Keks::parse(&KekList::new(entries.clone())).unwrap(),
            entries,
        )
    }

    #[test]
    fn a_sealed_key_opens_under_its_kid_only() {
        let (keks, _) = keks(&["a"]);
        let sealed = keks.seal("kid-1", b"private").unwrap();
        assert_eq!(sealed.kek, "a");
        assert!(!sealed.bytes.windows(7).any(|w| w == b"private"));
        assert_eq!(keks.open("kid-1", &sealed).unwrap().as_slice(), b"private");
        // Moved onto another row, it does not open.
        let error = keks.open("kid-2", &sealed).unwrap_err().to_string();
        assert!(
            error.contains("kid-2") && error.contains("\"a\""),
            "{error}"
        );
        // Two seals of one key differ (a nonce each).
        assert_ne!(keks.seal("kid-1", b"private").unwrap(), sealed);
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let (old, old_entries) = keks(&["old"]);
        let sealed = old.seal("k", b"secret").unwrap();
        let both = KekList::new([generate_entry("new"), old_entries[0].clone()]);
        let both = Keks::parse(&both).unwrap();
        assert_eq!(both.sealing_name(), "new");
        assert_eq!(both.open("k", &sealed).unwrap().as_slice(), b"secret");
        assert_eq!(both.seal("k", b"secret").unwrap().kek, "new");
        let (other, _) = keks(&["old"]);
        assert!(other.open("k", &sealed).is_err(), "same name, other key");
    }

    #[test]
    fn bad_entries_are_refused_without_showing_the_key() {
        let cases = [
            (vec!["nokey"], "entry 0 is not `name:base64`"),
            (vec!["bad name:AAAA"], "entry 0: the name"),
            (
                vec!["short:c2hvcnQ="],
                "entry 0 (short): the key must be 32 bytes",
            ),
            (vec![":AAAA"], "entry 0: the name"),
        ];
        for (entries, expected) in cases {
            let error = Keks::parse(&KekList::new(entries)).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("c2hvcnQ"), "{error}");
        }
        let twice = KekList::new([generate_entry("a"), generate_entry("a")]);
        assert!(matches!(Keks::parse(&twice), Err(KekError::Duplicate(_))));
        assert!(matches!(
            Keks::parse(&KekList::default()),
            Err(KekError::Empty)
        ));
    }

    #[test]
    fn a_list_reads_from_yaml_or_from_one_comma_separated_string() {
        let (a, b) = (generate_entry("a"), generate_entry("b"));
        let from_string: KekList =
            serde_json::from_value(serde_json::json!(format!("{a}, {b}"))).expect("one string");
        let from_list: KekList = serde_json::from_value(serde_json::json!([a, b])).expect("a list");
        assert_eq!(from_string.0, from_list.0);
        assert_eq!(Keks::parse(&from_string).unwrap().sealing_name(), "a");
    }

    #[test]
    fn the_embedded_default_generates_a_kek_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("kek-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("nested/auth-kek.txt");
        let first = load_or_generate(&path).unwrap();
        let sealed = first.seal("k", b"secret").unwrap();
        let second = load_or_generate(&path).unwrap();
        assert_eq!(second.open("k", &sealed).unwrap().as_slice(), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn postgres_without_a_configured_kek_does_not_start() {
        let settings = crate::Settings {
            database: rpc_service::db::DatabaseSettings::new(
                "postgres://postgres@127.0.0.1/test",
                Some("auth"),
            ),
            generated_kek_file: "/nonexistent/never-written".into(),
            ..crate::Settings::default()
        };
        let error = Keks::from_settings(&settings).unwrap_err().to_string();
        assert!(error.contains("key_encryption_keys must be set"), "{error}");
    }
}
