//! `epop.v1.AuthService`: sign-in (password and second factor, or single sign-on), refresh,
//! sign-out, password reset.

use crate::{
    auth::cookie,
    domain::security::Proof,
    domain::{Email, Password},
    error::Error,
    grpc::{client_info as client, client_ip, convert},
    pb::{self, auth_service_server::AuthService},
    service::{
        self, State,
        auth::{Challenge, Session, SignIn},
    },
};
use tonic::{Request, Response, Status, metadata::MetadataValue};

/// The AuthService adapter.
#[derive(Debug, Clone)]
pub struct AuthApi {
    state: State,
}

impl AuthApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }

    /// Puts `set-cookie` values into a response's metadata.
    fn with_cookies<T>(mut response: Response<T>, cookies: Vec<String>) -> Response<T> {
        for c in cookies {
            if let Ok(v) = MetadataValue::try_from(c) {
                response.metadata_mut().append("set-cookie", v);
            }
        }
        response
    }

    fn session_cookies(&self, s: &Session) -> Vec<String> {
        cookie::set(&s.refresh_token, self.state.refresh_ttl)
    }

    /// The reply of a finished sign-in, with its cookie.
    fn signed_in(
        &self,
        s: Session,
        in_body: bool,
        recovery_codes: Vec<String>,
    ) -> Response<pb::LoginResponse> {
        let cookies = self.session_cookies(&s);
        let reply = pb::LoginResponse {
            access_token: s.access_token,
            token_type: "Bearer".into(),
            access_token_expire_time: Some(convert::timestamp(s.access_expires_at)),
            refresh_token: if in_body {
                s.refresh_token
            } else {
                String::new()
            },
            refresh_token_expire_time: Some(convert::timestamp(s.refresh_expires_at)),
            user: Some(convert::user(s.user)),
            second_factor: None,
            recovery_codes,
        };
        Self::with_cookies(Response::new(reply), cookies)
    }
}

/// The reply of a sign-in that needs a second factor: no tokens, no cookie.
fn challenged(c: Challenge) -> pb::LoginResponse {
    pb::LoginResponse {
        token_type: "Bearer".into(),
        second_factor: Some(pb::SecondFactorChallenge {
            challenge: c.token,
            expire_time: Some(convert::timestamp(c.expires_at)),
            methods: c.methods.into_iter().map(str::to_owned).collect(),
            enrollment: c.enrollment.map(convert::totp_enrollment),
            passkey_options_json: c.passkey_options.unwrap_or_default(),
        }),
        ..Default::default()
    }
}

/// The refresh token from the body, or else from the `epop_refresh` cookie.
fn refresh_token<T>(request: &Request<T>, body: &str) -> String {
    if body.is_empty() {
        cookie::read(request.metadata().as_ref()).unwrap_or_default()
    } else {
        body.to_owned()
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let client = client(&request);
        let r = request.into_inner();
        let email = Email::parse("email", &r.email)?;
        if r.password.is_empty() {
            return Err(Error::invalid("password", "is required").into());
        }
        match service::auth::login(&self.state, &email, &r.password, &client).await? {
            SignIn::Session(s) => Ok(self.signed_in(*s, r.return_refresh_token, Vec::new())),
            SignIn::SecondFactor(c) => Ok(Response::new(challenged(c))),
        }
    }

    async fn verify_second_factor(
        &self,
        request: Request<pb::VerifySecondFactorRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let client = client(&request);
        let r = request.into_inner();
        if r.challenge.is_empty() {
            return Err(Error::invalid("challenge", "is required").into());
        }
        let proof = Proof::parse(&r.code, &r.recovery_code, &r.passkey_json)?;
        let (s, codes) =
            service::auth::verify_second_factor(&self.state, &r.challenge, proof, &client).await?;
        Ok(self.signed_in(s, r.return_refresh_token, codes))
    }

    async fn start_passkey_sign_in(
        &self,
        _request: Request<pb::StartPasskeySignInRequest>,
    ) -> Result<Response<pb::PasskeyOptions>, Status> {
        let options_json = service::passkeys::start(&self.state, "sign_in", None).await?;
        Ok(Response::new(pb::PasskeyOptions { options_json }))
    }

    async fn finish_passkey_sign_in(
        &self,
        request: Request<pb::FinishPasskeySignInRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let client = client(&request);
        let r = request.into_inner();
        if r.credential_json.is_empty() {
            return Err(Error::invalid("credential_json", "is required").into());
        }
        let s = service::passkeys::sign_in(&self.state, &r.credential_json, &client).await?;
        Ok(self.signed_in(s, r.return_refresh_token, Vec::new()))
    }

    async fn list_sign_in_providers(
        &self,
        _request: Request<pb::ListSignInProvidersRequest>,
    ) -> Result<Response<pb::ListSignInProvidersResponse>, Status> {
        let providers = service::auth::providers(&self.state)
            .into_iter()
            .map(|(id, name)| pb::SignInProvider { id, name })
            .collect();
        Ok(Response::new(pb::ListSignInProvidersResponse { providers }))
    }

    async fn start_oidc_sign_in(
        &self,
        request: Request<pb::StartOidcSignInRequest>,
    ) -> Result<Response<pb::StartOidcSignInResponse>, Status> {
        let r = request.into_inner();
        if r.provider.is_empty() {
            return Err(Error::invalid("provider", "is required").into());
        }
        let started = service::auth::start_oidc(&self.state, &r.provider).await?;
        let cookies = cookie::set_oidc(&started.binder);
        let reply = pb::StartOidcSignInResponse {
            authorization_url: started.url,
            state: started.state,
            binder: started.binder,
        };
        Ok(Self::with_cookies(Response::new(reply), cookies))
    }

    async fn finish_oidc_sign_in(
        &self,
        request: Request<pb::FinishOidcSignInRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let client = client(&request);
        let cookie_binder = cookie::read_named(request.metadata().as_ref(), cookie::OIDC_NAME);
        let r = request.into_inner();
        if r.state.is_empty() {
            return Err(Error::invalid("state", "is required").into());
        }
        if r.code.is_empty() {
            return Err(Error::invalid("code", "is required").into());
        }
        let binder = if r.binder.is_empty() {
            cookie_binder.unwrap_or_default()
        } else {
            r.binder.clone()
        };
        let signed = service::auth::finish_oidc(&self.state, &r.state, &r.code, &binder, &client);
        match signed.await? {
            SignIn::Session(s) => Ok(self.signed_in(*s, r.return_refresh_token, Vec::new())),
            SignIn::SecondFactor(c) => Ok(Response::new(challenged(c))),
        }
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let token = refresh_token(&request, &request.get_ref().refresh_token);
        let client = client_ip(&request);
        let r = request.into_inner();
        let s = service::auth::refresh(&self.state, &token, client).await?;
        let cookies = self.session_cookies(&s);
        let reply = pb::RefreshResponse {
            access_token: s.access_token,
            token_type: "Bearer".into(),
            access_token_expire_time: Some(convert::timestamp(s.access_expires_at)),
            refresh_token: if r.return_refresh_token {
                s.refresh_token
            } else {
                String::new()
            },
            refresh_token_expire_time: Some(convert::timestamp(s.refresh_expires_at)),
            user: Some(convert::user(s.user)),
        };
        Ok(Self::with_cookies(Response::new(reply), cookies))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let token = refresh_token(&request, &request.get_ref().refresh_token);
        service::auth::logout(&self.state, &token).await?;
        Ok(Self::with_cookies(
            Response::new(pb::LogoutResponse {}),
            cookie::clear(),
        ))
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        let email = Email::parse("email", &request.get_ref().email)?;
        service::auth::request_reset(&self.state, &email, client_ip(&request)).await?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    async fn confirm_password_reset(
        &self,
        request: Request<pb::ConfirmPasswordResetRequest>,
    ) -> Result<Response<pb::ConfirmPasswordResetResponse>, Status> {
        let client = client_ip(&request);
        let r = request.into_inner();
        if r.token.is_empty() {
            return Err(Error::invalid("token", "is required").into());
        }
        let password = Password::parse("new_password", &r.new_password)?;
        service::auth::confirm_reset(&self.state, &r.token, &password, client).await?;
        Ok(Response::new(pb::ConfirmPasswordResetResponse {}))
    }
}
