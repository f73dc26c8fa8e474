//! `epop.v1.AdminService`: users, roles, divisions and the audit log (ADMIN role only).

use crate::{
    auth::Caller,
    domain::users::{Filter as UserFilter, Order as UserOrder},
    domain::{
        DisplayName, DivisionId, DivisionName, Email, PageSize, PageToken, Password, Role,
        SearchText, UserId, parse_date, parse_uuid, security::SecondFactorPolicy,
    },
    error::Error,
    grpc::convert::{self, Mask},
    pb::{self, admin_service_server::AdminService},
    service::{self, State, accounts::NewAccount, admin::UserUpdate},
};
use tonic::{Request, Response, Status};

/// The AdminService adapter.
#[derive(Debug, Clone)]
pub struct AdminApi {
    state: State,
}

impl AdminApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }

    /// The caller of `request` as an admin (checked before anything is parsed).
    async fn admin<T>(&self, request: &Request<T>) -> Result<service::admin::Admin, Status> {
        let caller = Caller::of(request)?;
        Ok(service::admin::authorize(&self.state, &caller).await?)
    }
}

fn division_ids(field: &str, raw: &[i32]) -> Result<Vec<DivisionId>, Error> {
    raw.iter().map(|d| DivisionId::parse(field, *d)).collect()
}

fn optional_division(raw: i32) -> Result<Option<DivisionId>, Error> {
    match raw {
        0 => Ok(None),
        d => DivisionId::parse("division_id", d).map(Some),
    }
}

/// Validates an update request into the fields to change.
fn user_update(r: &pb::UpdateUserRequest) -> Result<UserUpdate, Error> {
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &[
            "email",
            "display_name",
            "password",
            "role",
            "division_ids",
            "disabled",
        ],
    )?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut u = UserUpdate::default();
    if mask.wants("email", r.email.is_some()) {
        u.email = Some(Email::parse("email", &text(&r.email))?);
    }
    if mask.wants("display_name", r.display_name.is_some()) {
        u.display_name = Some(DisplayName::parse("display_name", &text(&r.display_name))?);
    }
    if mask.wants("password", r.password.is_some()) {
        u.password = Some(Password::parse("password", &text(&r.password))?);
    }
    if mask.wants("role", r.role.is_some()) {
        let role = convert::role_from_pb("role", r.role.unwrap_or_default())?;
        u.role =
            Some(role.ok_or_else(|| Error::invalid("role", "must be ROLE_USER or ROLE_ADMIN"))?);
    }
    if mask.wants("division_ids", !r.division_ids.is_empty()) {
        u.divisions = Some(division_ids("division_ids", &r.division_ids)?);
    }
    if mask.wants("disabled", r.disabled.is_some()) {
        u.disabled = Some(r.disabled.unwrap_or_default());
    }
    Ok(u)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_ai_usage(
        &self,
        request: Request<pb::ListAiUsageRequest>,
    ) -> Result<Response<pb::ListAiUsageResponse>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let user = match r.user_id.as_str() {
            "" => None,
            raw => Some(UserId::parse("user_id", raw)?.0),
        };
        let today = chrono::Utc::now().date_naive();
        let from = parse_date("from_day", &r.from_day)?.unwrap_or(today - chrono::Days::new(30));
        let to = parse_date("to_day", &r.to_day)?.unwrap_or(today);
        let rows = service::ai::usage(&self.state, &admin, user, from, to).await?;
        Ok(Response::new(pb::ListAiUsageResponse {
            usage: rows.into_iter().map(convert::ai::daily_usage).collect(),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::AdminListUsersRequest>,
    ) -> Result<Response<pb::AdminListUsersResponse>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let filter = UserFilter {
            query: SearchText::parse("query", &r.query)?,
            role: convert::role_from_pb("role", r.role)?,
            division: optional_division(r.division_id)?,
            active_only: false,
            order: UserOrder::Email,
        };
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let page = service::admin::list_users(&self.state, &admin, filter, size, token).await?;
        Ok(Response::new(pb::AdminListUsersResponse {
            users: page.items.into_iter().map(convert::user).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let email = Email::parse("email", &r.email)?;
        let display_name = if r.display_name.trim().is_empty() {
            DisplayName::parse("display_name", email.local_part())?
        } else {
            DisplayName::parse("display_name", &r.display_name)?
        };
        let new = NewAccount {
            password: Password::parse("password", &r.password)?,
            role: convert::role_from_pb("role", r.role)?.unwrap_or(Role::User),
            divisions: division_ids("division_ids", &r.division_ids)?,
            email,
            display_name,
        };
        let u = service::admin::create_user(&self.state, &admin, new).await?;
        Ok(Response::new(convert::user(u)))
    }

    async fn get_user(
        &self,
        request: Request<pb::AdminGetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let admin = self.admin(&request).await?;
        let id = UserId::parse("id", &request.get_ref().id)?;
        let u = service::admin::get_user(&self.state, &admin, id).await?;
        Ok(Response::new(convert::user(u)))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let id = UserId::parse("id", &r.id)?;
        let update = user_update(&r)?;
        let u = service::admin::update_user(&self.state, &admin, id, update).await?;
        Ok(Response::new(convert::user(u)))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let admin = self.admin(&request).await?;
        let id = UserId::parse("id", &request.get_ref().id)?;
        service::admin::delete_user(&self.state, &admin, id).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_divisions(
        &self,
        request: Request<pb::ListDivisionsRequest>,
    ) -> Result<Response<pb::ListDivisionsResponse>, Status> {
        let admin = self.admin(&request).await?;
        let divisions = service::admin::list_divisions(&self.state, &admin).await?;
        Ok(Response::new(pb::ListDivisionsResponse {
            divisions: divisions.into_iter().map(convert::division).collect(),
        }))
    }

    async fn create_division(
        &self,
        request: Request<pb::CreateDivisionRequest>,
    ) -> Result<Response<pb::Division>, Status> {
        let admin = self.admin(&request).await?;
        let name = DivisionName::parse("name", &request.get_ref().name)?;
        let d = service::admin::create_division(&self.state, &admin, name).await?;
        Ok(Response::new(convert::division(d)))
    }

    async fn update_division(
        &self,
        request: Request<pb::UpdateDivisionRequest>,
    ) -> Result<Response<pb::Division>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let id = DivisionId::parse("id", r.id)?;
        let name = DivisionName::parse("name", &r.name)?;
        let d = service::admin::rename_division(&self.state, &admin, id, name).await?;
        Ok(Response::new(convert::division(d)))
    }

    async fn delete_division(
        &self,
        request: Request<pb::DeleteDivisionRequest>,
    ) -> Result<Response<pb::DeleteDivisionResponse>, Status> {
        let admin = self.admin(&request).await?;
        let id = DivisionId::parse("id", request.get_ref().id)?;
        service::admin::delete_division(&self.state, &admin, id).await?;
        Ok(Response::new(pb::DeleteDivisionResponse {}))
    }

    async fn add_division_member(
        &self,
        request: Request<pb::AddDivisionMemberRequest>,
    ) -> Result<Response<pb::Division>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let id = DivisionId::parse("division_id", r.division_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        let d = service::admin::set_division_member(&self.state, &admin, id, user, true).await?;
        Ok(Response::new(convert::division(d)))
    }

    async fn remove_division_member(
        &self,
        request: Request<pb::RemoveDivisionMemberRequest>,
    ) -> Result<Response<pb::Division>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let id = DivisionId::parse("division_id", r.division_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        let d = service::admin::set_division_member(&self.state, &admin, id, user, false).await?;
        Ok(Response::new(convert::division(d)))
    }

    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> Result<Response<pb::ListAuditLogResponse>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.into_inner();
        let filter = convert::audit::filter(&r)?;
        let size = PageSize::parse(r.page_size, 100, 500)?;
        let token = PageToken::parse(&r.page_token)?;
        let page = service::audit::list(&self.state, &admin, filter, size, token).await?;
        Ok(Response::new(pb::ListAuditLogResponse {
            entries: page.items.into_iter().map(convert::audit::entry).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_user_sessions(
        &self,
        request: Request<pb::ListUserSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let admin = self.admin(&request).await?;
        let user = UserId::parse("user_id", &request.get_ref().user_id)?;
        let list = service::security::sessions_of(&self.state, &admin, user).await?;
        Ok(Response::new(convert::sessions(list, None)))
    }

    async fn end_user_sessions(
        &self,
        request: Request<pb::EndUserSessionsRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let admin = self.admin(&request).await?;
        let r = request.get_ref();
        let user = UserId::parse("user_id", &r.user_id)?;
        let session = match r.session_id.as_str() {
            "" => None,
            s => Some(parse_uuid("session_id", s)?),
        };
        let n = service::security::end_for(&self.state, &admin, user, session).await?;
        Ok(Response::new(pb::EndSessionResponse {
            ended: i32::try_from(n).unwrap_or(i32::MAX),
        }))
    }

    async fn reset_second_factor(
        &self,
        request: Request<pb::ResetSecondFactorRequest>,
    ) -> Result<Response<pb::ResetSecondFactorResponse>, Status> {
        let admin = self.admin(&request).await?;
        let user = UserId::parse("user_id", &request.get_ref().user_id)?;
        service::security::reset_second_factor(&self.state, &admin, user).await?;
        Ok(Response::new(pb::ResetSecondFactorResponse {}))
    }

    async fn get_sign_in_policy(
        &self,
        request: Request<pb::GetSignInPolicyRequest>,
    ) -> Result<Response<pb::SignInPolicy>, Status> {
        let admin = self.admin(&request).await?;
        let p = service::security::policy(&self.state, &admin).await?;
        Ok(Response::new(pb::SignInPolicy {
            require_second_factor: p.as_str().into(),
        }))
    }

    async fn update_sign_in_policy(
        &self,
        request: Request<pb::SignInPolicy>,
    ) -> Result<Response<pb::SignInPolicy>, Status> {
        let admin = self.admin(&request).await?;
        let p = SecondFactorPolicy::parse(
            "require_second_factor",
            &request.get_ref().require_second_factor,
        )?;
        let p = service::security::set_policy(&self.state, &admin, p).await?;
        Ok(Response::new(pb::SignInPolicy {
            require_second_factor: p.as_str().into(),
        }))
    }
}
