//! The studio: game projects (JSON documents owned by a user), their assets' records, and
//! published content (blogs, posts, ...). All of it lives in SQLite; asset bytes live in
//! files (see `services::assets`).
//!
//! Saving a project is optimistic: a save that names the `modified_date` it started from
//! is refused with a conflict if the project has changed since, so two editors cannot
//! silently overwrite each other. Modification times only move forward (at least 1 ms per
//! save), so the date identifies a version.

use crate::params;
use crate::store::OptionalExtension;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::encoding::rfc3339;
use crate::services::DomainError;
use crate::store::StoreError;

/// What a studio operation may fail with: a refusal, or the store.
pub type Outcome<T> = Result<Result<T, DomainError>, StoreError>;

/// Fields of a project the server owns; a saved document never stores them.
const SERVER_FIELDS: [&str; 4] = ["project_id", "created_date", "modified_date", "owner_id"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectSummary {
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub created_date: String,
    pub modified_date: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.chars().count() > max {
        return Err(DomainError::InvalidInput(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(())
}

/// A new, empty project (`assets`, `scenes` and `scripts` are empty lists).
pub fn create_project(
    conn: &crate::store::Connection,
    owner: Uuid,
    name: &str,
    description: &str,
) -> Outcome<ProjectSummary> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Err(DomainError::InvalidInput(
            "name must not be empty".into(),
        )));
    }
    if let Err(e) = check_text("name", name, 200).and(check_text("description", description, 4000))
    {
        return Ok(Err(e));
    }
    let project_id = Uuid::new_v4().to_string();
    let now = now_ms();
    let document = serde_json::json!({"assets": [], "scenes": [], "scripts": []}).to_string();
    conn.execute(
        "INSERT INTO projects (project_id, owner_id, name, description, document, created_at,
                               modified_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            project_id,
            owner.to_string(),
            name,
            description,
            document,
            now
        ],
    )?;
    Ok(Ok(ProjectSummary {
        project_id,
        name: name.to_owned(),
        description: description.to_owned(),
        created_date: rfc3339(now),
        modified_date: rfc3339(now),
    }))
}

struct ProjectRow {
    owner: String,
    name: String,
    description: String,
    document: String,
    created_at: i64,
    modified_at: i64,
}

fn project_row(
    conn: &crate::store::Connection,
    project_id: &str,
) -> Result<Option<ProjectRow>, StoreError> {
    conn.query_row(
        "SELECT owner_id, name, description, document, created_at, modified_at
             FROM projects WHERE project_id = ?1",
        [project_id],
        |r| {
            Ok(ProjectRow {
                owner: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                document: r.get(3)?,
                created_at: r.get(4)?,
                modified_at: r.get(5)?,
            })
        },
    )
    .optional()
}

/// The project if `user` owns it: 1003 if there is none, 1002 if it is someone else's.
fn owned_project(
    conn: &crate::store::Connection,
    user: Uuid,
    project_id: &str,
) -> Outcome<ProjectRow> {
    match project_row(conn, project_id)? {
        None => Ok(Err(DomainError::NotFound(format!(
            "no project {project_id:?}"
        )))),
        Some(row) if row.owner != user.to_string() => Ok(Err(DomainError::Forbidden(
            "the project belongs to another user".into(),
        ))),
        Some(row) => Ok(Ok(row)),
    }
}

/// Checks that `user` owns the project (for adding assets to it).
pub fn check_owner(conn: &crate::store::Connection, user: Uuid, project_id: &str) -> Outcome<()> {
    Ok(owned_project(conn, user, project_id)?.map(|_| ()))
}

/// The whole project: its document with the server's fields.
pub fn load_project(
    conn: &crate::store::Connection,
    user: Uuid,
    project_id: &str,
) -> Outcome<Value> {
    let row = match owned_project(conn, user, project_id)? {
        Ok(row) => row,
        Err(e) => return Ok(Err(e)),
    };
    let mut project: Map<String, Value> = serde_json::from_str(&row.document)
        .map_err(|e| StoreError::Invariant(format!("project {project_id} document: {e}")))?;
    project.insert("project_id".into(), Value::from(project_id));
    project.insert("name".into(), Value::from(row.name));
    project.insert("description".into(), Value::from(row.description));
    project.insert("created_date".into(), Value::from(rfc3339(row.created_at)));
    project.insert(
        "modified_date".into(),
        Value::from(rfc3339(row.modified_at)),
    );
    Ok(Ok(Value::Object(project)))
}

/// Saves `project` (which names its `project_id`) over the stored one and returns the new
/// modification time. With `expected_modified` (unix ms), a project changed since then is
/// a conflict and nothing is written.
pub fn save_project(
    conn: &crate::store::Connection,
    user: Uuid,
    mut project: Map<String, Value>,
    expected_modified: Option<i64>,
    max_bytes: usize,
) -> Outcome<i64> {
    let Some(project_id) = project
        .get("project_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(Err(DomainError::InvalidInput(
            "project.project_id is required".into(),
        )));
    };
    let row = match owned_project(conn, user, &project_id)? {
        Ok(row) => row,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(expected) = expected_modified
        && expected != row.modified_at
    {
        return Ok(Err(DomainError::Conflict(format!(
            "the project was modified at {} (you loaded {}): load it again and reapply",
            rfc3339(row.modified_at),
            rfc3339(expected)
        ))));
    }
    let name = match project.get("name") {
        None => row.name,
        Some(Value::String(n)) if !n.trim().is_empty() => n.trim().to_owned(),
        Some(_) => {
            return Ok(Err(DomainError::InvalidInput(
                "project.name must be a non-empty string".into(),
            )));
        }
    };
    let description = match project.get("description") {
        None => row.description,
        Some(Value::String(d)) => d.clone(),
        Some(_) => {
            return Ok(Err(DomainError::InvalidInput(
                "project.description must be a string".into(),
            )));
        }
    };
    if let Err(e) =
        check_text("name", &name, 200).and(check_text("description", &description, 4000))
    {
        return Ok(Err(e));
    }
    for field in SERVER_FIELDS.iter().chain(["name", "description"].iter()) {
        project.remove(*field);
    }
    for list in ["assets", "scenes", "scripts"] {
        match project.get(list) {
            None => {
                project.insert(list.into(), Value::Array(Vec::new()));
            }
            Some(Value::Array(_)) => {}
            Some(_) => {
                return Ok(Err(DomainError::InvalidInput(format!(
                    "project.{list} must be a list"
                ))));
            }
        }
    }
    let document = Value::Object(project).to_string();
    if document.len() > max_bytes {
        return Ok(Err(DomainError::InvalidInput(format!(
            "the project is {} bytes; the limit is {max_bytes}",
            document.len()
        ))));
    }
    let modified = now_ms().max(row.modified_at + 1);
    conn.execute(
        "UPDATE projects SET name = ?2, description = ?3, document = ?4, modified_at = ?5
         WHERE project_id = ?1",
        params![project_id, name, description, document, modified],
    )?;
    Ok(Ok(modified))
}

pub fn list_projects(
    conn: &crate::store::Connection,
    owner: Uuid,
) -> Result<Vec<ProjectSummary>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT project_id, name, description, created_at, modified_at FROM projects
         WHERE owner_id = ?1 ORDER BY modified_at DESC",
    )?;
    let rows = stmt
        .query_map([owner.to_string()], |r| {
            Ok(ProjectSummary {
                project_id: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                created_date: rfc3339(r.get(3)?),
                modified_date: rfc3339(r.get(4)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// An asset's record (its bytes are the file named by `sha256`).
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRecord {
    pub asset_id: String,
    pub owner: Uuid,
    pub project_id: Option<String>,
    pub name: String,
    pub asset_type: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub created_at: i64,
}

pub fn insert_asset(
    conn: &crate::store::Connection,
    asset: &AssetRecord,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO assets (asset_id, owner_id, project_id, name, asset_type, content_type,
                             size_bytes, sha256, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            asset.asset_id,
            asset.owner.to_string(),
            asset.project_id,
            asset.name,
            asset.asset_type,
            asset.content_type,
            asset.size_bytes as i64,
            asset.sha256,
            asset.created_at
        ],
    )?;
    Ok(())
}

fn asset_from_row(r: &crate::store::Row) -> Result<AssetRecord, StoreError> {
    Ok(AssetRecord {
        asset_id: r.get(0)?,
        owner: Uuid::parse_str(&r.get::<_, String>(1)?).unwrap_or_default(),
        project_id: r.get(2)?,
        name: r.get(3)?,
        asset_type: r.get(4)?,
        content_type: r.get(5)?,
        size_bytes: r.get::<_, i64>(6)? as u64,
        sha256: r.get(7)?,
        created_at: r.get(8)?,
    })
}

const ASSET_COLUMNS: &str = "asset_id, owner_id, project_id, name, asset_type, content_type, size_bytes, sha256, created_at";

pub fn asset(
    conn: &crate::store::Connection,
    asset_id: &str,
) -> Result<Option<AssetRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {ASSET_COLUMNS} FROM assets WHERE asset_id = ?1"),
        [asset_id],
        asset_from_row,
    )
    .optional()
}

pub fn project_assets(
    conn: &crate::store::Connection,
    project_id: &str,
) -> Result<Vec<AssetRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ASSET_COLUMNS} FROM assets WHERE project_id = ?1 ORDER BY created_at, asset_id"
    ))?;
    let rows = stmt
        .query_map([project_id], asset_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A piece of published content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Content {
    pub asset_id: String,
    pub asset_type: String,
    pub title: String,
    pub content: String,
    pub metadata: Value,
    pub author: String,
    pub created_date: String,
    pub modified_date: String,
    #[serde(skip)]
    pub owner: Uuid,
}

/// Content types: a lowercase word (`blog`, `post`, `image`, `video`, ...).
fn check_content(
    asset_type: &str,
    title: &str,
    content: &str,
    metadata: &Value,
) -> Result<(), DomainError> {
    let type_ok = (1..=32).contains(&asset_type.len())
        && asset_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-');
    if !type_ok {
        return Err(DomainError::InvalidInput(
            "asset_type must be a lowercase word such as blog, post, image or video".into(),
        ));
    }
    if title.trim().is_empty() {
        return Err(DomainError::InvalidInput("title must not be empty".into()));
    }
    check_text("title", title, 200)?;
    check_text("content", content, 1_000_000)?;
    if !metadata.is_object() {
        return Err(DomainError::InvalidInput(
            "metadata must be an object".into(),
        ));
    }
    Ok(())
}

pub fn create_content(
    conn: &crate::store::Connection,
    owner: Uuid,
    asset_type: &str,
    title: &str,
    content: &str,
    metadata: &Value,
) -> Outcome<Content> {
    if let Err(e) = check_content(asset_type, title, content, metadata) {
        return Ok(Err(e));
    }
    let asset_id = Uuid::new_v4().to_string();
    let now = now_ms();
    conn.execute(
        "INSERT INTO content (asset_id, owner_id, asset_type, title, body, metadata, created_at,
                              modified_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            asset_id,
            owner.to_string(),
            asset_type,
            title,
            content,
            metadata.to_string(),
            now
        ],
    )?;
    fetch_content(conn, &asset_id)
        .map(|found| found.ok_or_else(|| DomainError::Internal("content vanished".into())))
}

pub fn fetch_content(
    conn: &crate::store::Connection,
    asset_id: &str,
) -> Result<Option<Content>, StoreError> {
    conn.query_row(
        "SELECT c.asset_id, c.asset_type, c.title, c.body, c.metadata, a.username,
                    c.created_at, c.modified_at, c.owner_id
             FROM content c JOIN accounts a ON a.user_id = c.owner_id WHERE c.asset_id = ?1",
        [asset_id],
        content_from_row,
    )
    .optional()
}

fn content_from_row(r: &crate::store::Row) -> Result<Content, StoreError> {
    Ok(Content {
        asset_id: r.get(0)?,
        asset_type: r.get(1)?,
        title: r.get(2)?,
        content: r.get(3)?,
        metadata: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
        author: r.get(5)?,
        created_date: rfc3339(r.get(6)?),
        modified_date: rfc3339(r.get(7)?),
        owner: Uuid::parse_str(&r.get::<_, String>(8)?).unwrap_or_default(),
    })
}

/// Content newest first, optionally of one type; at most `limit`.
pub fn list_content(
    conn: &crate::store::Connection,
    asset_type: Option<&str>,
    limit: usize,
) -> Result<Vec<Content>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT c.asset_id, c.asset_type, c.title, c.body, c.metadata, a.username,
                c.created_at, c.modified_at, c.owner_id
         FROM content c JOIN accounts a ON a.user_id = c.owner_id
         WHERE CAST(?1 AS TEXT) IS NULL OR c.asset_type = ?1
         ORDER BY c.created_at DESC, c.asset_id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![asset_type, limit as i64], content_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Content `user` may change: its owner, or an admin (1002 otherwise).
fn changeable(
    conn: &crate::store::Connection,
    user: Uuid,
    is_admin: bool,
    asset_id: &str,
) -> Outcome<Content> {
    match fetch_content(conn, asset_id)? {
        None => Ok(Err(DomainError::NotFound(format!(
            "no content {asset_id:?}"
        )))),
        Some(c) if c.owner != user && !is_admin => Ok(Err(DomainError::Forbidden(
            "only the author or an admin may change this content".into(),
        ))),
        Some(c) => Ok(Ok(c)),
    }
}

/// The changes of an `update_content`: each field that is present replaces the old one.
#[derive(Debug, Clone, Default)]
pub struct ContentUpdate {
    pub asset_type: Option<String>,
    pub title: Option<String>,
    pub content: Option<String>,
    pub metadata: Option<Value>,
}

pub fn update_content(
    conn: &crate::store::Connection,
    user: Uuid,
    is_admin: bool,
    asset_id: &str,
    update: ContentUpdate,
) -> Outcome<i64> {
    let old = match changeable(conn, user, is_admin, asset_id)? {
        Ok(old) => old,
        Err(e) => return Ok(Err(e)),
    };
    let asset_type = update.asset_type.unwrap_or(old.asset_type);
    let title = update.title.unwrap_or(old.title);
    let content = update.content.unwrap_or(old.content);
    let metadata = update.metadata.unwrap_or(old.metadata);
    if let Err(e) = check_content(&asset_type, &title, &content, &metadata) {
        return Ok(Err(e));
    }
    let modified = now_ms();
    conn.execute(
        "UPDATE content SET asset_type = ?2, title = ?3, body = ?4, metadata = ?5,
                            modified_at = CASE WHEN ?6 > modified_at THEN ?6
                                               ELSE modified_at + 1 END
         WHERE asset_id = ?1",
        params![
            asset_id,
            asset_type,
            title,
            content,
            metadata.to_string(),
            modified
        ],
    )?;
    let modified: i64 = conn.query_row(
        "SELECT modified_at FROM content WHERE asset_id = ?1",
        [asset_id],
        |r| r.get(0),
    )?;
    Ok(Ok(modified))
}

pub fn delete_content(
    conn: &crate::store::Connection,
    user: Uuid,
    is_admin: bool,
    asset_id: &str,
) -> Outcome<()> {
    if let Err(e) = changeable(conn, user, is_admin, asset_id)? {
        return Ok(Err(e));
    }
    conn.execute("DELETE FROM content WHERE asset_id = ?1", [asset_id])?;
    Ok(Ok(()))
}
