//! Ed25519 signing keys (auth-service side) and the JWKS-built [`KeySet`] that verifies
//! credential tokens (gateway side). The gateway never holds a private key.

use crate::claims::{Claims, CredentialKind};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A private Ed25519 key with its `kid`. Lives only in auth-service.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PKCS#8 Ed25519 private key")]
    BadPrivateKey,
    #[error("could not encode the key: {0}")]
    Encode(String),
}

impl SigningKey {
    /// A fresh random key. Returns it with its PKCS#8 DER form, for storage.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?
            .as_bytes()
            .to_vec();
        Ok((Self::from_dalek(&key, &der), der))
    }

    /// Loads a key from its PKCS#8 DER form.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| KeyError::BadPrivateKey)?;
        Ok(Self::from_dalek(&key, der))
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey, der: &[u8]) -> Self {
        let public = key.verifying_key().to_bytes();
        Self {
            kid: kid_of(&public),
            encoding: EncodingKey::from_ed_der(der),
            public,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` as an EdDSA JWT whose header names this key and the kind's `typ`, issued
    /// by [`ISSUER`] for [`AUDIENCE`].
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some(claims.kind.typ().to_owned());
        let issued = Issued {
            claims,
            iss: Some(ISSUER.to_owned()),
            aud: Some(AUDIENCE.to_owned()),
        };
        jsonwebtoken::encode(&header, &issued, &self.encoding)
    }

    /// The public half as published after its retirement while live application tokens
    /// still depend on it: it then verifies application tokens only (see [`APPLICATION_ONLY`]).
    pub fn jwk_application_only(&self) -> Jwk {
        let mut jwk = self.jwk();
        jwk.common.key_operations = Some(vec![
            KeyOperations::Verify,
            KeyOperations::Other(APPLICATION_ONLY.to_owned()),
        ]);
        jwk
    }

    /// The public half, as published in the JWKS.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(self.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(self.public),
            }),
        }
    }
}

/// A `key_ops` value (RFC 7517 §4.3 allows others than the registered ones) marking a
/// retired key kept only for the non-expiring application tokens it signed: any other kind
/// of token signed by it is refused.
pub const APPLICATION_ONLY: &str = "rpc:application-tokens-only";

/// A stable key id derived from the public key, so every replica names a key the same way.
fn kid_of(public: &[u8; 32]) -> String {
    let digest = Sha256::digest(public);
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// Why a credential token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("token is malformed or its signature is wrong")]
    Invalid,
    #[error("token is signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("token has expired")]
    Expired,
}

/// The `iss` of every credential: auth-service.
pub const ISSUER: &str = "rpc:auth-service";

/// The `aud` of every credential: the gateway, where credentials are presented.
pub const AUDIENCE: &str = "rpc:gateway";

/// The `typ` of the tokens signed before tokens were typed by kind; still honoured in their
/// old form (no `iss`, no `aud`) so that application tokens, which never expire, keep working.
const UNTYPED: &str = "JWT";

/// What a token carries besides its [`Claims`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Issued<C> {
    #[serde(flatten)]
    claims: C,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// Public keys by `kid`, built from a JWKS document.
#[derive(Clone)]
pub struct KeySet {
    keys: HashMap<String, Verifier>,
    validation: Validation,
}

#[derive(Clone)]
struct Verifier {
    key: DecodingKey,
    application_only: bool,
}

impl KeySet {
    pub fn from_jwks(set: &JwkSet) -> Self {
        let keys = set
            .keys
            .iter()
            .filter(|jwk| matches!(jwk.common.key_algorithm, Some(KeyAlgorithm::EdDSA)))
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let application_only = jwk.common.key_operations.as_ref().is_some_and(|ops| {
                    ops.iter()
                        .any(|op| matches!(op, KeyOperations::Other(o) if o == APPLICATION_ONLY))
                });
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((
                    kid,
                    Verifier {
                        key,
                        application_only,
                    },
                ))
            })
            .collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked by `verify` against an injected clock; application tokens have none.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        Self { keys, validation }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Checks signature and expiry (`now` in unix seconds) and returns the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Invalid);
        }
        let kid = header.kid.ok_or(VerifyError::Invalid)?;
        let verifier = self
            .keys
            .get(&kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?;
        let Issued { claims, iss, aud } =
            jsonwebtoken::decode::<Issued<Claims>>(token, &verifier.key, &self.validation)
                .map_err(|_| VerifyError::Invalid)?
                .claims;
        if verifier.application_only && claims.kind != CredentialKind::Application {
            return Err(VerifyError::Invalid);
        }
        // RFC 8725: the type names the kind, the issuer and audience are ours; a token signed
        // before typing is honoured only in its old form.
        let well_typed = match header.typ.as_deref() {
            Some(UNTYPED) => iss.is_none() && aud.is_none(),
            Some(typ) => {
                typ == claims.kind.typ()
                    && iss.as_deref() == Some(ISSUER)
                    && aud.as_deref() == Some(AUDIENCE)
            }
            None => false,
        };
        if !well_typed {
            return Err(VerifyError::Invalid);
        }
        // Only application tokens live until blacklisted; every other kind has an expiry.
        match claims.exp {
            None if claims.kind != CredentialKind::Application => Err(VerifyError::Invalid),
            Some(exp) if exp <= now => Err(VerifyError::Expired),
            _ => Ok(claims),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::Role;

    fn claims(exp: Option<i64>) -> Claims {
        Claims {
            jti: "j1".into(),
            kind: CredentialKind::Application,
            sub: "app".into(),
            op: Some(7),
            role: Role::OperatorApplication,
            iat: 1_000,
            exp,
            client: None,
            uid: None,
            sid: None,
            csrf: None,
            siret: None,
        }
    }

    fn set_of(keys: &[&SigningKey]) -> KeySet {
        KeySet::from_jwks(&JwkSet {
            keys: keys.iter().map(|k| k.jwk()).collect(),
        })
    }

    #[test]
    fn a_signed_token_verifies_against_the_published_jwks() {
        let (key, der) = SigningKey::generate().unwrap();
        let reloaded = SigningKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(reloaded.kid(), key.kid());
        let token = key.sign(&claims(None)).unwrap();
        // The JWKS survives a JSON round trip, as it does over HTTP.
        let json = serde_json::to_string(&JwkSet {
            keys: vec![key.jwk()],
        })
        .unwrap();
        let set = KeySet::from_jwks(&serde_json::from_str(&json).unwrap());
        assert_eq!(set.verify(&token, 2_000).unwrap(), claims(None));
    }

    #[test]
    fn expiry_is_checked_against_the_given_clock() {
        let (key, _) = SigningKey::generate().unwrap();
        let set = set_of(&[&key]);
        let token = key.sign(&claims(Some(5_000))).unwrap();
        assert!(set.verify(&token, 4_999).is_ok());
        assert_eq!(set.verify(&token, 5_000), Err(VerifyError::Expired));
    }

    /// A token signed by `key` with `header` and `payload` as given, as a careless or
    /// compromised signer could make it.
    fn forged(key: &SigningKey, typ: Option<&str>, payload: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, &payload, &key.encoding).unwrap()
    }

    #[test]
    fn tokens_name_their_kind_issuer_and_audience() {
        let (key, _) = SigningKey::generate().unwrap();
        let mut access = claims(Some(5_000));
        access.kind = CredentialKind::Access;
        let token = key.sign(&access).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("access+jwt"));
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (&payload["iss"], &payload["aud"]),
            (&ISSUER.into(), &AUDIENCE.into())
        );
        assert_eq!(set_of(&[&key]).verify(&token, 0).unwrap(), access);
    }

    #[test]
    fn a_token_of_another_type_issuer_or_audience_is_refused() {
        let (key, _) = SigningKey::generate().unwrap();
        let set = set_of(&[&key]);
        let mut body = serde_json::to_value(claims(Some(5_000))).unwrap();
        body["iss"] = ISSUER.into();
        body["aud"] = AUDIENCE.into();
        assert!(
            set.verify(&forged(&key, Some("application+jwt"), body.clone()), 0)
                .is_ok()
        );
        let refused = |typ: Option<&str>, field: &str, value: serde_json::Value| {
            let mut body = body.clone();
            body[field] = value;
            set.verify(&forged(&key, typ, body), 0)
        };
        for (typ, field, value) in [
            // The type of another kind than the claims say.
            (Some("access+jwt"), "kind", "application".into()),
            (Some("application+jwt"), "kind", "access".into()),
            // Another issuer, another audience, or none.
            (
                Some("application+jwt"),
                "iss",
                "https://elsewhere.example".into(),
            ),
            (Some("application+jwt"), "aud", "rpc:auth-service".into()),
            (Some("application+jwt"), "iss", serde_json::Value::Null),
            (Some("application+jwt"), "aud", serde_json::Value::Null),
            // No type at all, or the untyped form with an issuer (not a token of ours).
            (None, "kind", "application".into()),
            (Some("JWT"), "kind", "application".into()),
        ] {
            assert_eq!(
                refused(typ, field, value.clone()),
                Err(VerifyError::Invalid),
                "{typ:?} {field} {value}"
            );
        }
    }

    #[test]
    fn every_kind_but_application_tokens_must_expire() {
        let (key, _) = SigningKey::generate().unwrap();
        let set = set_of(&[&key]);
        for kind in [
            CredentialKind::Access,
            CredentialKind::Refresh,
            CredentialKind::Agent,
            CredentialKind::Session,
        ] {
            let mut never = claims(None);
            never.kind = kind;
            assert_eq!(
                set.verify(&key.sign(&never).unwrap(), 0),
                Err(VerifyError::Invalid),
                "{kind:?}"
            );
            let mut expiring = claims(Some(5_000));
            expiring.kind = kind;
            assert!(
                set.verify(&key.sign(&expiring).unwrap(), 0).is_ok(),
                "{kind:?}"
            );
        }
        assert!(set.verify(&key.sign(&claims(None)).unwrap(), 0).is_ok());
    }

    #[test]
    fn tokens_signed_before_typing_are_honoured_in_their_old_form() {
        let (key, _) = SigningKey::generate().unwrap();
        let set = set_of(&[&key]);
        // What `sign` made before: jsonwebtoken's default `typ`, no issuer, no audience.
        let old =
            |claims: &Claims| forged(&key, Some("JWT"), serde_json::to_value(claims).unwrap());
        assert_eq!(set.verify(&old(&claims(None)), 0).unwrap(), claims(None));
        let mut refresh = claims(Some(5_000));
        refresh.kind = CredentialKind::Refresh;
        assert_eq!(set.verify(&old(&refresh), 0).unwrap(), refresh);
        refresh.exp = None;
        assert_eq!(set.verify(&old(&refresh), 0), Err(VerifyError::Invalid));
    }

    #[test]
    fn unknown_key_and_tampering_are_refused() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let token = other.sign(&claims(None)).unwrap();
        assert_eq!(
            set_of(&[&key]).verify(&token, 0),
            Err(VerifyError::UnknownKey(other.kid().to_owned()))
        );
        let good = key.sign(&claims(None)).unwrap();
        let (head, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        assert_eq!(
            set_of(&[&key]).verify(&forged, 0),
            Err(VerifyError::Invalid)
        );
        assert_eq!(
            set_of(&[&key]).verify("not a jwt", 0),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn an_application_only_key_verifies_application_tokens_only() {
        let (key, _) = SigningKey::generate().unwrap();
        let json = serde_json::to_string(&JwkSet {
            keys: vec![key.jwk_application_only()],
        })
        .unwrap();
        let set = KeySet::from_jwks(&serde_json::from_str(&json).unwrap());
        let app = key.sign(&claims(None)).unwrap();
        assert!(set.verify(&app, 0).is_ok());
        let agent = Claims {
            kind: CredentialKind::Agent,
            ..claims(Some(5_000))
        };
        let agent = key.sign(&agent).unwrap();
        assert_eq!(set.verify(&agent, 0), Err(VerifyError::Invalid));
        assert!(set_of(&[&key]).verify(&agent, 0).is_ok());
    }

    #[test]
    fn a_symmetric_token_cannot_pass_as_a_credential() {
        let (key, _) = SigningKey::generate().unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let hs =
            jsonwebtoken::encode(&header, &claims(None), &EncodingKey::from_secret(b"x")).unwrap();
        assert_eq!(set_of(&[&key]).verify(&hs, 0), Err(VerifyError::Invalid));
    }
}
