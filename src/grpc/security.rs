//! `epop.v1.SecurityService`: the caller's second factor and sessions.

use crate::{
    auth::Caller,
    domain::parse_uuid,
    domain::security::Proof,
    grpc::convert,
    pb::{self, security_service_server::SecurityService},
    service::{State, security as svc},
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
        let code = Proof::code("code", &request.get_ref().code)?;
        let codes = svc::confirm_totp(&self.state, &caller, code).await?;
        Ok(Response::new(pb::RecoveryCodes { codes }))
    }

    async fn disable_totp(
        &self,
        request: Request<pb::DisableTotpRequest>,
    ) -> Result<Response<pb::DisableTotpResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let proof = Proof::parse(&r.code, &r.recovery_code)?;
        svc::disable_totp(&self.state, &caller, proof).await?;
        Ok(Response::new(pb::DisableTotpResponse {}))
    }

    async fn regenerate_recovery_codes(
        &self,
        request: Request<pb::RegenerateRecoveryCodesRequest>,
    ) -> Result<Response<pb::RecoveryCodes>, Status> {
        let caller = Caller::of(&request)?;
        let code = Proof::code("code", &request.get_ref().code)?;
        let codes = svc::regenerate_codes(&self.state, &caller, code).await?;
        Ok(Response::new(pb::RecoveryCodes { codes }))
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
