//! The durable jobs, as data: each kind with its typed payload, the name it is stored under
//! (`jobs.kind`), and the key that makes a pending job of its kind unique (`jobs.key`). The
//! stored form is explicit and versioned by these names: renaming a field here is a change
//! of what is stored.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum Job {
    /// Email a password reset link for an address.
    PasswordResetEmail(ResetTarget),
    /// Email a task's assignee before it is due, if the task still matches.
    TaskReminder {
        /// The task.
        task_id: Uuid,
        /// Who was assigned when it was scheduled.
        assignee_id: Uuid,
        /// The due date it was scheduled for.
        due_date: NaiveDate,
    },
    /// Queue the digests of a conversation's members (a while after its messages).
    ConversationDigest {
        /// The conversation.
        conversation_id: Uuid,
    },
    /// Email a member the messages they have not read nor been told about.
    MessageDigest {
        /// The member.
        user_id: Uuid,
    },
    /// Delete an upload that was never attached (its object, then its row).
    ExpireUpload {
        /// The file.
        file_id: Uuid,
    },
    /// Delete the files of a deleted message (their objects, then their rows).
    DeleteMessageFiles {
        /// The message.
        message_id: Uuid,
    },
    /// Once an upload URL expired, delete what it wrote unless that is a pending upload
    /// (attached files were copied; a deleted file's URL may have written it again).
    SweepUpload {
        /// The file.
        file_id: Uuid,
        /// The object its URL wrote.
        staging_key: String,
    },
    /// Turn a conversation's new events into notifications (direct messages, mentions,
    /// replies in followed threads, members added).
    NotifyConversation {
        /// The conversation.
        conversation_id: Uuid,
    },
    /// Push a user's unpushed notifications of one topic (a conversation or project) to
    /// their devices, collapsed into one per device.
    Push {
        /// The user.
        user_id: Uuid,
        /// The topic.
        topic: Uuid,
    },
}

/// Whom a reset email is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResetTarget {
    /// The address asked for (looked up when the job runs).
    Email {
        /// The address.
        email: String,
    },
    /// A user (jobs queued by earlier versions).
    User {
        /// The user.
        user_id: Uuid,
    },
}

/// The stored name of [`Job::PasswordResetEmail`].
pub const PASSWORD_RESET_EMAIL: &str = "password_reset_email";
/// The stored name of [`Job::TaskReminder`].
pub const TASK_REMINDER: &str = "task_reminder";
/// The stored name of [`Job::ConversationDigest`].
pub const CONVERSATION_DIGEST: &str = "conversation_digest";
/// The stored name of [`Job::MessageDigest`].
pub const MESSAGE_DIGEST: &str = "message_digest";
/// The stored name of [`Job::ExpireUpload`].
pub const EXPIRE_UPLOAD: &str = "expire_upload";
/// The stored name of [`Job::DeleteMessageFiles`].
pub const DELETE_MESSAGE_FILES: &str = "delete_message_files";
/// The stored name of [`Job::SweepUpload`].
pub const SWEEP_UPLOAD: &str = "sweep_upload";
/// The stored name of [`Job::NotifyConversation`].
pub const NOTIFY_CONVERSATION: &str = "notify_conversation";
/// The stored name of [`Job::Push`].
pub const PUSH: &str = "push";

impl Job {
    /// The name the job's kind is stored under.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::PasswordResetEmail(_) => PASSWORD_RESET_EMAIL,
            Job::TaskReminder { .. } => TASK_REMINDER,
            Job::ConversationDigest { .. } => CONVERSATION_DIGEST,
            Job::MessageDigest { .. } => MESSAGE_DIGEST,
            Job::ExpireUpload { .. } => EXPIRE_UPLOAD,
            Job::DeleteMessageFiles { .. } => DELETE_MESSAGE_FILES,
            Job::SweepUpload { .. } => SWEEP_UPLOAD,
            Job::NotifyConversation { .. } => NOTIFY_CONVERSATION,
            Job::Push { .. } => PUSH,
        }
    }

    /// The key under which at most one job of this kind is pending (and under which it is
    /// cancelled or throttled).
    pub fn key(&self) -> String {
        match self {
            Job::PasswordResetEmail(ResetTarget::Email { email }) => {
                use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
                use sha2::{Digest, Sha256};
                // A hash: the key says nothing of the address.
                let hash = URL_SAFE_NO_PAD.encode(Sha256::digest(email.as_bytes()));
                format!("password-reset:{hash}")
            }
            Job::PasswordResetEmail(ResetTarget::User { user_id }) => {
                format!("password-reset-user:{user_id}")
            }
            Job::TaskReminder { task_id, .. } => Self::reminder_key(*task_id),
            Job::ConversationDigest { conversation_id } => {
                format!("digest-conversation:{conversation_id}")
            }
            Job::MessageDigest { user_id } => format!("digest:{user_id}"),
            Job::ExpireUpload { file_id } => format!("upload:{file_id}"),
            Job::DeleteMessageFiles { message_id } => format!("message-files:{message_id}"),
            Job::SweepUpload { file_id, .. } => format!("upload-url:{file_id}"),
            Job::NotifyConversation { conversation_id } => format!("notify:{conversation_id}"),
            Job::Push { user_id, topic } => format!("push:{user_id}:{topic}"),
        }
    }

    /// The key of a task's reminder (to cancel it without knowing its payload).
    pub fn reminder_key(task: Uuid) -> String {
        format!("task:{task}")
    }

    /// The stored payload.
    pub fn payload(&self) -> serde_json::Value {
        // A derived Serialize of plain fields cannot fail.
        serde_json::to_value(self)
            .ok()
            .and_then(|mut v| v.get_mut("payload").map(serde_json::Value::take))
            .unwrap_or_default()
    }

    /// The job stored as `kind` with `payload`.
    pub fn parse(kind: &str, payload: &serde_json::Value) -> anyhow::Result<Self> {
        serde_json::from_value(serde_json::json!({ "kind": kind, "payload": payload }))
            .map_err(|e| anyhow::anyhow!("bad {kind} payload: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_their_stored_form_and_read_old_payloads() {
        let jobs = [
            Job::PasswordResetEmail(ResetTarget::Email {
                email: "ada@example.com".into(),
            }),
            Job::TaskReminder {
                task_id: Uuid::nil(),
                assignee_id: Uuid::max(),
                due_date: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            },
            Job::ConversationDigest {
                conversation_id: Uuid::nil(),
            },
            Job::MessageDigest {
                user_id: Uuid::nil(),
            },
            Job::ExpireUpload {
                file_id: Uuid::nil(),
            },
            Job::DeleteMessageFiles {
                message_id: Uuid::nil(),
            },
            Job::SweepUpload {
                file_id: Uuid::nil(),
                staging_key: "files/00/x/upload".into(),
            },
            Job::NotifyConversation {
                conversation_id: Uuid::nil(),
            },
            Job::Push {
                user_id: Uuid::nil(),
                topic: Uuid::max(),
            },
        ];
        for job in jobs {
            assert_eq!(Job::parse(job.kind(), &job.payload()).unwrap(), job);
        }
        let old = serde_json::json!({ "user_id": Uuid::nil() });
        assert_eq!(
            Job::parse("password_reset_email", &old).unwrap(),
            Job::PasswordResetEmail(ResetTarget::User {
                user_id: Uuid::nil()
            })
        );
        assert_eq!(
            Job::MessageDigest {
                user_id: Uuid::nil()
            }
            .payload(),
            serde_json::json!({ "user_id": Uuid::nil() })
        );
        let err = Job::parse("message_digest", &serde_json::json!({ "user_id": 7 }));
        assert!(err.unwrap_err().to_string().contains("payload"));
    }
}
