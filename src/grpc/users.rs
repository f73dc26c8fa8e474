//! `epop.v1.UserService`: my profile and the user directory.

use crate::{
    auth::Caller,
    domain::{DisplayName, DivisionId, PageSize, PageToken, Password, SearchText, UserId},
    error::Error,
    grpc::convert::{self, Mask},
    pb::{self, user_service_server::UserService},
    service::{self, State},
};
use tonic::{Request, Response, Status};

/// The UserService adapter.
#[derive(Debug, Clone)]
pub struct UserApi {
    state: State,
}

impl UserApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = Caller::of(&request)?;
        let u = service::users::me(&self.state, &caller).await?;
        Ok(Response::new(convert::user(u)))
    }

    async fn update_me(
        &self,
        request: Request<pb::UpdateMeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let mask = Mask::parse(r.update_mask.as_ref(), &["display_name"])?;
        let display_name = if mask.wants("display_name", r.display_name.is_some()) {
            Some(DisplayName::parse(
                "display_name",
                r.display_name.as_deref().unwrap_or_default(),
            )?)
        } else {
            None
        };
        let u = service::users::update_me(&self.state, &caller, display_name).await?;
        Ok(Response::new(convert::user(u)))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        if r.current_password.is_empty() {
            return Err(Error::invalid("current_password", "is required").into());
        }
        let new = Password::parse("new_password", &r.new_password)?;
        service::users::change_password(&self.state, &caller, &r.current_password, &new).await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        Caller::of(&request)?;
        let r = request.into_inner();
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let division = match r.division_id {
            0 => None,
            d => Some(DivisionId::parse("division_id", d)?),
        };
        let page = service::users::directory(
            &self.state,
            SearchText::parse("query", &r.query)?,
            division,
            size,
            token,
        )
        .await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.items.into_iter().map(convert::user).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        Caller::of(&request)?;
        let id = UserId::parse("id", &request.get_ref().id)?;
        let u = service::users::get_active(&self.state, id).await?;
        Ok(Response::new(convert::user(u)))
    }
}
