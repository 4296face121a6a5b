//! The token a CEE application gets: the base64 of an RSASSA-PKCS1-v1_5 / SHA-512 signature
//! over `<operator SIRET>/<journey_type>/<driving licence>/<datetime>`, the datetime in ISO
//! 8601 UTC with milliseconds (rpc-behaviour §9.3). Anyone holding the public key, served at
//! `GET /{v}/policies/cee/public-key`, can check it (e.g. `openssl dgst -sha512 -verify`).

use super::request::{DrivingLicence, JourneyType};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::sha2::Sha512;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use std::fmt;

/// Size of a generated key, in bits.
const GENERATED_BITS: usize = 2048;

/// Why a signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA private key in PKCS#8 or PKCS#1 PEM")]
    NotAKey,
    #[error("an RSA key of at least 2048 bits is required")]
    TooSmall,
    #[error("cannot generate or encode an RSA key: {0}")]
    Rsa(String),
}

/// The registry's CEE signing key and the PEM of its public half.
pub struct CeeSigner {
    key: SigningKey<Sha512>,
    public_pem: String,
}

impl CeeSigner {
    /// A signer from a private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, as the reference's
    /// `APP_CEE_PRIVATE_KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| KeyError::NotAKey)?;
        Self::new(key)
    }

    /// A new 2048-bit key; returns the signer and the private key in PKCS#8 PEM, to keep.
    pub fn generate() -> Result<(Self, String), KeyError> {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, GENERATED_BITS)
            .map_err(|e| KeyError::Rsa(e.to_string()))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Rsa(e.to_string()))?
            .to_string();
        Ok((Self::new(key)?, pem))
    }

    fn new(key: RsaPrivateKey) -> Result<Self, KeyError> {
        use rsa::traits::PublicKeyParts;
        if key.size() * 8 < GENERATED_BITS {
            return Err(KeyError::TooSmall);
        }
        let public_pem = RsaPublicKey::from(&key)
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Rsa(e.to_string()))?;
        Ok(Self {
            key: SigningKey::<Sha512>::new(key),
            public_pem,
        })
    }

    /// The base64 signature of `message`.
    pub fn sign(&self, message: &str) -> String {
        STANDARD.encode(self.key.sign(message.as_bytes()).to_bytes())
    }

    /// The public key, SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }
}

impl fmt::Debug for CeeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CeeSigner(<private key>)")
    }
}

/// `2024-03-15T00:15:00.000Z`: JavaScript's `toISOString()`.
pub fn iso_millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The message a token signs.
pub fn token_message(
    siret: &str,
    journey_type: JourneyType,
    licence: &DrivingLicence,
    datetime: DateTime<Utc>,
) -> String {
    format!(
        "{siret}/{}/{}/{}",
        journey_type.as_str(),
        licence.as_str(),
        iso_millis(datetime)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;

    const TEST_KEY: &str = include_str!("../../../tests/cee-signing-key.test-only.pem");

    #[test]
    fn the_message_is_siret_type_licence_and_iso_datetime_with_milliseconds() {
        let licence = DrivingLicence::parse("051227308989").unwrap();
        let at = DateTime::parse_from_rfc3339("2024-03-15T01:15:00+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            token_message("13002526500013", JourneyType::Short, &licence, at),
            "13002526500013/short/051227308989/2024-03-15T00:15:00.000Z"
        );
    }

    #[test]
    fn tokens_verify_with_the_public_key_and_only_for_their_message() {
        let signer = CeeSigner::from_pem(TEST_KEY).expect("test key loads");
        let token = signer.sign("a/short/b/c");
        let public = RsaPublicKey::from_public_key_pem(signer.public_key_pem()).unwrap();
        let verifier = VerifyingKey::<Sha512>::new(public);
        let signature = Signature::try_from(STANDARD.decode(&token).unwrap().as_slice()).unwrap();
        assert!(verifier.verify(b"a/short/b/c", &signature).is_ok());
        assert!(verifier.verify(b"a/long/b/c", &signature).is_err());
        // PKCS#1 v1.5 is deterministic: the same message, the same token.
        assert_eq!(signer.sign("a/short/b/c"), token);
    }

    #[test]
    fn keys_that_are_not_rsa_private_keys_are_refused() {
        assert!(matches!(
            CeeSigner::from_pem("not a key"),
            Err(KeyError::NotAKey)
        ));
        let signer = CeeSigner::from_pem(TEST_KEY).unwrap();
        assert!(CeeSigner::from_pem(signer.public_key_pem()).is_err());
    }
}
