//! Outgoing email: SMTP through lettre when configured, otherwise one `.eml` file per job
//! under `<data-dir>/mail`. The file is named after the job, so a job that runs twice after
//! a crash leaves one email, not two.

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;

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
                    .build(),
            },
            None => Self::Files { from, dir },
        })
    }

    /// Sends a plain-text email for job `job_id`.
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
                tokio::fs::create_dir_all(dir).await?;
                let tmp = dir.join(format!(".{job_id}.eml.tmp"));
                tokio::fs::write(&tmp, message.formatted()).await?;
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
