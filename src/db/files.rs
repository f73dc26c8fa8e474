//! Queries of `attachments`: reserving uploads, who may see a file, attaching uploads to a
//! message, and the states the cleanup jobs move files through (pending or attached, then
//! deleting, then gone).

use crate::{
    db::schema::{attachments, conversation_members, messages},
    domain::{
        UserId,
        files::{File, FileState},
    },
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

/// A row of `attachments`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = attachments, check_for_backend(diesel::pg::Pg))]
struct FileRow {
    id: Uuid,
    message_id: Option<Uuid>,
    uploader_id: Option<Uuid>,
    key: String,
    file_name: String,
    size: i64,
    content_type: String,
    created_at: DateTime<Utc>,
    state: String,
    checksum_sha256: Option<String>,
    staging_key: Option<String>,
}

/// Where a file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objects {
    /// The object members download once attached (before: the place of the file, see
    /// `Storage::new_key`; for files reserved by earlier versions: the uploaded object).
    pub key: String,
    /// Where the upload URL writes; none for files reserved by earlier versions.
    pub staging: Option<String>,
}

impl Objects {
    /// The prefix under which all of the file's objects live.
    pub fn dir(&self) -> &str {
        match &self.staging {
            Some(s) => s.rsplit_once('/').map_or(s.as_str(), |(dir, _)| dir),
            None => &self.key,
        }
    }

    /// The object that holds the bytes of a file in `state`.
    pub fn current(&self, state: FileState) -> &str {
        match (&self.staging, state) {
            (Some(s), FileState::Pending) => s,
            _ => &self.key,
        }
    }
}

/// An upload checked and copied to the key it is attached under.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The file (its checksum: that of the sealed bytes).
    pub file: File,
    /// The object that holds those bytes, which nothing can write.
    pub key: String,
    /// The object the upload URL wrote (none for files reserved by earlier versions).
    pub staging: Option<String>,
}

impl FileRow {
    fn split(self) -> (File, Objects) {
        let file = File {
            id: self.id,
            file_name: self.file_name,
            content_type: self.content_type,
            size: self.size,
            uploader_id: self.uploader_id,
            message_id: self.message_id,
            state: FileState::from_stored(&self.state),
            checksum_sha256: self.checksum_sha256,
            created_at: self.created_at,
        };
        let objects = Objects {
            key: self.key,
            staging: self.staging_key,
        };
        (file, objects)
    }
}

/// A file to reserve.
#[derive(Debug, Clone, Copy)]
pub struct NewFile<'a> {
    /// Who uploads it.
    pub uploader: UserId,
    /// Its place (`Storage::new_key`).
    pub key: &'a str,
    /// Where its upload URL writes.
    pub staging_key: &'a str,
    /// Its bucket.
    pub bucket: &'a str,
    /// Its name.
    pub file_name: &'a str,
    /// The type it is stored as.
    pub content_type: &'a str,
    /// Its exact size.
    pub size: i64,
    /// The uploader's SHA-256.
    pub checksum_sha256: Option<&'a str>,
}

/// What a user holds: (pending uploads, their bytes, bytes of every file not being deleted),
/// after locking the user's row so that two reservations at once count each other.
pub async fn holdings(conn: &mut AsyncPgConnection, user: UserId) -> Result<(i64, i64, i64)> {
    use crate::db::schema::users;
    use diesel::sql_types::{BigInt, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = BigInt)]
        pending: i64,
        #[diesel(sql_type = BigInt)]
        pending_bytes: i64,
        #[diesel(sql_type = BigInt)]
        stored: i64,
    }
    users::table
        .find(user.0)
        .select(users::id)
        .for_update()
        .first::<Uuid>(conn)
        .await
        .optional()?;
    let held: Held = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, \
                coalesce(sum(size) FILTER (WHERE state = 'pending'), 0)::bigint AS pending_bytes, \
                coalesce(sum(size) FILTER (WHERE state <> 'deleting'), 0)::bigint AS stored \
         FROM attachments WHERE uploader_id = $1",
    )
    .bind::<SqlUuid, _>(user.0)
    .get_result(conn)
    .await?;
    Ok((held.pending, held.pending_bytes, held.stored))
}

/// Reserves a pending upload.
pub async fn insert_pending(conn: &mut AsyncPgConnection, new: NewFile<'_>) -> Result<File> {
    diesel::insert_into(attachments::table)
        .values((
            attachments::uploader_id.eq(new.uploader.0),
            attachments::key.eq(new.key),
            attachments::staging_key.eq(new.staging_key),
            attachments::bucket.eq(new.bucket),
            attachments::file_name.eq(new.file_name),
            attachments::content_type.eq(new.content_type),
            attachments::size.eq(new.size),
            attachments::checksum_sha256.eq(new.checksum_sha256),
            attachments::state.eq(FileState::Pending.as_str()),
        ))
        .returning(FileRow::as_returning())
        .get_result(conn)
        .await
        .map(|r| r.split().0)
        .map_err(Into::into)
}

/// The file `id` with the object that holds its bytes, when `user` may see it: their own
/// pending upload, or a file attached to a message (not deleted) of a conversation they are a
/// member of.
pub async fn visible(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: Uuid,
) -> Result<Option<(File, String)>> {
    let member_of_its_conversation = diesel::dsl::exists(
        messages::table
            .inner_join(
                conversation_members::table
                    .on(conversation_members::conversation_id.eq(messages::conversation_id)),
            )
            .filter(messages::id.nullable().eq(attachments::message_id))
            .filter(messages::deleted_at.is_null())
            .filter(conversation_members::user_id.eq(user.0)),
    );
    let own_pending = attachments::state
        .eq(FileState::Pending.as_str())
        .and(attachments::uploader_id.eq(user.0));
    let attached = attachments::state
        .eq(FileState::Attached.as_str())
        .and(member_of_its_conversation);
    attachments::table
        .find(id)
        .filter(own_pending.or(attached))
        .select(FileRow::as_select())
        .first(conn)
        .await
        .optional()
        .map(|r| {
            r.map(|r| {
                let (file, objects) = r.split();
                let key = objects.current(file.state).to_owned();
                (file, key)
            })
        })
        .map_err(Into::into)
}

/// Of `ids`, the pending uploads of `uploader`, with their objects.
pub async fn pending_of(
    conn: &mut AsyncPgConnection,
    uploader: UserId,
    ids: &[Uuid],
) -> Result<Vec<(File, Objects)>> {
    attachments::table
        .filter(attachments::id.eq_any(ids))
        .filter(attachments::uploader_id.eq(uploader.0))
        .filter(attachments::state.eq(FileState::Pending.as_str()))
        .select(FileRow::as_select())
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(FileRow::split).collect())
        .map_err(Into::into)
}

/// Attaches pending uploads of `sender` to a message, in the order given, each with its
/// sealed object and checksum; INVALID_ARGUMENT on `attachment_ids` when any is no longer
/// such an upload (attached or expired meanwhile).
pub async fn attach(
    conn: &mut AsyncPgConnection,
    message: Uuid,
    sender: UserId,
    sealed: &[Sealed],
) -> Result<()> {
    for s in sealed {
        let id = s.file.id;
        let updated = diesel::update(
            attachments::table
                .find(id)
                .filter(attachments::uploader_id.eq(sender.0))
                .filter(attachments::state.eq(FileState::Pending.as_str())),
        )
        .set((
            attachments::message_id.eq(message),
            attachments::state.eq(FileState::Attached.as_str()),
            attachments::key.eq(&s.key),
            attachments::checksum_sha256.eq(&s.file.checksum_sha256),
        ))
        .execute(conn)
        .await?;
        if updated == 0 {
            return Err(Error::invalid(
                "attachment_ids",
                format!("{id} is no longer an upload of yours waiting to be attached"),
            ));
        }
    }
    Ok(())
}

/// The files attached to each of `messages`, in attaching order.
pub async fn of_messages(
    conn: &mut AsyncPgConnection,
    messages: &[Uuid],
) -> Result<HashMap<Uuid, Vec<File>>> {
    let rows: Vec<FileRow> = attachments::table
        .filter(attachments::message_id.eq_any(messages))
        .filter(attachments::state.eq(FileState::Attached.as_str()))
        .order((attachments::created_at, attachments::id))
        .select(FileRow::as_select())
        .load(conn)
        .await?;
    let mut map: HashMap<Uuid, Vec<File>> = HashMap::new();
    for r in rows {
        let f = r.split().0;
        if let Some(m) = f.message_id {
            map.entry(m).or_default().push(f);
        }
    }
    Ok(map)
}

/// Marks the files of a (deleted) message for deletion; nobody sees them from now on.
pub async fn release_message(conn: &mut AsyncPgConnection, message: Uuid) -> Result<usize> {
    diesel::update(
        attachments::table
            .filter(attachments::message_id.eq(message))
            .filter(attachments::state.eq(FileState::Attached.as_str())),
    )
    .set(attachments::state.eq(FileState::Deleting.as_str()))
    .execute(conn)
    .await
    .map_err(Into::into)
}

/// Marks an upload for deletion unless it was attached; its objects when it is (now or
/// already) being deleted.
pub async fn release_pending(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<Objects>> {
    diesel::update(
        attachments::table
            .find(id)
            .filter(attachments::state.ne(FileState::Attached.as_str())),
    )
    .set(attachments::state.eq(FileState::Deleting.as_str()))
    .returning((attachments::key, attachments::staging_key))
    .get_result::<(String, Option<String>)>(conn)
    .await
    .optional()
    .map(|found| found.map(|(key, staging)| Objects { key, staging }))
    .map_err(Into::into)
}

/// The state of file `id`, if it still has a row.
pub async fn state_of(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<FileState>> {
    attachments::table
        .find(id)
        .select(attachments::state)
        .get_result::<String>(conn)
        .await
        .optional()
        .map(|s| s.as_deref().map(FileState::from_stored))
        .map_err(Into::into)
}

/// The files of `message` being deleted: ids and objects.
pub async fn deleting_of_message(
    conn: &mut AsyncPgConnection,
    message: Uuid,
) -> Result<Vec<(Uuid, Objects)>> {
    attachments::table
        .filter(attachments::message_id.eq(message))
        .filter(attachments::state.eq(FileState::Deleting.as_str()))
        .select((attachments::id, attachments::key, attachments::staging_key))
        .load::<(Uuid, String, Option<String>)>(conn)
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|(id, key, staging)| (id, Objects { key, staging }))
                .collect()
        })
        .map_err(Into::into)
}

/// Forgets a file whose object is gone.
pub async fn remove(conn: &mut AsyncPgConnection, id: Uuid) -> Result<()> {
    diesel::delete(
        attachments::table
            .find(id)
            .filter(attachments::state.eq(FileState::Deleting.as_str())),
    )
    .execute(conn)
    .await?;
    Ok(())
}
