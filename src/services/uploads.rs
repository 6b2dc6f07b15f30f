//! Uploads: the data plane of the developer server's chunked uploads.
//!
//! Bytes never cross the simulation's inbox. The connection task hands each chunk here; it
//! is decoded, hashed and appended to a staging file under `<data>/staging/` on the
//! blocking pool. `UPLOAD_END` checks the size and the announced SHA-256, writes
//! `manifest.json`, fsyncs both, and renames the staging directory to
//! `<data>/uploadedGame/<game_id>/<version>/` (then fsyncs the parent), so a crash leaves
//! either no version or a complete one. Only the control steps (may this developer upload
//! this version? record it) go through the catalog.
//!
//! Rules: `seq` must be the next one expected (120 otherwise, nothing changes), except that
//! re-sending the last acknowledged chunk with identical bytes is acknowledged again. A
//! chunk over `chunk_size` or past `size_bytes` is refused. Abandoned uploads expire.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::services::DomainError;
use crate::services::catalog::{self, BUILD_FILE, MANIFEST_FILE, Manifest};

/// One upload in progress.
struct Upload {
    uploader: String,
    game_id: String,
    version: String,
    size: u64,
    checksum: Option<String>,
    dir: PathBuf,
    /// The build file; opened for each chunk and closed after, so an upload holds no file
    /// descriptor between chunks.
    build: PathBuf,
    hasher: Sha256,
    received: u64,
    next_seq: u64,
    /// The last acknowledged chunk's bytes, `last_chunk[..last_len]` (its seq is
    /// `next_seq - 1`), kept to recognise a retry; comparing bytes is cheaper than hashing
    /// every chunk twice.
    last_chunk: Vec<u8>,
    last_len: usize,
    /// The buffer the next chunk is decoded into; it trades places with `last_chunk`.
    spare: Vec<u8>,
    last_activity: Instant,
}

/// An open upload and its owner.
type OpenUpload = (Uuid, Arc<Mutex<Upload>>);

/// A finished upload, ready for the catalog.
#[derive(Debug, Clone)]
pub struct PublishedBuild {
    pub game_id: String,
    pub version: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub uploader: String,
    pub uploaded_at_ms: i64,
    pub files: BuildFiles,
    /// The room script the build carries, compiled.
    pub room: Option<std::sync::Arc<crate::scripting::package::RoomScript>>,
}

/// A verified build's directory, and where it goes when the version is recorded.
#[derive(Debug, Clone)]
pub struct BuildFiles {
    staging: PathBuf,
    target: PathBuf,
}

impl BuildFiles {
    /// Renames the build into place and makes the rename durable. Runs on the store's
    /// writer, inside the transaction that records the version.
    pub fn place(&self) -> std::io::Result<()> {
        let parent = self
            .target
            .parent()
            .ok_or_else(|| std::io::Error::other("version directory has no parent"))?;
        std::fs::create_dir_all(parent)?;
        if self.target.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the version directory already exists",
            ));
        }
        std::fs::rename(&self.staging, &self.target)?;
        fsync_dir(parent)
    }

    /// Deletes the build wherever it is: the version was not recorded.
    pub fn discard(&self) {
        for dir in [&self.staging, &self.target] {
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(dir)
            {
                tracing::error!("removing an unpublished build {}: {e}", dir.display());
            }
        }
    }
}

/// What a chunk's acknowledgement reports.
#[derive(Debug, Clone, Copy)]
pub struct ChunkAck {
    pub seq: u64,
    pub received_bytes: u64,
}

pub struct Uploads {
    data_dir: PathBuf,
    max_size: u64,
    chunk_size: usize,
    idle: Duration,
    /// Open uploads by id, with their owner (readable without locking the upload: the
    /// lock order is upload, then this map).
    active: Mutex<HashMap<String, OpenUpload>>,
    /// (game, version) pairs being uploaded, so two uploads cannot race for one version.
    reserved: Mutex<HashSet<(String, String)>>,
    /// Uploads one developer may have open at once, and all developers together.
    open_per_account: usize,
    open_total: usize,
}

fn fsync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn io_error(e: std::io::Error) -> DomainError {
    tracing::error!("upload I/O: {e}");
    DomainError::Internal(format!("storage error: {e}"))
}

impl Uploads {
    pub fn new(data_dir: &Path, max_size: u64, chunk_size: usize, idle: Duration) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            max_size,
            chunk_size,
            idle,
            active: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashSet::new()),
            open_per_account: usize::MAX,
            open_total: usize::MAX,
        }
    }

    /// Limits how many uploads may be open at once: per developer, and in all.
    pub fn with_open_limits(mut self, per_account: usize, total: usize) -> Self {
        self.open_per_account = per_account.max(1);
        self.open_total = total.max(1);
        self
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Checks what UPLOAD_BEGIN announces, before the catalog is asked.
    pub fn check_begin(
        &self,
        game_id: &str,
        version: &str,
        size: u64,
        checksum: Option<&str>,
    ) -> Result<(), DomainError> {
        catalog::validate_game_id(game_id)?;
        catalog::validate_version(version)?;
        if size > self.max_size {
            return Err(DomainError::InvalidInput(format!(
                "size_bytes {size} is over the limit of {} bytes",
                self.max_size
            )));
        }
        if let Some(sum) = checksum
            && (sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(DomainError::InvalidInput(
                "checksum must be a hex SHA-256 (64 characters)".into(),
            ));
        }
        Ok(())
    }

    /// Opens an upload (the catalog has agreed); returns its id.
    pub fn begin(
        &self,
        owner: Uuid,
        uploader: &str,
        game_id: &str,
        version: &str,
        size: u64,
        checksum: Option<String>,
    ) -> Result<String, DomainError> {
        self.check_begin(game_id, version, size, checksum.as_deref())?;
        // Held across the check and the insert, so concurrent begins cannot overshoot.
        let mut active = self.active.lock();
        if active.len() >= self.open_total {
            return Err(DomainError::Busy);
        }
        let mine = active.values().filter(|(o, _)| *o == owner).count();
        if mine >= self.open_per_account {
            return Err(DomainError::BadState(format!(
                "{mine} uploads already open: finish or cancel one first"
            )));
        }
        if !self
            .reserved
            .lock()
            .insert((game_id.to_owned(), version.to_owned()))
        {
            return Err(DomainError::Conflict(format!(
                "an upload of {game_id} {version} is already in progress"
            )));
        }
        let upload_id = Uuid::new_v4().to_string();
        let dir = self.data_dir.join("staging").join(&upload_id);
        let build = dir.join(BUILD_FILE);
        let created = std::fs::create_dir_all(&dir).and_then(|()| std::fs::File::create(&build));
        if let Err(e) = created {
            self.release(game_id, version);
            return Err(io_error(e));
        }
        active.insert(
            upload_id.clone(),
            (
                owner,
                Arc::new(Mutex::new(Upload {
                    uploader: uploader.to_owned(),
                    game_id: game_id.to_owned(),
                    version: version.to_owned(),
                    size,
                    checksum: checksum.map(|c| c.to_ascii_lowercase()),
                    dir,
                    build,
                    hasher: Sha256::new(),
                    received: 0,
                    next_seq: 0,
                    last_chunk: Vec::new(),
                    last_len: 0,
                    spare: Vec::new(),
                    last_activity: Instant::now(),
                })),
            ),
        );
        Ok(upload_id)
    }

    fn release(&self, game_id: &str, version: &str) {
        self.reserved
            .lock()
            .remove(&(game_id.to_owned(), version.to_owned()));
    }

    fn get(&self, owner: Uuid, upload_id: &str) -> Result<Arc<Mutex<Upload>>, DomainError> {
        let (upload_owner, upload) =
            self.active.lock().get(upload_id).cloned().ok_or_else(|| {
                DomainError::BadState(format!(
                    "no upload {upload_id:?} in progress: send UPLOAD_BEGIN first"
                ))
            })?;
        if upload_owner != owner {
            return Err(DomainError::Forbidden(
                "this upload is someone else's".into(),
            ));
        }
        Ok(upload)
    }

    /// Appends one chunk. Runs on the blocking pool: decoding, hashing and writing a chunk
    /// are too slow for a runtime thread.
    pub async fn chunk(
        self: &Arc<Self>,
        owner: Uuid,
        upload_id: &str,
        seq: u64,
        data_b64: String,
    ) -> Result<ChunkAck, DomainError> {
        let upload = self.get(owner, upload_id)?;
        let chunk_size = self.chunk_size;
        let this = self.clone();
        let upload_id = upload_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut guard = upload.lock();
            let up = &mut *guard;
            up.last_activity = Instant::now();
            // Decode into the spare buffer: it keeps its length between chunks, so it is
            // neither reallocated nor cleared for each one.
            let room = base64::decoded_len_estimate(data_b64.len());
            if up.spare.len() < room {
                up.spare.resize(room, 0);
            }
            let len = crate::encoding::base64()
                .decode_slice(data_b64.as_bytes(), &mut up.spare)
                .map_err(|e| DomainError::InvalidInput(format!("data_b64 is not base64: {e}")))?;
            let bytes = &up.spare[..len];
            if seq + 1 == up.next_seq && bytes == &up.last_chunk[..up.last_len] {
                // A retry of the last acknowledged chunk: same bytes, same answer.
                return Ok(ChunkAck {
                    seq,
                    received_bytes: up.received,
                });
            }
            if seq != up.next_seq {
                return Err(DomainError::ChunkOutOfOrder {
                    expected: up.next_seq,
                });
            }
            if len > chunk_size {
                return Err(DomainError::InvalidInput(format!(
                    "chunk of {len} bytes is larger than chunk_size {chunk_size}"
                )));
            }
            if up.received + len as u64 > up.size {
                return Err(DomainError::InvalidInput(format!(
                    "chunk goes past size_bytes ({} + {len} > {})",
                    up.received, up.size
                )));
            }
            let written = std::fs::OpenOptions::new()
                .append(true)
                .open(&up.build)
                .and_then(|mut file| file.write_all(bytes));
            if let Err(e) = written {
                // Part of the chunk may be on disk but unacknowledged: the staging file no
                // longer matches what was acknowledged, so the upload ends here.
                this.discard(&upload_id, up);
                return Err(io_error(e));
            }
            up.hasher.update(bytes);
            up.received += len as u64;
            up.next_seq += 1;
            // The chunk just written is the one a retry is compared against.
            std::mem::swap(&mut up.last_chunk, &mut up.spare);
            up.last_len = len;
            Ok(ChunkAck {
                seq,
                received_bytes: up.received,
            })
        })
        .await
        .map_err(|e| DomainError::Internal(format!("upload task: {e}")))?
    }

    /// Verifies an upload's files and makes them durable in staging; the caller then has
    /// the catalog record the version and place the files ([`BuildFiles`]), and finally
    /// calls [`Uploads::released`]. On a checksum mismatch the upload is discarded.
    pub async fn finish(
        self: &Arc<Self>,
        owner: Uuid,
        upload_id: &str,
    ) -> Result<PublishedBuild, DomainError> {
        let upload = self.get(owner, upload_id)?;
        {
            let up = upload.lock();
            if up.received != up.size {
                return Err(DomainError::BadState(format!(
                    "{} of {} bytes received; send the rest before UPLOAD_END",
                    up.received, up.size
                )));
            }
        }
        self.active.lock().remove(upload_id);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut up = upload.lock();
            let sha256 = hex::encode(std::mem::take(&mut up.hasher).finalize());
            let up = &*up;
            if let Some(announced) = &up.checksum
                && *announced != sha256
            {
                let _ = std::fs::remove_dir_all(&up.dir);
                this.release(&up.game_id, &up.version);
                return Err(DomainError::ChecksumMismatch {
                    announced: announced.clone(),
                    actual: sha256,
                });
            }
            // A build that carries room rules must carry working ones.
            let room = match crate::scripting::package::room_script_in_build(&up.build) {
                Ok(room) => room,
                Err(why) => {
                    let _ = std::fs::remove_dir_all(&up.dir);
                    this.release(&up.game_id, &up.version);
                    return Err(DomainError::InvalidInput(format!(
                        "the build's room script: {why}"
                    )));
                }
            };
            let published = PublishedBuild {
                game_id: up.game_id.clone(),
                version: up.version.clone(),
                size_bytes: up.size,
                sha256,
                uploader: up.uploader.clone(),
                uploaded_at_ms: chrono::Utc::now().timestamp_millis(),
                files: BuildFiles {
                    staging: up.dir.clone(),
                    target: catalog::version_dir(&this.data_dir, &up.game_id, &up.version),
                },
                room,
            };
            let sealed = this.seal(up, &published);
            if sealed.is_err() {
                let _ = std::fs::remove_dir_all(&up.dir);
                this.release(&up.game_id, &up.version);
            }
            sealed.map(|()| published)
        })
        .await
        .map_err(|e| DomainError::Internal(format!("upload task: {e}")))?
    }

    /// The version of a finished upload is free again (recorded, or not).
    pub fn released(&self, published: &PublishedBuild) {
        self.release(&published.game_id, &published.version);
    }

    /// fsync the build, write the manifest, fsync it and the directory.
    fn seal(&self, up: &Upload, published: &PublishedBuild) -> Result<(), DomainError> {
        std::fs::File::open(&up.build)
            .and_then(|file| file.sync_all())
            .map_err(io_error)?;
        let manifest = Manifest {
            game_id: published.game_id.clone(),
            version: published.version.clone(),
            size_bytes: published.size_bytes,
            sha256: published.sha256.clone(),
            uploaded_at: chrono::DateTime::from_timestamp_millis(published.uploaded_at_ms)
                .unwrap_or_default()
                .to_rfc3339(),
            uploader: published.uploader.clone(),
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| DomainError::Internal(format!("manifest: {e}")))?;
        let mut file = std::fs::File::create(up.dir.join(MANIFEST_FILE)).map_err(io_error)?;
        file.write_all(&text).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        fsync_dir(&up.dir).map_err(io_error)?;
        Ok(())
    }

    pub fn cancel(&self, owner: Uuid, upload_id: &str) -> Result<(), DomainError> {
        let upload = self.get(owner, upload_id)?;
        self.discard(upload_id, &upload.lock());
        Ok(())
    }

    /// Ends an upload without publishing it: forgotten, staging files deleted, its version
    /// free again.
    fn discard(&self, upload_id: &str, up: &Upload) {
        self.active.lock().remove(upload_id);
        let _ = std::fs::remove_dir_all(&up.dir);
        self.release(&up.game_id, &up.version);
    }

    /// Drops uploads idle longer than the configured time, and their staging files.
    pub fn expire_idle(&self) -> usize {
        let expired: Vec<(String, Arc<Mutex<Upload>>)> = {
            let mut active = self.active.lock();
            // An upload whose lock is held is taking a chunk: not idle.
            let stale: Vec<String> = active
                .iter()
                .filter(|(_, (_, u))| {
                    u.try_lock()
                        .is_some_and(|u| u.last_activity.elapsed() > self.idle)
                })
                .map(|(id, _)| id.clone())
                .collect();
            stale
                .into_iter()
                .filter_map(|id| active.remove(&id).map(|(_, u)| (id, u)))
                .collect()
        };
        for (id, upload) in &expired {
            self.discard(id, &upload.lock());
            tracing::info!(upload = id, "abandoned upload expired");
        }
        expired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[tokio::test]
    async fn a_failed_write_ends_the_upload_and_deletes_its_files() {
        let data = tempfile::tempdir().unwrap();
        let uploads = Arc::new(Uploads::new(
            data.path(),
            1 << 20,
            4,
            Duration::from_secs(60),
        ));
        let owner = Uuid::new_v4();
        let id = uploads.begin(owner, "dev", "game", "1.0", 8, None).unwrap();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        uploads.chunk(owner, &id, 0, b64(b"abcd")).await.unwrap();
        let staging = uploads.active.lock()[&id].1.lock().dir.clone();
        assert!(staging.exists());

        // The disk fills up under the next chunk.
        uploads.active.lock()[&id].1.lock().build = "/dev/full".into();
        let failed = uploads.chunk(owner, &id, 1, b64(b"efgh")).await;
        assert!(
            matches!(failed, Err(DomainError::Internal(_))),
            "{failed:?}"
        );

        assert!(!staging.exists(), "the staging files are deleted");
        let next = uploads.chunk(owner, &id, 1, b64(b"efgh")).await;
        assert!(matches!(next, Err(DomainError::BadState(_))), "{next:?}");
        // The version can be uploaded again from the start.
        let again = uploads.begin(owner, "dev", "game", "1.0", 8, None).unwrap();
        uploads.chunk(owner, &again, 0, b64(b"abcd")).await.unwrap();
        uploads.chunk(owner, &again, 1, b64(b"efgh")).await.unwrap();
        let published = uploads.finish(owner, &again).await.unwrap();
        published.files.place().unwrap();
        uploads.released(&published);
        let build = catalog::version_dir(data.path(), "game", "1.0").join(BUILD_FILE);
        assert_eq!(std::fs::read(build).unwrap(), b"abcdefgh");
        assert_eq!(published.size_bytes, 8);
    }
}
