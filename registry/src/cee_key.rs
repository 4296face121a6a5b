//! Start-up: the key that signs CEE tokens. From `cee.private_key_pem` when set; otherwise
//! (the embedded default) from `cee.generated_key_file`, generated there on first start with
//! mode 0600. Only the file's path is logged, never the key.

use crate::domain::cee::CeeSigner;
use crate::settings::CeeSettings;
use anyhow::Context;
use std::path::Path;

/// The configured signer, or the embedded default's.
pub fn signer(settings: &CeeSettings) -> anyhow::Result<CeeSigner> {
    let pem = settings.private_key_pem.expose();
    if !pem.trim().is_empty() {
        return CeeSigner::from_pem(pem).context("cee.private_key_pem");
    }
    load_or_generate(&settings.generated_key_file)
}

fn load_or_generate(path: &Path) -> anyhow::Result<CeeSigner> {
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            return CeeSigner::from_pem(&pem)
                .with_context(|| format!("the CEE signing key in {}", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let (signer, pem) = CeeSigner::generate().context("cannot generate a CEE signing key")?;
    rpc_service::secret_file::create(path, pem.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the CEE signing key (set cee.private_key_pem in production)");
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_generates_a_key_once_and_reuses_it() {
        let dir = std::env::temp_dir().join(format!("cee-key-{}", uuid::Uuid::new_v4().simple()));
        let settings = CeeSettings {
            generated_key_file: dir.join("nested/cee-signing-key.pem"),
            ..CeeSettings::default()
        };
        let first = signer(&settings).expect("generated");
        let second = signer(&settings).expect("loaded");
        assert_eq!(first.public_key_pem(), second.public_key_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&settings.generated_key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_configured_key_wins_and_a_bad_one_fails_naming_the_setting() {
        let settings = CeeSettings {
            private_key_pem: layered_settings::Secret::new(
                include_str!("../tests/cee-signing-key.test-only.pem").to_owned(),
            ),
            generated_key_file: "/nonexistent/never-written.pem".into(),
            ..CeeSettings::default()
        };
        assert!(signer(&settings).is_ok());
        let bad = CeeSettings {
            private_key_pem: layered_settings::Secret::new("junk".to_owned()),
            ..settings
        };
        let error = format!("{:#}", signer(&bad).unwrap_err());
        assert!(error.contains("cee.private_key_pem"), "{error}");
    }
}
