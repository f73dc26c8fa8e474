//! Wire forms of notifications, preferences and push devices.

use super::timestamp;
use crate::{
    domain::notifications::{
        Change, ChannelMap, Channels, Device, Kind, Notification, QuietHours, Settings,
    },
    error::{Error, Result},
    pb,
};

/// The wire form of a kind.
pub fn kind_to_pb(k: Kind) -> pb::NotificationKind {
    use pb::NotificationKind as P;
    match k {
        Kind::DirectMessage => P::DirectMessage,
        Kind::Mention => P::Mention,
        Kind::ThreadReply => P::ThreadReply,
        Kind::TaskAssigned => P::TaskAssigned,
        Kind::TaskChanged => P::TaskChanged,
        Kind::TaskDue => P::TaskDue,
        Kind::AddedToProject => P::AddedToProject,
        Kind::AddedToConversation => P::AddedToConversation,
    }
}

fn kind_from_pb(field: &str, raw: i32) -> Result<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| kind_to_pb(*k) as i32 == raw)
        .ok_or_else(|| Error::invalid(field, "is not a notification kind"))
}

fn id(u: Option<uuid::Uuid>) -> String {
    u.map(|u| u.to_string()).unwrap_or_default()
}

/// The wire form of a notification.
pub fn notification(n: Notification) -> pb::Notification {
    pb::Notification {
        id: n.id.to_string(),
        kind: kind_to_pb(n.kind).into(),
        title: n.title,
        body: n.body,
        conversation_id: id(n.conversation_id),
        message_id: id(n.message_id),
        project_id: id(n.project_id),
        task_id: id(n.task_id),
        actor_id: id(n.actor_id),
        create_time: Some(timestamp(n.created_at)),
        read_time: n.read_at.map(timestamp),
    }
}

/// The stream event of an inbox change.
pub fn change(c: Change) -> pb::event::Kind {
    match c {
        Change::New(n) => pb::event::Kind::Notification(notification(*n)),
        Change::Read(r) => pb::event::Kind::NotificationsRead(pb::NotificationsRead {
            notification_ids: r.ids.iter().map(ToString::to_string).collect(),
            all: r.all,
            unread_count: r.unread,
        }),
    }
}

/// Every kind with its channels in force under `map`.
pub fn channels_to_pb(map: &ChannelMap) -> Vec<pb::KindChannels> {
    Kind::ALL
        .into_iter()
        .map(|k| {
            let c = map.get(&k).copied().unwrap_or_else(|| k.default_channels());
            pb::KindChannels {
                kind: kind_to_pb(k).into(),
                in_app: c.in_app,
                email: c.email,
                push: c.push,
            }
        })
        .collect()
}

/// Chosen channels from request field `field` (each kind at most once).
pub fn channels_from_pb(field: &str, list: &[pb::KindChannels]) -> Result<ChannelMap> {
    let mut map = ChannelMap::new();
    for (i, c) in list.iter().enumerate() {
        let kind = kind_from_pb(&format!("{field}[{i}].kind"), c.kind)?;
        let channels = Channels {
            in_app: c.in_app,
            email: c.email,
            push: c.push,
        };
        if map.insert(kind, channels).is_some() {
            return Err(Error::invalid(
                format!("{field}[{i}].kind"),
                "is listed twice",
            ));
        }
    }
    Ok(map)
}

/// The wire form of settings.
pub fn settings(s: Settings) -> pb::NotificationSettings {
    pb::NotificationSettings {
        channels: channels_to_pb(&s.channels),
        previews: s.previews,
        time_zone: s.time_zone.name().to_owned(),
        quiet_hours: s.quiet_hours.map(|q| pb::QuietHours {
            start_minute: q.start.into(),
            end_minute: q.end.into(),
        }),
        is_default: s.is_default,
    }
}

/// Settings from an update request.
pub fn settings_from_pb(r: &pb::UpdateNotificationSettingsRequest) -> Result<Settings> {
    Ok(Settings {
        channels: channels_from_pb("channels", &r.channels)?,
        previews: r.previews,
        time_zone: crate::domain::notifications::parse_time_zone("time_zone", &r.time_zone)?,
        quiet_hours: r
            .quiet_hours
            .as_ref()
            .map(|q| QuietHours::parse("quiet_hours", q.start_minute, q.end_minute))
            .transpose()?,
        is_default: false,
    })
}

/// The wire form of a device.
pub fn device(d: Device) -> pb::PushDevice {
    let platform = match d.platform.as_str() {
        "web" => pb::PushPlatform::Web,
        "fcm" => pb::PushPlatform::Fcm,
        "apns" => pb::PushPlatform::Apns,
        _ => pb::PushPlatform::Unspecified,
    };
    pb::PushDevice {
        id: d.id.to_string(),
        platform: platform.into(),
        name: d.name,
        create_time: Some(timestamp(d.created_at)),
        last_sent_time: d.last_sent_at.map(timestamp),
    }
}

/// The wire form of a mute.
pub fn mute(
    target: uuid::Uuid,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> pb::NotificationMute {
    pb::NotificationMute {
        target_id: target.to_string(),
        until: until.map(timestamp),
    }
}
