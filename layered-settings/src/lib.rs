//! Settings for every binary, in layers: `config/<service>.yaml` (if present), then the `--config` file (if given),
//! then environment variables `<SERVICE>__<SECTION>__<KEY>` (e.g. `REGISTRY__DATABASE__URL`).

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::Path;

/// Loads settings for `service`. Unknown keys and bad values fail with a message naming them.
pub fn load<T: DeserializeOwned>(service: &str, extra_file: Option<&Path>) -> anyhow::Result<T> {
    let prefix = service.to_uppercase().replace('-', "_");
    let mut builder = config::Config::builder()
        .add_source(config::File::with_name(&format!("config/{service}")).required(false));
    if let Some(path) = extra_file {
        builder = builder.add_source(config::File::from(path).required(true));
    }
    builder = builder.add_source(
        config::Environment::with_prefix(&prefix)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    builder
        .build()
        .and_then(|c| c.try_deserialize())
        .with_context(|| format!("invalid {service} settings"))
}

/// A secret value: usable, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
