//! The signing keys: loaded from the database at start, one created on first start. The
//! newest active key signs; every active key is published in the JWKS.

use crate::store::Store;
use anyhow::Context;
use auth_token::{Claims, SigningKey};
use jsonwebtoken::jwk::JwkSet;

pub struct Keyring {
    signing: Vec<SigningKey>,
    jwks: JwkSet,
}

impl Keyring {
    pub async fn load_or_create(store: &Store) -> anyhow::Result<Self> {
        let mut rows = store.active_keys().await?;
        if rows.is_empty() {
            let (key, der) = SigningKey::generate().context("cannot generate a signing key")?;
            store.insert_key(key.kid(), &der).await?;
            tracing::info!(kid = key.kid(), "created the first signing key");
            rows = store.active_keys().await?;
        }
        let signing = rows
            .iter()
            .map(|row| SigningKey::from_pkcs8_der(&row.private_der))
            .collect::<Result<Vec<_>, _>>()
            .context("a stored signing key is unreadable")?;
        let jwks = JwkSet {
            keys: signing.iter().map(SigningKey::jwk).collect(),
        };
        Ok(Self { signing, jwks })
    }

    /// Signs with the newest key.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        match self.signing.first() {
            Some(key) => key.sign(claims),
            None => Err(jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey.into()),
        }
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}
