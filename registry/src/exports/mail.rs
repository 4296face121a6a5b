//! The mail that tells an export's recipients it is built (or failed), sent through an SMTP
//! relay with `lettre`: one message per recipient, so no one sees the others' addresses.
//!
//! Addresses are personal data: they are never logged, and neither is an SMTP error's text
//! (a relay's refusal often quotes the address); [`MailError`] keeps its kind and code only.

use crate::domain::lifecycle::export::ExportStatus;
use crate::settings::{MailSettings, MailTls};
use crate::store::lifecycle::exports::ExportRecord;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use std::time::Duration;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends export notices.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Why a notice was not sent, without the relay's words.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("a recipient address no longer parses")]
    Address,
    #[error("cannot build the message")]
    Message,
    #[error("SMTP {kind} error{}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
    Smtp {
        kind: &'static str,
        code: Option<String>,
    },
}

impl Mailer {
    /// The mailer `settings` describe; `None` when they name no host.
    pub fn new(settings: &MailSettings) -> anyhow::Result<Option<Self>> {
        if settings.host.is_empty() {
            return Ok(None);
        }
        let from: Mailbox = settings
            .from
            .parse()
            .with_context(|| format!("exports.mail.from is not an address: {:?}", settings.from))?;
        let builder = match settings.tls {
            MailTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
            #[cfg(feature = "smtp-tls")]
            MailTls::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .context("exports.mail.host")?
            }
            #[cfg(feature = "smtp-tls")]
            MailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)
                .context("exports.mail.host")?,
            #[cfg(not(feature = "smtp-tls"))]
            MailTls::Starttls | MailTls::Tls => anyhow::bail!(
                "exports.mail.tls is {:?}, but this registry was built without TLS for SMTP \
                 (build it with `--features registry/smtp-tls`, or set exports.mail.tls: none)",
                settings.tls
            ),
        };
        let mut builder = builder.port(settings.port).timeout(Some(SMTP_TIMEOUT));
        if !settings.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                settings.username.clone(),
                settings.password.expose().clone(),
            ));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }

    /// Mails every recipient of `export` its notice, `link` being where to download it.
    pub async fn send_notice(&self, export: &ExportRecord, link: &str) -> Result<(), MailError> {
        let (subject, body) = notice(export, link);
        for recipient in &export.recipients {
            let to: Mailbox = recipient.parse().map_err(|_| MailError::Address)?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(subject.clone())
                .header(ContentType::TEXT_PLAIN)
                .body(body.clone())
                .map_err(|_| MailError::Message)?;
            self.transport.send(message).await.map_err(smtp_error)?;
        }
        Ok(())
    }
}

fn smtp_error(e: lettre::transport::smtp::Error) -> MailError {
    let kind = if e.is_permanent() {
        "permanent"
    } else if e.is_transient() {
        "transient"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_client() {
        "client"
    } else {
        "connection"
    };
    MailError::Smtp {
        kind,
        code: e.status().map(|code| code.to_string()),
    }
}

/// The subject and text of `export`'s notice, its dates in the export's time zone.
pub fn notice(export: &ExportRecord, link: &str) -> (String, String) {
    let tz: Tz = export.tz.parse().unwrap_or(chrono_tz::Europe::Paris);
    let local = |at: DateTime<Utc>| at.with_timezone(&tz).format("%d/%m/%Y %H:%M").to_string();
    let period = format!(
        "les trajets commencés du {} au {} (heure de {})",
        local(export.filter.start),
        local(export.filter.end),
        export.tz
    );
    let signature = "Registre de preuve de covoiturage";
    if export.status == ExportStatus::Success {
        let rows = export.row_count.unwrap_or(0);
        let until = export
            .expires_at
            .map(|at| format!(" jusqu'au {}", local(at)))
            .unwrap_or_default();
        (
            "Votre export de trajets est prêt".to_owned(),
            format!(
                "Bonjour,\n\nL'export {} ({period}) est prêt : {rows} trajets.\n\n\
                 Il se télécharge{until}, avec un accès à l'API du registre, à l'adresse :\n\
                 {link}\n\n{signature}\n",
                export.uuid
            ),
        )
    } else {
        (
            "Votre export de trajets a échoué".to_owned(),
            format!(
                "Bonjour,\n\nL'export {} ({period}) n'a pas pu être construit. \
                 Vous pouvez en demander un nouveau.\n\n{signature}\n",
                export.uuid
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::export::ExportTarget;
    use crate::store::lifecycle::exports::ExportFilter;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn export(status: ExportStatus) -> ExportRecord {
        ExportRecord {
            uuid: uuid::Uuid::nil(),
            target: ExportTarget::Operator,
            status,
            owner_operator_id: Some(1),
            tz: "Europe/Paris".to_owned(),
            filter: ExportFilter {
                operator_ids: vec![1],
                start: at("2026-04-30T22:00:00Z"),
                end: at("2026-05-31T22:00:00Z"),
            },
            recipients: vec!["ops@example.org".to_owned()],
            file_name: Some("x.zip".to_owned()),
            row_count: Some(42),
            error: None,
            created_at: at("2026-06-10T10:00:00Z"),
            completed_at: Some(at("2026-06-10T10:01:00Z")),
            expires_at: Some(at("2026-06-17T10:01:00Z")),
        }
    }

    #[test]
    fn a_ready_notice_gives_the_link_the_count_and_the_deadline_in_local_time() {
        let (subject, body) = notice(&export(ExportStatus::Success), "https://api/x/download");
        assert_eq!(subject, "Votre export de trajets est prêt");
        assert!(
            body.contains("00000000-0000-0000-0000-000000000000"),
            "{body}"
        );
        assert!(
            body.contains("du 01/05/2026 00:00 au 01/06/2026 00:00"),
            "{body}"
        );
        assert!(body.contains("42 trajets"), "{body}");
        assert!(body.contains("jusqu'au 17/06/2026 12:01"), "{body}");
        assert!(body.contains("\nhttps://api/x/download\n"), "{body}");
        assert!(!body.contains("ops@example.org"), "{body}");
    }

    #[test]
    fn a_failure_notice_says_so_without_a_link() {
        let (subject, body) = notice(&export(ExportStatus::Failure), "https://api/x/download");
        assert_eq!(subject, "Votre export de trajets a échoué");
        assert!(body.contains("n'a pas pu être construit"), "{body}");
        assert!(!body.contains("download"), "{body}");
    }

    #[test]
    fn no_host_means_no_mailer_and_a_bad_sender_fails_at_start() {
        assert!(Mailer::new(&MailSettings::default()).unwrap().is_none());
        let bad = MailSettings {
            host: "127.0.0.1".into(),
            from: "not an address".into(),
            ..MailSettings::default()
        };
        let error = Mailer::new(&bad).err().expect("refused").to_string();
        assert!(error.contains("exports.mail.from"), "{error}");
    }
}
