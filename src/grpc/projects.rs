//! `epop.v1.ProjectService`: projects and their members.

use crate::{
    auth::Caller,
    db::projects::{Member, Project},
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

/// The wire form of a project role.
pub fn role_to_pb(r: ProjectRole) -> pb::ProjectRole {
    match r {
        ProjectRole::Owner => pb::ProjectRole::Owner,
        ProjectRole::Manager => pb::ProjectRole::Manager,
        ProjectRole::Member => pb::ProjectRole::Member,
        ProjectRole::Viewer => pb::ProjectRole::Viewer,
    }
}

/// A project role from request field `field`; unspecified is `None`.
fn role_from_pb(field: &str, raw: i32) -> Result<Option<ProjectRole>> {
    match pb::ProjectRole::try_from(raw) {
        Ok(pb::ProjectRole::Unspecified) => Ok(None),
        Ok(pb::ProjectRole::Owner) => Ok(Some(ProjectRole::Owner)),
        Ok(pb::ProjectRole::Manager) => Ok(Some(ProjectRole::Manager)),
        Ok(pb::ProjectRole::Member) => Ok(Some(ProjectRole::Member)),
        Ok(pb::ProjectRole::Viewer) => Ok(Some(ProjectRole::Viewer)),
        Err(_) => Err(Error::invalid(field, "is not a known project role")),
    }
}

/// The wire form of a project.
pub(crate) fn project(p: Project) -> pb::Project {
    pb::Project {
        id: p.id.0.to_string(),
        name: p.name,
        description: p.description,
        owner_id: p.owner_id.0.to_string(),
        my_role: p
            .my_role
            .map_or(pb::ProjectRole::Unspecified, role_to_pb)
            .into(),
        member_count: i32::try_from(p.member_count).unwrap_or(i32::MAX),
        create_time: Some(convert::timestamp(p.created_at)),
        update_time: Some(convert::timestamp(p.updated_at)),
    }
}

fn member(project_id: ProjectId, m: Member) -> pb::ProjectMember {
    pb::ProjectMember {
        project_id: project_id.0.to_string(),
        user_id: m.user_id.0.to_string(),
        role: role_to_pb(m.role).into(),
        display_name: m.display_name,
        join_time: Some(convert::timestamp(m.joined_at)),
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
            projects: page.items.into_iter().map(project).collect(),
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
        Ok(Response::new(project(p)))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let caller = Caller::of(&request)?;
        let id = ProjectId::parse("id", &request.get_ref().id)?;
        Ok(Response::new(project(
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
        Ok(Response::new(project(p)))
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
            members: members.into_iter().map(|m| member(id, m)).collect(),
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
        let role = role_from_pb("role", r.role)?.unwrap_or(ProjectRole::Member);
        let m = service::projects::add_member(&self.state, &caller, id, user, role).await?;
        Ok(Response::new(member(id, m)))
    }

    async fn update_project_member(
        &self,
        request: Request<pb::UpdateProjectMemberRequest>,
    ) -> Result<Response<pb::ProjectMember>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ProjectId::parse("project_id", &r.project_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        let role =
            role_from_pb("role", r.role)?.ok_or_else(|| Error::invalid("role", "is required"))?;
        let m = service::projects::set_role(&self.state, &caller, id, user, role).await?;
        Ok(Response::new(member(id, m)))
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
