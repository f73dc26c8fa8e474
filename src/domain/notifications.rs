//! Notifications as values: their kinds and the channels each kind notifies on, a user's
//! preferences (with the quiet hours checked in their time zone), and what a push carries,
//! with its urgency and lifetime per kind. No IO.

use crate::error::{Error, Result};
use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// What a notification is about. The stored names are [`Kind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A message in a direct conversation.
    DirectMessage,
    /// A message that mentions the user.
    Mention,
    /// A reply in a thread the user follows.
    ThreadReply,
    /// A task was assigned to the user.
    TaskAssigned,
    /// A task assigned to the user was changed by someone else.
    TaskChanged,
    /// A task assigned to the user is due soon.
    TaskDue,
    /// The user was added to a project.
    AddedToProject,
    /// The user was added to a conversation.
    AddedToConversation,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::DirectMessage,
        Kind::Mention,
        Kind::ThreadReply,
        Kind::TaskAssigned,
        Kind::TaskChanged,
        Kind::TaskDue,
        Kind::AddedToProject,
        Kind::AddedToConversation,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DirectMessage => "direct_message",
            Kind::Mention => "mention",
            Kind::ThreadReply => "thread_reply",
            Kind::TaskAssigned => "task_assigned",
            Kind::TaskChanged => "task_changed",
            Kind::TaskDue => "task_due",
            Kind::AddedToProject => "added_to_project",
            Kind::AddedToConversation => "added_to_conversation",
        }
    }

    /// The kind stored as `name`.
    pub fn from_stored(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The channels a kind notifies on when nobody chose: every kind in the app and pushed;
    /// by email only what the unread-message digest does not already tell (tasks, being
    /// added), so a message is never emailed twice.
    pub fn default_channels(self) -> Channels {
        let messages = matches!(
            self,
            Kind::DirectMessage | Kind::Mention | Kind::ThreadReply
        );
        Channels {
            in_app: true,
            email: !messages,
            push: true,
        }
    }

    /// How urgently a push service should deliver it, and how long it may hold it for a
    /// device that is offline: people wait on messages, not on task changes.
    pub fn delivery(self) -> (Urgency, Duration) {
        const HOUR: u64 = 3600;
        match self {
            Kind::DirectMessage | Kind::Mention => (Urgency::High, Duration::from_secs(HOUR)),
            Kind::ThreadReply => (Urgency::Normal, Duration::from_secs(4 * HOUR)),
            Kind::TaskDue => (Urgency::High, Duration::from_secs(12 * HOUR)),
            Kind::TaskAssigned
            | Kind::TaskChanged
            | Kind::AddedToProject
            | Kind::AddedToConversation => (Urgency::Normal, Duration::from_secs(24 * HOUR)),
        }
    }
}

/// RFC 8030's urgency (FCM and APNs priorities follow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Deliver at once.
    High,
    /// Deliver when convenient for the device's battery.
    Normal,
}

impl Urgency {
    /// The `Urgency` header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::High => "high",
            Urgency::Normal => "normal",
        }
    }
}

/// The channels one kind notifies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    /// Listed in the inbox and sent live.
    pub in_app: bool,
    /// Told in the email digest.
    pub email: bool,
    /// Pushed to devices.
    pub push: bool,
}

/// Chosen channels per kind (kinds not named follow the default); the stored JSON form.
pub type ChannelMap = BTreeMap<Kind, Channels>;

/// Do-not-disturb hours, as minutes after midnight; `start > end` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start (inclusive).
    pub start: u16,
    /// End (exclusive).
    pub end: u16,
}

impl QuietHours {
    /// Hours from minutes after midnight, each checked (`field` names them in errors).
    pub fn parse(field: &str, start: i32, end: i32) -> Result<Self> {
        let minute = |name: &str, m: i32| {
            u16::try_from(m)
                .ok()
                .filter(|m| *m < 1440)
                .ok_or_else(|| Error::invalid(format!("{field}.{name}"), "must be 0 to 1439"))
        };
        Ok(Self {
            start: minute("start_minute", start)?,
            end: minute("end_minute", end)?,
        })
    }

    /// True when minute `m` of the day is inside.
    fn contains(self, m: u16) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }
}

/// A checked IANA time zone name.
pub fn parse_time_zone(field: &str, name: &str) -> Result<chrono_tz::Tz> {
    let name = if name.is_empty() { "UTC" } else { name };
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| Error::invalid(field, "is not an IANA time zone, e.g. Europe/Berlin"))
}

/// A user's preferences, as in force (theirs, or the admin's default).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Chosen channels per kind.
    pub channels: ChannelMap,
    /// Pushes carry message text.
    pub previews: bool,
    /// Their time zone.
    pub time_zone: chrono_tz::Tz,
    /// Do-not-disturb.
    pub quiet_hours: Option<QuietHours>,
    /// True while these are the admin's default.
    pub is_default: bool,
}

impl Settings {
    /// The channels of `kind`.
    pub fn channels(&self, kind: Kind) -> Channels {
        self.channels
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.default_channels())
    }

    /// True when `at` falls in the user's quiet hours, in their time zone.
    pub fn is_quiet(&self, at: DateTime<Utc>) -> bool {
        self.quiet_for(at).is_some()
    }

    /// How long the quiet hours that `at` falls in last from then (`None` when not quiet).
    pub fn quiet_for(&self, at: DateTime<Utc>) -> Option<Duration> {
        let q = self.quiet_hours?;
        let local = at.with_timezone(&self.time_zone);
        // At most 1439: fits.
        let minute = (local.hour() * 60 + local.minute()) as u16;
        if !q.contains(minute) {
            return None;
        }
        let left = (i64::from(q.end) - i64::from(minute)).rem_euclid(1440);
        let secs = left * 60 - i64::from(local.second());
        Some(Duration::from_secs(secs.max(1).unsigned_abs()))
    }
}

/// One notification, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Its id.
    pub id: Uuid,
    /// Whose.
    pub user_id: Uuid,
    /// What about.
    pub kind: Kind,
    /// What it collapses with (its conversation or project).
    pub topic: Uuid,
    /// The conversation.
    pub conversation_id: Option<Uuid>,
    /// The message.
    pub message_id: Option<Uuid>,
    /// The project.
    pub project_id: Option<Uuid>,
    /// The task.
    pub task_id: Option<Uuid>,
    /// Who caused it.
    pub actor_id: Option<Uuid>,
    /// A short title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When read.
    pub read_at: Option<DateTime<Utc>>,
}

/// A notification to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// For whom.
    pub user_id: Uuid,
    /// What about.
    pub kind: Kind,
    /// What it collapses with (its conversation or project).
    pub topic: Uuid,
    /// The conversation.
    pub conversation_id: Option<Uuid>,
    /// The message and its position.
    pub message: Option<(Uuid, i64)>,
    /// The project.
    pub project_id: Option<Uuid>,
    /// The task.
    pub task_id: Option<Uuid>,
    /// Who caused it.
    pub actor_id: Option<Uuid>,
    /// A short title.
    pub title: String,
    /// Its text.
    pub body: String,
}

/// What the notifications of a user read on some device changed, told to all their streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    /// The ones read (empty with `all`).
    pub ids: Vec<Uuid>,
    /// All of them.
    pub all: bool,
    /// Unread after this.
    pub unread: i64,
}

/// A change to a user's inbox, told live to their streams on every instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A new notification.
    New(Box<Notification>),
    /// Notifications were read.
    Read(Read),
}

/// The most text a push or a notification carries from a message.
pub const SNIPPET_CHARS: usize = 140;

/// The first [`SNIPPET_CHARS`] characters of `text`, on one line.
pub fn snippet(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// A device a user's pushes go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: Uuid,
    /// Whose.
    pub user_id: Uuid,
    /// `web`, `fcm` or `apns`.
    pub platform: String,
    /// The Web Push endpoint, FCM registration token or APNs device token.
    pub address: String,
    /// Web Push: the browser's public key.
    pub p256dh: Option<String>,
    /// Web Push: the browser's auth secret.
    pub auth: Option<String>,
    /// The user's name for it.
    pub name: String,
    /// When registered.
    pub created_at: DateTime<Utc>,
    /// When a push last reached its service.
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// What a push carries to a device: no more than a client needs to show it and open the
/// right place (the text only when the user allows previews).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushPayload {
    /// The newest notification it tells.
    pub notification_id: Uuid,
    /// Its kind's stored name.
    pub kind: String,
    /// A title to show.
    pub title: String,
    /// Text to show: the message's first words with previews, else a count.
    pub body: String,
    /// How many notifications of this topic it tells (collapsed into one).
    pub count: usize,
    /// The conversation to open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// The project to open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn quiet_hours_wrap_past_midnight_in_the_users_time_zone() {
        let settings = Settings {
            channels: ChannelMap::new(),
            previews: true,
            time_zone: parse_time_zone("tz", "Asia/Tokyo").unwrap(),
            quiet_hours: Some(QuietHours::parse("q", 22 * 60, 7 * 60).unwrap()),
            is_default: false,
        };
        // 14:00 UTC is 23:00 in Tokyo; 03:00 UTC is 12:00.
        assert!(settings.is_quiet(Utc.with_ymd_and_hms(2026, 12, 5, 14, 0, 0).unwrap()));
        assert!(!settings.is_quiet(Utc.with_ymd_and_hms(2026, 12, 5, 3, 0, 0).unwrap()));
        assert!(settings.is_quiet(Utc.with_ymd_and_hms(2026, 12, 5, 21, 59, 0).unwrap()));
        assert!(!settings.is_quiet(Utc.with_ymd_and_hms(2026, 12, 5, 22, 0, 0).unwrap()));
        // 23:00 in Tokyo: quiet for eight more hours.
        assert_eq!(
            settings.quiet_for(Utc.with_ymd_and_hms(2026, 12, 5, 14, 0, 0).unwrap()),
            Some(Duration::from_secs(8 * 3600))
        );
        assert!(QuietHours::parse("q", 0, 1440).is_err());
        assert!(parse_time_zone("tz", "Mars/Olympus").is_err());
    }

    #[test]
    fn kinds_round_trip_and_messages_are_not_emailed_twice_by_default() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_stored(k.as_str()), Some(k));
        }
        assert!(!Kind::Mention.default_channels().email);
        assert!(Kind::TaskAssigned.default_channels().email);
        let map: ChannelMap = [(Kind::Mention, Kind::Mention.default_channels())].into();
        let json = serde_json::to_value(&map).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"mention": {"in_app": true, "email": false, "push": true}})
        );
        assert_eq!(snippet("a\n b"), "a b");
        assert_eq!(snippet(&"x".repeat(200)).chars().count(), SNIPPET_CHARS + 1);
    }
}
