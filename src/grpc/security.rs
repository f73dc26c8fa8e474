//! `epop.v1.SecurityService`: the caller's second factor and sessions.

use crate::{
    auth::Caller,
    domain::parse_uuid,
    domain::security::{PasskeyName, Proof},
    error::Error,
    grpc::{client_info, convert},
    pb::{self, security_service_server::SecurityService},
    service::{State, passkeys, security as svc},
};
use tonic::{Request, Response, Status};

/// The SecurityService adapter.
#[derive(Debug, Clone)]
pub struct SecurityApi {
    state: State,
}

impl SecurityApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

fn ended(n: usize) -> Response<pb::EndSessionResponse> {
    Response::new(pb::EndSessionResponse {
        ended: i32::try_from(n).unwrap_or(i32::MAX),
    })
}

#[tonic::async_trait]
impl SecurityService for SecurityApi {
    async fn get_security(
        &self,
        request: Request<pb::GetSecurityRequest>,
    ) -> Result<Response<pb::Security>, Status> {
        let caller = Caller::of(&request)?;
        let o = svc::overview(&self.state, &caller).await?;
        Ok(Response::new(convert::security(o)))
    }

    async fn begin_totp_enrollment(
        &self,
        request: Request<pb::BeginTotpEnrollmentRequest>,
    ) -> Result<Response<pb::TotpEnrollment>, Status> {
        let caller = Caller::of(&request)?;
        let e = svc::begin_totp(&self.state, &caller).await?;
        Ok(Response::new(convert::totp_enrollment(e)))
    }

    async fn confirm_totp(
        &self,
        request: Request<pb::ConfirmTotpRequest>,
    ) -> Result<Response<pb::RecoveryCodes>, Status> {
        let caller = Caller::of(&request)?;
        let client = client_info(&request);
        let r = request.get_ref();
        let code = Proof::code("code", &r.code)?;
        if r.password.is_empty() {
            return Err(Error::invalid("password", "is required").into());
        }
        let codes = svc::confirm_totp(&self.state, &caller, code, &r.password, &client).await?;
        Ok(Response::new(pb::RecoveryCodes { codes }))
    }

    async fn disable_totp(
        &self,
        request: Request<pb::DisableTotpRequest>,
    ) -> Result<Response<pb::DisableTotpResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let proof = Proof::parse(&r.code, &r.recovery_code, "")?;
        svc::disable_totp(&self.state, &caller, proof, &client_info(&request)).await?;
        Ok(Response::new(pb::DisableTotpResponse {}))
    }

    async fn regenerate_recovery_codes(
        &self,
        request: Request<pb::RegenerateRecoveryCodesRequest>,
    ) -> Result<Response<pb::RecoveryCodes>, Status> {
        let caller = Caller::of(&request)?;
        let code = Proof::code("code", &request.get_ref().code)?;
        let codes =
            svc::regenerate_codes(&self.state, &caller, code, &client_info(&request)).await?;
        Ok(Response::new(pb::RecoveryCodes { codes }))
    }

    async fn begin_passkey_registration(
        &self,
        request: Request<pb::BeginPasskeyRegistrationRequest>,
    ) -> Result<Response<pb::PasskeyOptions>, Status> {
        let caller = Caller::of(&request)?;
        let options_json = passkeys::begin_registration(&self.state, &caller).await?;
        Ok(Response::new(pb::PasskeyOptions { options_json }))
    }

    async fn finish_passkey_registration(
        &self,
        request: Request<pb::FinishPasskeyRegistrationRequest>,
    ) -> Result<Response<pb::Passkey>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let name = PasskeyName::parse("name", &r.name)?;
        if r.credential_json.is_empty() {
            return Err(Error::invalid("credential_json", "is required").into());
        }
        if r.password.is_empty() {
            return Err(Error::invalid("password", "is required").into());
        }
        let new = (&name, r.credential_json.as_str());
        let client = client_info(&request);
        let p = passkeys::finish_registration(&self.state, &caller, new, &r.password, &client);
        Ok(Response::new(convert::passkey(p.await?)))
    }

    async fn list_passkeys(
        &self,
        request: Request<pb::ListPasskeysRequest>,
    ) -> Result<Response<pb::ListPasskeysResponse>, Status> {
        let caller = Caller::of(&request)?;
        let list = passkeys::list(&self.state, &caller).await?;
        Ok(Response::new(pb::ListPasskeysResponse {
            passkeys: list.into_iter().map(convert::passkey).collect(),
        }))
    }

    async fn delete_passkey(
        &self,
        request: Request<pb::DeletePasskeyRequest>,
    ) -> Result<Response<pb::DeletePasskeyResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let id = convert::passkey_id(&r.passkey_id)?;
        if r.password.is_empty() {
            return Err(Error::invalid("password", "is required").into());
        }
        passkeys::delete(
            &self.state,
            &caller,
            &id,
            &r.password,
            &client_info(&request),
        )
        .await?;
        Ok(Response::new(pb::DeletePasskeyResponse {}))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let list = svc::sessions(&self.state, caller.user_id).await?;
        Ok(Response::new(convert::sessions(list, Some(caller.session))))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = parse_uuid("session_id", &request.get_ref().session_id)?;
        Ok(ended(svc::end_own(&self.state, &caller, id).await?))
    }

    async fn end_other_sessions(
        &self,
        request: Request<pb::EndOtherSessionsRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let caller = Caller::of(&request)?;
        Ok(ended(svc::end_others(&self.state, &caller).await?))
    }
}
