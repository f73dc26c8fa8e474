//! `epop.v1.TaskService`: the tasks of a project.

use crate::{
    auth::Caller,
    domain::{
        Description, PageSize, PageToken, ProjectId, SearchText, TaskId, TaskStatus, TaskTitle,
        UserId, parse_date,
        tasks::{Filter, NewTask, Sort, SortKey, TaskChanges},
    },
    error::{Error, Result},
    grpc::convert::{self, Mask},
    pb::{self, task_service_server::TaskService},
    service::{self, State, tasks::MAX_DESCRIPTION},
};
use tonic::{Request, Response, Status};

/// The TaskService adapter.
#[derive(Debug, Clone)]
pub struct TaskApi {
    state: State,
}

impl TaskApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

fn optional_user(field: &str, raw: &str) -> Result<Option<UserId>> {
    if raw.is_empty() {
        Ok(None)
    } else {
        UserId::parse(field, raw).map(Some)
    }
}

fn sort(raw: &str) -> Result<Sort> {
    let mut words = raw.split_whitespace();
    let key = match words.next().unwrap_or("create_time") {
        "create_time" | "createTime" => SortKey::CreateTime,
        "due_date" | "dueDate" => SortKey::DueDate,
        "title" => SortKey::Title,
        "status" => SortKey::Status,
        _ => {
            return Err(Error::invalid(
                "order_by",
                "must be create_time, due_date, title or status",
            ));
        }
    };
    let desc = match (words.next(), words.next()) {
        (None, None) | (Some("asc"), None) => false,
        (Some("desc"), None) => true,
        _ => {
            return Err(Error::invalid(
                "order_by",
                "may only be followed by asc or desc",
            ));
        }
    };
    Ok(Sort { key, desc })
}

/// Validated changes of an update request.
fn changes(r: &pb::UpdateTaskRequest) -> Result<TaskChanges> {
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &["title", "description", "status", "assignee_id", "due_date"],
    )?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut c = TaskChanges::default();
    if mask.wants("title", r.title.is_some()) {
        c.title = Some(TaskTitle::parse("title", &text(&r.title))?);
    }
    if mask.wants("description", r.description.is_some()) {
        c.description = Some(Description::parse(
            "description",
            &text(&r.description),
            MAX_DESCRIPTION,
        )?);
    }
    if mask.wants("status", r.status.is_some()) {
        let s = convert::status_from_pb("status", r.status.unwrap_or_default())?;
        c.status = Some(s.ok_or_else(|| Error::invalid("status", "is required"))?);
    }
    if mask.wants("assignee_id", r.assignee_id.is_some()) {
        c.assignee_id = Some(optional_user("assignee_id", &text(&r.assignee_id))?);
    }
    if mask.wants("due_date", r.due_date.is_some()) {
        c.due_date = Some(parse_date("due_date", &text(&r.due_date))?);
    }
    Ok(c)
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let project = ProjectId::parse("project_id", &r.project_id)?;
        let statuses = r
            .status
            .iter()
            .map(|s| {
                convert::status_from_pb("status", *s)?
                    .ok_or_else(|| Error::invalid("status", "must be a status"))
            })
            .collect::<Result<Vec<_>>>()?;
        let filter = Filter {
            statuses,
            assignee: optional_user("assignee_id", &r.assignee_id)?,
            due_before: parse_date("due_before", &r.due_before)?,
            due_after: parse_date("due_after", &r.due_after)?,
            query: SearchText::parse("query", &r.query)?,
        };
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let page = service::tasks::list(
            &self.state,
            &caller,
            project,
            filter,
            sort(&r.order_by)?,
            size,
            token,
        )
        .await?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: page.items.into_iter().map(convert::task).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let new = NewTask {
            project_id: ProjectId::parse("project_id", &r.project_id)?,
            title: TaskTitle::parse("title", &r.title)?,
            description: Description::parse("description", &r.description, MAX_DESCRIPTION)?,
            status: convert::status_from_pb("status", r.status)?.unwrap_or(TaskStatus::Todo),
            assignee_id: optional_user("assignee_id", &r.assignee_id)?,
            due_date: parse_date("due_date", &r.due_date)?,
            creator_id: caller.user_id,
        };
        Ok(Response::new(convert::task(
            service::tasks::create(&self.state, &caller, new).await?,
        )))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = Caller::of(&request)?;
        let id = TaskId::parse("id", &request.get_ref().id)?;
        Ok(Response::new(convert::task(
            service::tasks::get(&self.state, &caller, id).await?,
        )))
    }

    async fn update_task(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = TaskId::parse("id", &r.id)?;
        let etag = match r.etag.trim_matches('"') {
            "" => None,
            e => Some(
                e.parse::<i64>()
                    .map_err(|_| Error::invalid("etag", "is not an etag of this task"))?,
            ),
        };
        let c = changes(&r)?;
        Ok(Response::new(convert::task(
            service::tasks::update(&self.state, &caller, id, etag, c).await?,
        )))
    }

    async fn delete_task(
        &self,
        request: Request<pb::DeleteTaskRequest>,
    ) -> Result<Response<pb::DeleteTaskResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = TaskId::parse("id", &request.get_ref().id)?;
        service::tasks::delete(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteTaskResponse {}))
    }
}
