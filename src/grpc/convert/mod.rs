//! Conversions between prost types and domain types, and request-field helpers: every wire
//! mapping lives under here.

pub mod ai;
pub mod audit;
mod conversations;
pub mod files;
mod json;
pub mod notifications;
mod projects;
mod security;

pub use conversations::{conversation, event, marked, message, reaction, version};
pub use json::{json_to_struct, struct_to_json};
pub use projects::{
    member, project, project_role_from_pb, project_role_to_pb, status_from_pb, status_to_pb, task,
};
pub use security::{passkey, passkey_id, security, sessions, totp_enrollment};

use crate::{
    domain::Role,
    domain::users::{Division, User},
    error::{Error, Result},
    pb,
};
use chrono::{DateTime, Utc};

/// A protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The wire form of a role.
pub fn role_to_pb(r: Role) -> pb::Role {
    match r {
        Role::Admin => pb::Role::Admin,
        Role::User => pb::Role::User,
    }
}

/// A role from request field `field`: unspecified is `None`, unknown numbers are invalid.
pub fn role_from_pb(field: &str, raw: i32) -> Result<Option<Role>> {
    match pb::Role::try_from(raw) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(pb::Role::Admin) => Ok(Some(Role::Admin)),
        Ok(pb::Role::User) => Ok(Some(Role::User)),
        Err(_) => Err(Error::invalid(field, "is not a known role")),
    }
}

/// The wire form of a user.
pub fn user(u: User) -> pb::User {
    pb::User {
        id: u.id.0.to_string(),
        email: u.email,
        display_name: u.display_name,
        role: role_to_pb(u.role).into(),
        division_ids: u.division_ids.iter().map(|d| d.0).collect(),
        disabled: u.disabled,
        create_time: Some(timestamp(u.created_at)),
        update_time: Some(timestamp(u.updated_at)),
    }
}

/// The wire form of a division.
pub fn division(d: Division) -> pb::Division {
    pb::Division {
        id: d.id.0,
        name: d.name,
        member_count: d.member_count,
        create_time: Some(timestamp(d.created_at)),
    }
}

/// Which fields an update touches: those named in its field mask, or, with no mask, those
/// present in the request.
#[derive(Debug)]
pub struct Mask(Option<Vec<String>>);

impl Mask {
    /// Checks `update_mask` against the fields that may be updated.
    pub fn parse(mask: Option<&prost_types::FieldMask>, allowed: &[&str]) -> Result<Self> {
        let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
        if let Some(bad) = paths.iter().find(|p| !allowed.contains(&p.as_str())) {
            return Err(Error::invalid(
                "update_mask",
                format!("`{bad}` cannot be updated; allowed: {}", allowed.join(", ")),
            ));
        }
        Ok(Self((!paths.is_empty()).then_some(paths)))
    }

    /// True when `field` is to be updated; `present` says whether the request carries it.
    pub fn wants(&self, field: &str, present: bool) -> bool {
        match &self.0 {
            Some(paths) => paths.iter().any(|p| p == field),
            None => present,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_selects_named_fields_and_rejects_unknown_ones() {
        let m = Mask::parse(
            Some(&prost_types::FieldMask {
                paths: vec!["role".into()],
            }),
            &["role", "email"],
        )
        .unwrap();
        assert!(m.wants("role", false));
        assert!(!m.wants("email", true));
        let none = Mask::parse(None, &["role"]).unwrap();
        assert!(none.wants("role", true) && !none.wants("role", false));
        assert!(
            Mask::parse(
                Some(&prost_types::FieldMask {
                    paths: vec!["id".into()]
                }),
                &["role"]
            )
            .is_err()
        );
    }
}
