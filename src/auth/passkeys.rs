//! Passkeys (WebAuthn Level 3) as the relying party, on `webauthn_rp` (pure Rust: P-256,
//! P-384, Ed25519 and RSA signatures without OpenSSL): the options a browser's
//! `navigator.credentials.create()` / `.get()` take (as JSON for
//! `PublicKeyCredential.parse*OptionsFromJSON`), and the verification of what they answer
//! (`credential.toJSON()`). Ceremony state is serialized, so any instance can finish what
//! another started; the user handle is the user's id.

use crate::error::{Error, Result};
use std::time::SystemTime;
use uuid::Uuid;
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthentication16, DiscoverableAuthenticationServerState,
    DiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions, Registration,
    RegistrationServerState,
    bin::{Decode, Encode},
    request::{
        AsciiDomain, PublicKeyCredentialDescriptor, RpId, TimedCeremony,
        auth::AuthenticationVerificationOptions,
        register::{
            CredProtect, Nickname, PublicKeyCredentialUserEntity, RegistrationVerificationOptions,
            UserHandle16, Username,
        },
    },
    response::{
        AuthTransports, CredentialId,
        register::{DynamicState, StaticState},
    },
};

/// The relying party: its id (a domain) and the origins its pages are served from.
#[derive(Debug)]
pub struct RelyingParty {
    rp_id: RpId,
    origins: Vec<String>,
}

/// A ceremony started: the key it is found by again (its challenge), its serialized server
/// state, when it expires, and the options for the browser.
#[derive(Debug, Clone)]
pub struct Started {
    /// The challenge (16 bytes).
    pub challenge: Vec<u8>,
    /// The server state to keep.
    pub state: Vec<u8>,
    /// When it expires.
    pub expires_at: SystemTime,
    /// `publicKey` options as JSON.
    pub options: String,
}

/// A verified new passkey.
#[derive(Debug, Clone)]
pub struct NewPasskey {
    /// The credential id.
    pub id: Vec<u8>,
    /// Its public key and extensions (`StaticState`, encoded).
    pub static_state: Vec<u8>,
    /// Its counter and flags (`DynamicState`, encoded).
    pub dynamic_state: Vec<u8>,
}

/// A stored passkey, to verify an assertion with.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Whose it is.
    pub user: Uuid,
    /// `StaticState`, encoded.
    pub static_state: Vec<u8>,
    /// `DynamicState`, encoded.
    pub dynamic_state: Vec<u8>,
}

fn refused(why: impl std::fmt::Display) -> Error {
    tracing::info!(%why, "a passkey was refused");
    Error::Unauthenticated("the passkey could not be verified".into())
}

fn internal(why: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("webauthn: {why}"))
}

fn bad_json(field: &str) -> Error {
    Error::invalid(
        field,
        "is not a WebAuthn credential (send credential.toJSON())",
    )
}

/// The `publicKey` member of serialized options (or the options themselves).
fn public_key(json: serde_json::Value) -> String {
    match json {
        serde_json::Value::Object(mut o) if o.contains_key("publicKey") => {
            o.remove("publicKey").unwrap_or_default().to_string()
        }
        other => other.to_string(),
    }
}

/// A started ceremony: its challenge, expiry and encoded server state, and the client's
/// options as JSON.
fn started(
    challenge: webauthn_rp::response::SentChallenge,
    expires_at: SystemTime,
    state: Vec<u8>,
    client: &impl serde::Serialize,
) -> Result<Started> {
    let options = serde_json::to_value(client).map_err(internal)?;
    Ok(Started {
        challenge: challenge.0.to_be_bytes().to_vec(),
        expires_at,
        state,
        options: public_key(options),
    })
}

fn handle(user: Uuid) -> Result<UserHandle16> {
    UserHandle16::decode(*user.as_bytes()).map_err(internal)
}

impl RelyingParty {
    /// The relying party `rp_id` (a domain, e.g. `example.com` or `localhost`) for pages at
    /// `origins` (e.g. `https://app.example.com`).
    pub fn new(rp_id: &str, origins: Vec<String>) -> anyhow::Result<Self> {
        let domain = AsciiDomain::try_from(rp_id.to_owned())
            .map_err(|e| anyhow::anyhow!("EPOP_WEBAUTHN_RP_ID {rp_id:?} is not a domain: {e}"))?;
        Ok(Self {
            rp_id: RpId::Domain(domain),
            origins,
        })
    }

    /// Starts registering a passkey for `user` (`email`, `name`), excluding `existing`
    /// credential ids (an authenticator holding one says so instead of making another).
    pub fn start_registration(
        &self,
        user: Uuid,
        email: &str,
        name: &str,
        existing: Vec<Vec<u8>>,
    ) -> Result<Started> {
        let id = handle(user)?;
        let entity = PublicKeyCredentialUserEntity {
            name: Username::try_from(email).map_err(internal)?,
            id: &id,
            display_name: Nickname::try_from(name).ok(),
        };
        let exclude = existing
            .into_iter()
            .filter_map(|raw| CredentialId::decode(raw).ok())
            .filter_map(|id| {
                // No transport hints: any way of reaching the authenticator.
                let transports = AuthTransports::decode(0).ok()?;
                Some(PublicKeyCredentialDescriptor { id, transports })
            })
            .collect();
        let mut options = PublicKeyCredentialCreationOptions::passkey(&self.rp_id, entity, exclude);
        // Not asked of the authenticator: many platform authenticators (and Chromium's virtual
        // one) lack credProtect, and user verification is required at every sign-in anyway.
        options.extensions.cred_protect = CredProtect::None;
        let (server, client) = options.start_ceremony().map_err(internal)?;
        let state = server.encode().map_err(internal)?;
        started(server.sent_challenge(), server.expiration(), state, &client)
    }

    /// The challenge a registration response answers.
    pub fn registration_challenge(json: &str) -> Result<Vec<u8>> {
        let r = Registration::from_json_relaxed(json.as_bytes())
            .map_err(|_| bad_json("credential_json"))?;
        let c = r
            .challenge_relaxed()
            .map_err(|_| bad_json("credential_json"))?;
        Ok(c.0.to_be_bytes().to_vec())
    }

    /// Verifies a registration response against the ceremony `state` it answers.
    pub fn finish_registration(&self, state: &[u8], json: &str) -> Result<NewPasskey> {
        let server = RegistrationServerState::<16>::decode(state).map_err(internal)?;
        let response = Registration::from_json_relaxed(json.as_bytes())
            .map_err(|_| bad_json("credential_json"))?;
        let origins: Vec<&str> = self.origins.iter().map(String::as_str).collect();
        let options = RegistrationVerificationOptions::<&str, &str> {
            allowed_origins: &origins,
            ..Default::default()
        };
        let credential = server
            .verify(&self.rp_id, &response, &options)
            .map_err(refused)?;
        Ok(NewPasskey {
            id: credential.id().as_ref().to_vec(),
            static_state: credential.static_state().encode().map_err(internal)?,
            dynamic_state: credential
                .dynamic_state()
                .encode()
                .map_err(internal)?
                .to_vec(),
        })
    }

    /// Starts a sign-in with whichever passkey the user picks.
    pub fn start_sign_in(&self) -> Result<Started> {
        let (server, client) = DiscoverableCredentialRequestOptions::passkey(&self.rp_id)
            .start_ceremony()
            .map_err(internal)?;
        let state = server.encode().map_err(internal)?;
        started(server.sent_challenge(), server.expiration(), state, &client)
    }

    /// What an assertion names: (its challenge, credential id, user).
    pub fn assertion(json: &str) -> Result<(Vec<u8>, Vec<u8>, Uuid)> {
        let a = DiscoverableAuthentication16::from_json_relaxed(json.as_bytes())
            .map_err(|_| bad_json("credential_json"))?;
        let c = a
            .challenge_relaxed()
            .map_err(|_| bad_json("credential_json"))?;
        let user = Uuid::from_bytes(a.response().user_handle().encode().map_err(internal)?);
        Ok((
            c.0.to_be_bytes().to_vec(),
            a.raw_id().as_ref().to_vec(),
            user,
        ))
    }

    /// Verifies an assertion against the ceremony `state` and the passkey it names; answers
    /// the passkey's new dynamic state (its signature counter) to store.
    pub fn finish_sign_in(&self, state: &[u8], json: &str, stored: &Stored) -> Result<Vec<u8>> {
        let server = DiscoverableAuthenticationServerState::decode(state).map_err(internal)?;
        let response = DiscoverableAuthentication16::from_json_relaxed(json.as_bytes())
            .map_err(|_| bad_json("credential_json"))?;
        let user = handle(stored.user)?;
        if response.response().user_handle() != &user {
            return Err(refused("the user handle is not the passkey's"));
        }
        let static_state = StaticState::decode(stored.static_state.as_slice()).map_err(internal)?;
        let dynamic: [u8; 7] = stored
            .dynamic_state
            .as_slice()
            .try_into()
            .map_err(internal)?;
        let dynamic_state = DynamicState::decode(dynamic).map_err(internal)?;
        let mut credential =
            AuthenticatedCredential::new(response.raw_id(), &user, static_state, dynamic_state)
                .map_err(internal)?;
        let origins: Vec<&str> = self.origins.iter().map(String::as_str).collect();
        let options = AuthenticationVerificationOptions::<&str, &str> {
            allowed_origins: &origins,
            ..Default::default()
        };
        server
            .verify(&self.rp_id, &response, &mut credential, &options)
            .map_err(refused)?;
        Ok(credential
            .dynamic_state()
            .encode()
            .map_err(internal)?
            .to_vec())
    }
}
