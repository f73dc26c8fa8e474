//! `epop.v1.NotificationService`: the inbox, preferences, mutes and push devices.

use crate::{
    auth::Caller,
    domain::{PageSize, PageToken, parse_uuid},
    grpc::convert::{audit::time, notifications as conv},
    pb::{self, notification_service_server::NotificationService},
    service::{
        State,
        notifications::{self as svc, devices::Platform, devices::Registration},
    },
};
use tonic::{Request, Response, Status};

/// The NotificationService adapter.
#[derive(Debug, Clone)]
pub struct NotificationApi {
    state: State,
}

impl NotificationApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let (page, unread) = svc::list(&self.state, &caller, r.unread_only, size, token).await?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: page.items.into_iter().map(conv::notification).collect(),
            next_page_token: page.next_page_token,
            unread_count: unread,
        }))
    }

    async fn mark_notifications_read(
        &self,
        request: Request<pb::MarkNotificationsReadRequest>,
    ) -> Result<Response<pb::MarkNotificationsReadResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let ids = match r.all {
            true => None,
            false => Some(
                r.notification_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| parse_uuid(&format!("notification_ids[{i}]"), id))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let unread = svc::mark_read(&self.state, &caller, ids).await?;
        Ok(Response::new(pb::MarkNotificationsReadResponse {
            unread_count: unread,
        }))
    }

    async fn get_notification_settings(
        &self,
        request: Request<pb::GetNotificationSettingsRequest>,
    ) -> Result<Response<pb::NotificationSettings>, Status> {
        let caller = Caller::of(&request)?;
        let s = svc::settings::get(&self.state, &caller).await?;
        Ok(Response::new(conv::settings(s)))
    }

    async fn update_notification_settings(
        &self,
        request: Request<pb::UpdateNotificationSettingsRequest>,
    ) -> Result<Response<pb::NotificationSettings>, Status> {
        let caller = Caller::of(&request)?;
        let changes = conv::settings_from_pb(request.get_ref())?;
        let s = svc::settings::update(&self.state, &caller, changes).await?;
        Ok(Response::new(conv::settings(s)))
    }

    async fn mute(
        &self,
        request: Request<pb::MuteRequest>,
    ) -> Result<Response<pb::NotificationMute>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let target = parse_uuid("target_id", &r.target_id)?;
        let until = time("until", r.until.as_ref())?;
        svc::settings::mute(&self.state, &caller, target, until).await?;
        Ok(Response::new(conv::mute(target, until)))
    }

    async fn unmute(
        &self,
        request: Request<pb::UnmuteRequest>,
    ) -> Result<Response<pb::UnmuteResponse>, Status> {
        let caller = Caller::of(&request)?;
        let target = parse_uuid("target_id", &request.get_ref().target_id)?;
        svc::settings::unmute(&self.state, &caller, target).await?;
        Ok(Response::new(pb::UnmuteResponse {}))
    }

    async fn list_mutes(
        &self,
        request: Request<pb::ListMutesRequest>,
    ) -> Result<Response<pb::ListMutesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let mutes = svc::settings::mutes(&self.state, &caller).await?;
        Ok(Response::new(pb::ListMutesResponse {
            mutes: mutes
                .into_iter()
                .map(|(target, until)| conv::mute(target, until))
                .collect(),
        }))
    }

    async fn get_push_config(
        &self,
        request: Request<pb::GetPushConfigRequest>,
    ) -> Result<Response<pb::PushConfig>, Status> {
        Caller::of(&request)?;
        let (fcm, apns) = self.state.push.enabled();
        Ok(Response::new(pb::PushConfig {
            vapid_public_key: self.state.push.vapid_public_key(),
            fcm_enabled: fcm,
            apns_enabled: apns,
        }))
    }

    async fn register_push_device(
        &self,
        request: Request<pb::RegisterPushDeviceRequest>,
    ) -> Result<Response<pb::PushDevice>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let platform = match pb::PushPlatform::try_from(r.platform) {
            Ok(pb::PushPlatform::Web) => Platform::Web,
            Ok(pb::PushPlatform::Fcm) => Platform::Fcm,
            Ok(pb::PushPlatform::Apns) => Platform::Apns,
            _ => {
                return Err(crate::error::Error::invalid(
                    "platform",
                    "must be PUSH_PLATFORM_WEB, PUSH_PLATFORM_FCM or PUSH_PLATFORM_APNS",
                )
                .into());
            }
        };
        let registration = Registration {
            platform,
            address: r.address,
            p256dh: r.p256dh,
            auth: r.auth,
            name: r.name,
        };
        let d = svc::devices::register(&self.state, &caller, registration).await?;
        Ok(Response::new(conv::device(d)))
    }

    async fn unregister_push_device(
        &self,
        request: Request<pb::UnregisterPushDeviceRequest>,
    ) -> Result<Response<pb::UnregisterPushDeviceResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = parse_uuid("id", &request.get_ref().id)?;
        svc::devices::unregister(&self.state, &caller, id).await?;
        Ok(Response::new(pb::UnregisterPushDeviceResponse {}))
    }

    async fn list_push_devices(
        &self,
        request: Request<pb::ListPushDevicesRequest>,
    ) -> Result<Response<pb::ListPushDevicesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let devices = svc::devices::list(&self.state, &caller).await?;
        Ok(Response::new(pb::ListPushDevicesResponse {
            devices: devices.into_iter().map(conv::device).collect(),
        }))
    }

    async fn get_notification_defaults(
        &self,
        request: Request<pb::GetNotificationDefaultsRequest>,
    ) -> Result<Response<pb::NotificationDefaults>, Status> {
        let caller = Caller::of(&request)?;
        let (channels, previews) = svc::settings::defaults(&self.state, &caller).await?;
        Ok(Response::new(pb::NotificationDefaults {
            channels: conv::channels_to_pb(&channels),
            previews,
        }))
    }

    async fn update_notification_defaults(
        &self,
        request: Request<pb::UpdateNotificationDefaultsRequest>,
    ) -> Result<Response<pb::NotificationDefaults>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let changes = conv::channels_from_pb("channels", &r.channels)?;
        let (channels, previews) =
            svc::settings::set_defaults(&self.state, &caller, changes, r.previews).await?;
        Ok(Response::new(pb::NotificationDefaults {
            channels: conv::channels_to_pb(&channels),
            previews,
        }))
    }
}
