//! The blob port: where import files arrive and where an import leaves its archive copy, its
//! errors report and its export. S3 in production; a folder here (the CLI, `serve`).

use async_trait::async_trait;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No such object (it was moved or deleted): retrying will not help.
    #[error("no object {0}")]
    NotFound(String),
    /// A key that names no object this store can hold (`..`, an absolute path).
    #[error("invalid object key `{0}`")]
    InvalidKey(String),
    /// The store could not be reached or answered with an error: retrying may help.
    #[error("blob store: {0}")]
    Unavailable(String),
}

impl BlobError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BlobError::Unavailable(_))
    }
}

/// What a store says of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its size in bytes.
    pub size: u64,
    /// Its entity tag (S3's ETag; a folder's is the SHA-256 of the content).
    pub etag: String,
    /// Its version, where the store keeps versions.
    pub version_id: Option<String>,
    /// When it was last written (S3's `LastModified`, a file's modification time), where the
    /// store says.
    pub last_modified: Option<std::time::SystemTime>,
}

/// A store of objects by key.
#[async_trait]
pub trait Blobs: Send + Sync {
    /// The bucket (or folder) name the objects are reported under.
    fn bucket(&self) -> &str;
    /// What the store says of `key`, `None` when there is no such object.
    async fn head(&self, key: &str) -> Result<Option<BlobInfo>, BlobError>;
    /// The object's bytes from `offset` on, as a blocking reader (read it off the async
    /// threads, as import parsing does).
    async fn open(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, BlobError>;
    /// Writes an object.
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), BlobError>;
    /// Starts writing an object in pieces, for one too large to hold in memory whole (an
    /// errors report of a million rows).
    async fn create(&self, key: &str, content_type: &str)
        -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Copies an object within the store.
    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError>;
    /// Deletes an object (nothing when it is gone already).
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}

/// An object being written in pieces, appended in order. It appears whole under its key at
/// [`BlobWriter::finish`] and never before; one left unfinished leaves nothing there.
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends a piece.
    async fn write(&mut self, piece: Vec<u8>) -> Result<(), BlobError>;
    /// Writes what is left and makes the object whole under its key.
    async fn finish(self: Box<Self>) -> Result<(), BlobError>;
}

/// Objects as files under a folder: the key is the path below it.
#[derive(Debug, Clone)]
pub struct FolderBlobs {
    root: PathBuf,
    name: String,
}

impl FolderBlobs {
    /// Objects under `root`, reported as bucket `name`.
    pub fn new(root: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            name: name.into(),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`, refusing keys that would leave the folder.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        let relative = Path::new(key);
        let safe = !key.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(BlobError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(relative))
    }

    /// Places a copy of the file at `source` as object `key`, streamed (never whole in
    /// memory) and keeping the file's modification time (the time of what it holds); written
    /// aside and renamed, so a watcher never sees half of it.
    pub async fn place_file(&self, key: &str, source: &Path) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        let (key, source) = (key.to_owned(), source.to_owned());
        blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(&key, e))?;
            }
            let partial = path.with_extension("partial");
            std::fs::copy(&source, &partial).map_err(|e| io_error(&key, e))?;
            let written = std::fs::metadata(&source)
                .and_then(|m| m.modified())
                .map_err(|e| io_error(&key, e))?;
            std::fs::File::options()
                .write(true)
                .open(&partial)
                .and_then(|file| file.set_modified(written))
                .map_err(|e| io_error(&key, e))?;
            std::fs::rename(&partial, &path).map_err(|e| io_error(&key, e))
        })
        .await
    }

    /// The key of a file under the folder.
    pub fn key_of(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        Some(parts?.join("/"))
    }
}

fn io_error(key: &str, e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound(key.to_owned())
    } else {
        BlobError::Unavailable(format!("{key}: {e}"))
    }
}

/// The SHA-256 of a file's content, in hex (a folder object's entity tag).
fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    let digest = hasher.finalize();
    Ok((size, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BlobError::Unavailable(e.to_string()))?
}

#[async_trait]
impl Blobs for FolderBlobs {
    fn bucket(&self) -> &str {
        &self.name
    }

    async fn head(&self, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || match file_digest(&path) {
            Ok((size, etag)) => Ok(Some(BlobInfo {
                size,
                etag,
                version_id: None,
                last_modified: std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&key, e)),
        })
        .await
    }

    async fn open(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, BlobError> {
        use std::io::{Seek, SeekFrom};
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || {
            let mut file = std::fs::File::open(&path).map_err(|e| io_error(&key, e))?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| io_error(&key, e))?;
            Ok(Box::new(file) as Box<dyn Read + Send>)
        })
        .await
    }

    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(&key, e))?;
            }
            // Written aside and renamed: a reader never sees half an object.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, body).map_err(|e| io_error(&key, e))?;
            std::fs::rename(&partial, &path).map_err(|e| io_error(&key, e))
        })
        .await
    }

    async fn create(
        &self,
        key: &str,
        _content_type: &str,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        let partial = path.with_extension("partial");
        let (file, partial) = {
            let key = key.clone();
            blocking(move || {
                if let Some(parent) = partial.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io_error(&key, e))?;
                }
                let file = std::fs::File::create(&partial).map_err(|e| io_error(&key, e))?;
                Ok((file, partial))
            })
            .await?
        };
        Ok(Box::new(FileWriter {
            key,
            file: Some(file),
            partial,
            path,
        }))
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        let (source, target) = (self.path_of(from)?, self.path_of(to)?);
        let key = from.to_owned();
        blocking(move || {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(&key, e))?;
            }
            std::fs::copy(&source, &target)
                .map(|_| ())
                .map_err(|e| io_error(&key, e))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&key, e)),
        })
        .await
    }
}

/// A folder object being written: a file aside, renamed to its key when finished.
struct FileWriter {
    key: String,
    file: Option<std::fs::File>,
    partial: PathBuf,
    path: PathBuf,
}

#[async_trait]
impl BlobWriter for FileWriter {
    async fn write(&mut self, piece: Vec<u8>) -> Result<(), BlobError> {
        use std::io::Write;
        let mut file = self.file.take().ok_or_else(|| {
            BlobError::Unavailable(format!("{}: a write failed before", self.key))
        })?;
        let key = self.key.clone();
        self.file = Some(
            blocking(move || {
                file.write_all(&piece).map_err(|e| io_error(&key, e))?;
                Ok(file)
            })
            .await?,
        );
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), BlobError> {
        let FileWriter {
            key,
            file,
            partial,
            path,
        } = *self;
        let file =
            file.ok_or_else(|| BlobError::Unavailable(format!("{key}: a write failed before")))?;
        blocking(move || {
            file.sync_all().map_err(|e| io_error(&key, e))?;
            std::fs::rename(&partial, &path).map_err(|e| io_error(&key, e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_keeps_objects_by_key_and_tags_them_by_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = FolderBlobs::new(dir.path(), "local");
        assert!(blobs.head("a/b.csv").await.expect("head").is_none());
        blobs
            .put("a/b.csv", b"one,two\n".to_vec(), "text/csv")
            .await
            .expect("put");
        let first = blobs.head("a/b.csv").await.expect("head").expect("there");
        assert_eq!(first.size, 8);
        blobs.copy("a/b.csv", "c/d.csv").await.expect("copy");
        let copied = blobs.head("c/d.csv").await.expect("head").expect("there");
        assert_eq!(copied.etag, first.etag, "same content, same tag");
        let mut rest = String::new();
        blobs
            .open("a/b.csv", 4)
            .await
            .expect("open")
            .read_to_string(&mut rest)
            .expect("read");
        assert_eq!(rest, "two\n");
        blobs
            .put("a/b.csv", b"changed\n".to_vec(), "text/csv")
            .await
            .expect("put");
        let changed = blobs.head("a/b.csv").await.expect("head").expect("there");
        assert_ne!(changed.etag, first.etag);
        blobs.delete("a/b.csv").await.expect("delete");
        blobs
            .delete("a/b.csv")
            .await
            .expect("deleting twice is fine");
        assert!(blobs.head("a/b.csv").await.expect("head").is_none());
        assert!(matches!(
            blobs.head("../outside").await,
            Err(BlobError::InvalidKey(_))
        ));
        assert!(matches!(
            blobs.open("gone.csv", 0).await,
            Err(BlobError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn an_object_written_in_pieces_appears_whole_when_finished_and_not_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = FolderBlobs::new(dir.path(), "local");
        let key = "xorosoft/reports/big.errors.csv";
        let mut writer = blobs.create(key, "text/csv").await.expect("create");
        writer
            .write(b"line,column\n".to_vec())
            .await
            .expect("write");
        writer.write(b"2,ItemUPC\n".to_vec()).await.expect("write");
        assert!(
            blobs.head(key).await.expect("head").is_none(),
            "nothing before it is finished"
        );
        writer.finish().await.expect("finish");
        let mut whole = String::new();
        blobs
            .open(key, 0)
            .await
            .expect("open")
            .read_to_string(&mut whole)
            .expect("read");
        assert_eq!(whole, "line,column\n2,ItemUPC\n");
    }

    #[tokio::test]
    async fn a_placed_file_is_the_files_content_with_its_modification_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = FolderBlobs::new(dir.path().join("store"), "local");
        let source = dir.path().join("export.csv");
        std::fs::write(&source, b"StoreCode,ItemNumber\nMAIN,A-1\n").expect("write");
        let written =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
        std::fs::File::options()
            .write(true)
            .open(&source)
            .and_then(|file| file.set_modified(written))
            .expect("set the time");
        blobs
            .place_file("xorosoft/inbound/stock/export.csv", &source)
            .await
            .expect("place");
        let placed = blobs
            .head("xorosoft/inbound/stock/export.csv")
            .await
            .expect("head")
            .expect("there");
        assert_eq!(placed.size, 30);
        assert_eq!(placed.last_modified, Some(written));
        assert!(matches!(
            blobs.place_file("../outside.csv", &source).await,
            Err(BlobError::InvalidKey(_))
        ));
        assert!(matches!(
            blobs
                .place_file(
                    "xorosoft/inbound/stock/gone.csv",
                    &dir.path().join("gone.csv")
                )
                .await,
            Err(BlobError::NotFound(_))
        ));
    }
}
