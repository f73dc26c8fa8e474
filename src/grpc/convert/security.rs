//! Wire forms of sign-in security: TOTP enrolments, sessions, the sign-in overview.

use crate::{
    auth::totp::Enrollment,
    domain::security::{PasskeyInfo, SessionInfo},
    error::{Error, Result},
    pb,
    service::security::Overview,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

/// A TOTP enrolment.
pub fn totp_enrollment(e: Enrollment) -> pb::TotpEnrollment {
    pb::TotpEnrollment {
        secret: e.secret,
        otpauth_uri: e.uri,
        qr_svg: e.qr_svg,
    }
}

/// A passkey.
pub fn passkey(p: PasskeyInfo) -> pb::Passkey {
    pb::Passkey {
        id: URL_SAFE_NO_PAD.encode(&p.id),
        name: p.name,
        create_time: Some(super::timestamp(p.created_at)),
        last_use_time: p.last_used_at.map(super::timestamp),
    }
}

/// A passkey's id from its base64url form.
pub fn passkey_id(raw: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::invalid("passkey_id", "is not a passkey id"))
}

/// Sessions, `current` marked.
pub fn sessions(list: Vec<SessionInfo>, current: Option<Uuid>) -> pb::ListSessionsResponse {
    let sessions = list
        .into_iter()
        .map(|s| pb::Session {
            id: s.id.to_string(),
            create_time: Some(super::timestamp(s.created_at)),
            last_use_time: Some(super::timestamp(s.last_used_at)),
            expire_time: Some(super::timestamp(s.expires_at)),
            user_agent: s.user_agent,
            client_ip: s.client_ip.unwrap_or_default(),
            method: s.method,
            current: Some(s.id) == current,
        })
        .collect();
    pb::ListSessionsResponse { sessions }
}

/// The sign-in overview.
pub fn security(o: Overview) -> pb::Security {
    pb::Security {
        totp_enabled: o.totp_enabled,
        recovery_codes_left: i32::try_from(o.recovery_codes_left).unwrap_or(i32::MAX),
        second_factor_required: o.required,
        identities: o
            .identities
            .into_iter()
            .map(|(provider, email, at)| pb::LinkedIdentity {
                provider,
                email,
                link_time: Some(super::timestamp(at)),
            })
            .collect(),
    }
}
