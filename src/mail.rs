//! Outgoing email: SMTP through lettre when configured, otherwise one `.eml` file per job
//! under `<data-dir>/mail`. The file is named after the job, so a job that runs twice after
//! a crash leaves one email, not two.

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use secrecy::{ExposeSecret, SecretString};
use std::{path::PathBuf, time::Duration};

/// How long one SMTP exchange may take (well inside a job's time limit).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// An email sender.
#[derive(Debug)]
pub enum Mailer {
    /// Writes `.eml` files into a directory.
    Files {
        /// The From address.
        from: Mailbox,
        /// The directory.
        dir: PathBuf,
    },
    /// Sends through an SMTP server.
    Smtp {
        /// The From address.
        from: Mailbox,
        /// The connection pool to the server.
        transport: AsyncSmtpTransport<Tokio1Executor>,
    },
}

impl Mailer {
    /// An SMTP mailer for `smtp_url`, or a file mailer into `dir`.
    pub fn new(from: &str, smtp_url: Option<&SecretString>, dir: PathBuf) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .context("EPOP_MAIL_FROM is not an email address")?;
        Ok(match smtp_url {
            Some(url) => Self::Smtp {
                from,
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .context("EPOP_SMTP_URL is not a valid SMTP URL")?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            },
            None => Self::Files { from, dir },
        })
    }

    /// Sends a plain-text email for job `job_id` (which names the file, so a job run twice
    /// leaves one).
    pub async fn send(
        &self,
        job_id: i64,
        to: &str,
        subject: &str,
        body: String,
    ) -> anyhow::Result<()> {
        let from = match self {
            Self::Files { from, .. } | Self::Smtp { from, .. } => from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to.parse().context("bad recipient address")?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("cannot build the email")?;
        match self {
            Self::Files { dir, .. } => {
                // Emails hold reset codes: only the server's own account may read them.
                tokio::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .await?;
                let tmp = dir.join(format!(".{job_id}.eml.tmp"));
                let mut file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .await?;
                tokio::io::AsyncWriteExt::write_all(&mut file, &message.formatted()).await?;
                file.sync_all().await?;
                tokio::fs::rename(&tmp, dir.join(format!("{job_id}.eml"))).await?;
            }
            Self::Smtp { transport, .. } => {
                transport.send(message).await.context("SMTP send failed")?;
            }
        }
        tracing::info!(job = job_id, "email sent");
        Ok(())
    }
}
