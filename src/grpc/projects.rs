//! `epop.v1.ProjectService`: projects and their members.

use crate::{
    auth::Caller,
    domain::{
        Description, PageSize, PageToken, ProjectId, ProjectName, ProjectRole, SearchText, UserId,
    },
    error::{Error, Result},
    grpc::convert::{self, Mask},
    pb::{self, project_service_server::ProjectService},
    service::{self, State, projects::MAX_DESCRIPTION},
};
use tonic::{Request, Response, Status};

/// The ProjectService adapter.
#[derive(Debug, Clone)]
pub struct ProjectApi {
    state: State,
}

impl ProjectApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ProjectService for ProjectApi {
    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let query = SearchText::parse("query", &r.query)?;
        let page = service::projects::list(&self.state, &caller, r.all, query, size, token).await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: page.items.into_iter().map(convert::project).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let name = ProjectName::parse("name", &r.name)?;
        let description = Description::parse("description", &r.description, MAX_DESCRIPTION)?;
        let p = service::projects::create(&self.state, &caller, name, description).await?;
        Ok(Response::new(convert::project(p)))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let caller = Caller::of(&request)?;
        let id = ProjectId::parse("id", &request.get_ref().id)?;
        Ok(Response::new(convert::project(
            service::projects::get(&self.state, &caller, id).await?,
        )))
    }

    async fn update_project(
        &self,
        request: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ProjectId::parse("id", &r.id)?;
        let mask = Mask::parse(r.update_mask.as_ref(), &["name", "description"])?;
        let name = match mask.wants("name", r.name.is_some()) {
            true => Some(ProjectName::parse(
                "name",
                r.name.as_deref().unwrap_or_default(),
            )?),
            false => None,
        };
        let description = match mask.wants("description", r.description.is_some()) {
            true => Some(Description::parse(
                "description",
                r.description.as_deref().unwrap_or_default(),
                MAX_DESCRIPTION,
            )?),
            false => None,
        };
        let p = service::projects::update(&self.state, &caller, id, name, description).await?;
        Ok(Response::new(convert::project(p)))
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::DeleteProjectResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = ProjectId::parse("id", &request.get_ref().id)?;
        service::projects::delete(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteProjectResponse {}))
    }

    async fn list_project_members(
        &self,
        request: Request<pb::ListProjectMembersRequest>,
    ) -> Result<Response<pb::ListProjectMembersResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = ProjectId::parse("project_id", &request.get_ref().project_id)?;
        let members = service::projects::members(&self.state, &caller, id).await?;
        Ok(Response::new(pb::ListProjectMembersResponse {
            members: members
                .into_iter()
                .map(|m| convert::member(id, m))
                .collect(),
        }))
    }

    async fn add_project_member(
        &self,
        request: Request<pb::AddProjectMemberRequest>,
    ) -> Result<Response<pb::ProjectMember>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ProjectId::parse("project_id", &r.project_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        let role = convert::project_role_from_pb("role", r.role)?.unwrap_or(ProjectRole::Member);
        let m = service::projects::add_member(&self.state, &caller, id, user, role).await?;
        Ok(Response::new(convert::member(id, m)))
    }

    async fn update_project_member(
        &self,
        request: Request<pb::UpdateProjectMemberRequest>,
    ) -> Result<Response<pb::ProjectMember>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ProjectId::parse("project_id", &r.project_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        let role = convert::project_role_from_pb("role", r.role)?
            .ok_or_else(|| Error::invalid("role", "is required"))?;
        let m = service::projects::set_role(&self.state, &caller, id, user, role).await?;
        Ok(Response::new(convert::member(id, m)))
    }

    async fn remove_project_member(
        &self,
        request: Request<pb::RemoveProjectMemberRequest>,
    ) -> Result<Response<pb::RemoveProjectMemberResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ProjectId::parse("project_id", &r.project_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        service::projects::remove_member(&self.state, &caller, id, user).await?;
        Ok(Response::new(pb::RemoveProjectMemberResponse {}))
    }
}
