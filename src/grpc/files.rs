//! `epop.v1.FileService`: presigned uploads and downloads, and file metadata.

use crate::{
    auth::Caller,
    domain::files::{Checksum, ContentType, FileId, FileName, Upload},
    grpc::convert::files as convert,
    pb::{self, file_service_server::FileService},
    service::{self, State},
};
use tonic::{Request, Response, Status};

/// The FileService adapter.
#[derive(Debug, Clone)]
pub struct FileApi {
    state: State,
}

impl FileApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl FileService for FileApi {
    async fn presign_upload(
        &self,
        request: Request<pb::PresignUploadRequest>,
    ) -> Result<Response<pb::PresignUploadResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let upload = Upload {
            file_name: FileName::parse("file_name", &r.file_name)?,
            content_type: ContentType::parse("content_type", &r.content_type)?,
            size: r.size,
            checksum: Checksum::parse("checksum_sha256", &r.checksum_sha256)?,
        };
        let (file, presigned) =
            service::files::presign_upload(&self.state, &caller, upload).await?;
        Ok(Response::new(convert::upload(file, presigned)))
    }

    async fn presign_download(
        &self,
        request: Request<pb::PresignDownloadRequest>,
    ) -> Result<Response<pb::PresignDownloadResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = FileId::parse("id", &request.get_ref().id)?;
        let (file, presigned) = service::files::presign_download(&self.state, &caller, id).await?;
        Ok(Response::new(convert::download(file, presigned)))
    }

    async fn get_file(
        &self,
        request: Request<pb::GetFileRequest>,
    ) -> Result<Response<pb::FileInfo>, Status> {
        let caller = Caller::of(&request)?;
        let id = FileId::parse("id", &request.get_ref().id)?;
        let file = service::files::get(&self.state, &caller, id).await?;
        Ok(Response::new(convert::file_info(file)))
    }
}
