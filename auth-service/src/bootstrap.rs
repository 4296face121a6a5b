//! The first registry admin (CONTRACT §1): from `RPC_BOOTSTRAP_ADMIN_EMAIL` /
//! `RPC_BOOTSTRAP_ADMIN_PASSWORD`, or with a generated password written once to a 0600 file.

use crate::passwords;
use crate::settings::BootstrapSettings;
use crate::store::{Audit, Store, StoreError, User};
use anyhow::Context;
use auth_token::Role;
use std::io::Write;

const DEFAULT_EMAIL: &str = "admin@registry.local";

pub async fn ensure_admin(store: &Store, settings: &BootstrapSettings) -> anyhow::Result<()> {
    let email = settings
        .email
        .as_deref()
        .unwrap_or(DEFAULT_EMAIL)
        .trim()
        .to_lowercase();
    if store.find_user_by_email(&email).await?.is_some() {
        return Ok(());
    }
    let admins = store
        .count_users_with_role(Role::RegistryAdmin.as_str())
        .await?;
    if settings.email.is_none() && admins > 0 {
        return Ok(());
    }
    let password = match &settings.password {
        Some(p) => p.expose().clone(),
        None => {
            let password = passwords::random_secret(24);
            write_once(&settings.password_file, &email, &password)?;
            println!(
                "bootstrap registry admin {email}: password written to {}",
                settings.password_file.display()
            );
            password
        }
    };
    let user = User {
        id: uuid::Uuid::new_v4(),
        email: email.clone(),
        password_hash: passwords::hash(password).await?,
        role: Role::RegistryAdmin.as_str().into(),
        operator_id: None,
        first_name: "Registry".into(),
        last_name: "Admin".into(),
        created_at: chrono::Utc::now(),
    };
    let audit = Audit {
        actor: "bootstrap".into(),
        role: None,
        action: "user.create",
        target: format!("user:{}", user.id),
        detail: serde_json::json!({"role": user.role}),
    };
    match store.create_user(&user, audit).await {
        // Another replica created it first.
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e).context("cannot create the bootstrap admin"),
    }
}

fn write_once(path: &std::path::Path, email: &str, password: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "{} exists but no registry admin does; remove it or set RPC_BOOTSTRAP_ADMIN_PASSWORD",
                path.display()
            )
        })?;
    writeln!(file, "email={email}\npassword={password}")?;
    Ok(())
}
