//! Highlander leases in a directory: one file per lock, compare-and-set under an
//! exclusive lock, replaced atomically.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_file::FileStore;
//!
//! # fn demo() -> Result<(), lock_core::Error> {
//! let store = FileStore::new("/var/lib/highlander/leases")?; // a local path, or an NFSv4 mount
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "host-a").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! Each lock is a file `<escaped name>.lease` holding a version line and the record;
//! writers take an exclusive lock on `<escaped name>.lock`, check the version, write a
//! temporary file, `fsync` it, `rename` it over the lease and `fsync` the directory. A
//! crash at any point leaves the old record or the new one, never a torn one. Standbys
//! on a local filesystem hear each write through inotify; elsewhere they poll. See the
//! README for where this is safe (local filesystems; NFSv4 with working locks) and where
//! it is not.

use async_trait::async_trait;
use bytes::Bytes;
use lock_core::{
    Backend, Capabilities, Changes, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl,
    Version, WatchHub, encode_record,
};
use std::{
    fmt,
    io::{Read, Write},
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// What a lease file starts with, before its version.
const MAGIC: &str = "highlander-lease-v1";

/// Records are small; refuse anything absurd.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// A [`LeaseStore`] in a directory. Clones share one notification feed.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// The filesystem's kind, as the kernel names it (`ext2/ext3`, `nfs`, `tmpfs`…).
    filesystem: String,
    /// Whether inotify sees every write (a local filesystem), so standbys can be notified.
    local: bool,
    hub: Arc<WatchHub>,
    /// How long to wait for another writer's lock before calling the store unavailable.
    lock_timeout: Duration,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore").field("dir", &self.inner.dir).field("filesystem", &self.inner.filesystem).finish()
    }
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file store {} ({})", self.inner.dir.display(), self.inner.filesystem)
    }
}

/// The filesystem kinds whose writes inotify does not see from other machines, or whose
/// locks cannot be trusted: standbys poll there, and the README says which are unsafe.
fn is_local(fs: nix::sys::statfs::FsType) -> bool {
    use nix::sys::statfs::{FUSE_SUPER_MAGIC, NFS_SUPER_MAGIC, SMB_SUPER_MAGIC};
    // CIFS/SMB2 (0xFF534D42) and SMB2 (0xFE534D42) have no constant in nix.
    let raw = fs.0;
    ![NFS_SUPER_MAGIC, SMB_SUPER_MAGIC, FUSE_SUPER_MAGIC].contains(&fs) && raw != 0xFF53_4D42 && raw != 0xFE53_4D42
}

/// The filesystem's kind, for the store's description.
fn filesystem_name(fs: nix::sys::statfs::FsType) -> String {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, FUSE_SUPER_MAGIC, NFS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, SMB_SUPER_MAGIC, TMPFS_MAGIC,
        XFS_SUPER_MAGIC,
    };
    let known = [
        (EXT4_SUPER_MAGIC, "ext4"),
        (XFS_SUPER_MAGIC, "xfs"),
        (BTRFS_SUPER_MAGIC, "btrfs"),
        (TMPFS_MAGIC, "tmpfs"),
        (OVERLAYFS_SUPER_MAGIC, "overlayfs"),
        (NFS_SUPER_MAGIC, "nfs"),
        (SMB_SUPER_MAGIC, "smb"),
        (FUSE_SUPER_MAGIC, "fuse"),
    ];
    known.iter().find(|(k, _)| *k == fs).map_or_else(|| format!("filesystem {:#x}", fs.0), |(_, n)| (*n).to_string())
}

/// The file name of `lock` ([`LockName::to_path_segment`]): distinct names stay
/// distinct and none escapes the directory.
#[must_use]
pub fn file_name(lock: &LockName) -> String {
    lock.to_path_segment()
}

impl FileStore {
    /// A store in `dir`, which must exist (see [`create_dir`](Self::create_dir)).
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_absolute() {
            return Err(Error::Config(format!("file store directory {} must be an absolute path", dir.display())));
        }
        let meta = std::fs::metadata(dir)
            .map_err(|e| Error::Config(format!("file store directory {}: {e} (create it with --create)", dir.display())))?;
        if !meta.is_dir() {
            return Err(Error::Config(format!("file store {} is not a directory", dir.display())));
        }
        let (filesystem, local) = match nix::sys::statfs::statfs(dir) {
            Ok(s) => (filesystem_name(s.filesystem_type()), is_local(s.filesystem_type())),
            Err(_) => ("unknown filesystem".into(), false),
        };
        Ok(Self {
            inner: Arc::new(Inner { dir: dir.to_path_buf(), filesystem, local, hub: Arc::default(), lock_timeout: Duration::from_secs(5) }),
        })
    }

    /// Creates `dir` (and its parents) if missing, then opens the store.
    pub fn create_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("cannot create the file store directory {}: {e}", dir.display())))?;
        Self::new(dir)
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn lease_path(&self, lock: &LockName) -> PathBuf {
        self.inner.dir.join(format!("{}.lease", file_name(lock)))
    }

    fn io(&self, lock: &LockName, what: &str, e: &std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                store: self.to_string(),
                detail: format!("{what} of lock {lock:?}: {e} (the directory must be writable)"),
            },
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::ReadOnlyFilesystem => {
                Error::Unavailable { store: self.to_string(), source: format!("{what} of lock {lock:?}: {e}").into() }
            }
            _ => Error::Unavailable { store: self.to_string(), source: format!("{what} of lock {lock:?}: {e}").into() },
        }
    }

    /// Reads a lease file: its version and record bytes, `None` if absent.
    fn read(&self, lock: &LockName) -> Result<Option<(u64, Bytes)>> {
        let mut text = Vec::new();
        match std::fs::File::open(self.lease_path(lock)) {
            Ok(mut f) => f.read_to_end(&mut text).map_err(|e| self.io(lock, "read", &e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(lock, "open", &e)),
        };
        let corrupt = |detail: &str| Error::Corrupt { lock: lock.clone(), store: self.to_string(), detail: detail.to_string() };
        let newline = text.iter().position(|b| *b == b'\n').ok_or_else(|| corrupt("no header line"))?;
        let header = std::str::from_utf8(&text[..newline]).map_err(|_| corrupt("the header is not text"))?;
        let version = header
            .strip_prefix(MAGIC)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| corrupt("the header is not `highlander-lease-v1 VERSION`"))?;
        Ok(Some((version, Bytes::copy_from_slice(&text[newline + 1..]))))
    }

    /// Replaces the lease file atomically: temporary file, fsync, rename, fsync of the directory.
    fn write(&self, lock: &LockName, version: u64, raw: &[u8]) -> Result<()> {
        let path = self.lease_path(lock);
        let tmp = self.inner.dir.join(format!(".{}.{}.{:x}.tmp", file_name(lock), std::process::id(), nanos()));
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(format!("{MAGIC} {version}\n").as_bytes())?;
            f.write_all(raw)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.inner.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| self.io(lock, "write", &e))
    }

    /// Holds the lock's exclusive lock while `f` runs (waiting up to the lock timeout).
    fn locked<T>(&self, lock: &LockName, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let path = self.inner.dir.join(format!("{}.lock", file_name(lock)));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.io(lock, "open the lock file", &e))?;
        let until = std::time::Instant::now() + self.inner.lock_timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Unavailable {
                        store: self.to_string(),
                        source: format!("lock {lock:?}: another writer held {} for {:?}", path.display(), self.inner.lock_timeout).into(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(self.io(lock, "lock", &e)),
            }
        }
        let result = f();
        let _ = file.unlock();
        result
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(FileStore) -> Result<T> + Send + 'static) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| Error::Backend { store: self.to_string(), source: format!("a file operation panicked: {e}").into() })?
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn observed(store: &FileStore, lock: &LockName, version: u64, raw: Bytes) -> Result<Observed> {
    Observed::decode(lock, store, raw, Version::new(version.to_string()))
}

#[async_trait]
impl LeaseStore for FileStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let lock = lock.clone();
        self.blocking(move |s| s.read(&lock)?.map(|(v, raw)| observed(&s, &lock, v, raw)).transpose()).await
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let lock = lock.clone();
        self.blocking(move |s| {
            s.locked(&lock, || {
                if s.lease_path(&lock).exists() {
                    return Err(Error::AlreadyExists { lock: lock.clone(), store: s.to_string() });
                }
                s.write(&lock, 1, &raw)?;
                Ok(Version::new("1"))
            })
        })
        .await
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let Some(expected) = expected.ordinal() else { return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }) };
        let lock = lock.clone();
        self.blocking(move |s| {
            s.locked(&lock, || {
                let Some((current, old)) = s.read(&lock)? else {
                    return Err(Error::NotFound { lock: lock.clone(), store: s.to_string() });
                };
                if current != expected {
                    return Err(Error::Conflict { lock: lock.clone(), store: s.to_string() });
                }
                // Never overwrite what does not decode, whatever its version says.
                observed(&s, &lock, current, old)?;
                let next = current.checked_add(1).ok_or_else(|| Error::Corrupt {
                    lock: lock.clone(),
                    store: s.to_string(),
                    detail: format!("version {current} cannot grow"),
                })?;
                s.write(&lock, next, &raw)?;
                Ok(Version::new(next.to_string()))
            })
        })
        .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic().with_monotonic_versions(true).with_watch(self.inner.local).with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }

    /// inotify on the directory, one watch for every lock, on a local filesystem: each
    /// replaced lease file is read and handed to that lock's watchers.
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        if !self.inner.local {
            return Ok(None);
        }
        self.inner.hub.subscribe_starting(lock, |generation| std::future::ready(self.start_feed(generation))).await.map(Some)
    }
}

impl FileStore {
    /// One inotify watch on the directory, read by a thread of its own that hands each
    /// replaced lease file to its lock's watchers; it stops once the store is dropped,
    /// and ends the feed once the directory it watches is moved or removed (a directory
    /// restored in its place is a new one: the watchers subscribe again and watch that).
    fn start_feed(&self, generation: u64) -> Result<()> {
        use nix::{
            poll::{PollFd, PollFlags, PollTimeout, poll},
            sys::inotify::{AddWatchFlags, InitFlags, Inotify},
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| Error::Unavailable { store: self.to_string(), source: format!("inotify: {e}").into() })?;
        let events =
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF;
        inotify.add_watch(&self.inner.dir, events).map_err(|e| Error::Unavailable {
            store: self.to_string(),
            source: format!("inotify on {}: {e}", self.inner.dir.display()).into(),
        })?;
        let hub = self.inner.hub.clone();
        // The thread must not keep the store alive.
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("lock-file-inotify".into())
            .spawn(move || {
                loop {
                    let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
                    let ready = poll(&mut fds, PollTimeout::from(1000u16)).unwrap_or(0);
                    let Some(inner) = weak.upgrade() else { break };
                    if ready == 0 {
                        continue;
                    }
                    let events = match inotify.read_events() {
                        Ok(events) => events,
                        Err(nix::errno::Errno::EAGAIN) => continue,
                        Err(_) => break,
                    };
                    let gone = AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_IGNORED;
                    if events.iter().any(|e| e.mask.intersects(gone)) {
                        break;
                    }
                    let store = FileStore { inner };
                    for event in events {
                        let Some(name) = event.name.as_ref().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".lease")) else {
                            continue;
                        };
                        let Some(lock) = LockName::from_path_segment(name) else { continue };
                        if !hub.is_watched(&lock) {
                            continue;
                        }
                        if let Ok(Some((v, raw))) = store.read(&lock)
                            && let Ok(seen) = observed(&store, &lock, v, raw)
                        {
                            hub.publish(&lock, &seen);
                        }
                    }
                }
                hub.feed_ended(generation);
            })
            .map_err(|e| Error::Unavailable { store: self.to_string(), source: format!("cannot start the inotify thread: {e}").into() })?;
        Ok(())
    }
}

#[async_trait]
impl RawAccess for FileStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let (lock, raw) = (lock.clone(), raw.to_vec());
        self.blocking(move |s| {
            s.locked(&lock, || {
                let next = match s.read(&lock) {
                    Ok(Some((v, _))) => v.saturating_add(1),
                    _ => 1,
                };
                s.write(&lock, next, &raw)
            })
        })
        .await
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let lock = lock.clone();
        self.blocking(move |s| match s.read(&lock) {
            Ok(found) => Ok(found.map(|(_, raw)| raw)),
            // A file the suite planted without a header is still its bytes.
            Err(Error::Corrupt { .. }) => {
                std::fs::read(s.lease_path(&lock)).map(|b| Some(Bytes::from(b))).map_err(|e| s.io(&lock, "read", &e))
            }
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let lock = lock.clone();
        self.blocking(move |s| {
            s.locked(&lock, || match std::fs::remove_file(s.lease_path(&lock)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(s.io(&lock, "delete", &e)),
                _ => Ok(()),
            })
        })
        .await
    }
}

/// The file backend: `file:///path/to/dir` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileBackend;

/// The file backend, for a front end's table of backends.
pub static BACKEND: FileBackend = FileBackend;

fn dir_of(url: &StoreUrl) -> Result<PathBuf> {
    if url.scheme() != "file" {
        return Err(Error::Config(format!("not a file:// URL: {}://", url.scheme())));
    }
    let dir = url.local_path("directory")?;
    url.params().finish(&[])?;
    Ok(dir)
}

#[async_trait]
impl Backend for FileBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["file"]
    }

    fn grammar(&self) -> &'static str {
        "file:///path/to/dir (a local filesystem, or NFSv4 with working locks)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Local
    }

    async fn open(&self, url: &StoreUrl, _options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(FileStore::new(dir_of(url)?)?))
    }

    async fn create(&self, url: &StoreUrl, _options: &OpenOptions) -> Result<()> {
        FileStore::create_dir(dir_of(url)?).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_escape_everything_that_could_escape_the_directory() {
        for (name, file) in [("billing", "billing"), ("a/b", "a%2Fb"), ("../etc", "%2E%2E%2Fetc"), ("a.b", "a%2Eb"), ("ü", "%C3%BC")] {
            let lock = LockName::new(name).expect("valid");
            assert_eq!(file_name(&lock), file);
            assert_eq!(LockName::from_path_segment(file).as_ref().map(LockName::as_str), Some(name));
        }
    }

    #[test]
    fn urls_name_an_absolute_directory_and_nothing_else() {
        let dir = |u: &str| dir_of(&StoreUrl::parse(u).expect("parses")).map_err(|e| e.to_string());
        assert_eq!(dir("file:///var/lib/leases"), Ok(PathBuf::from("/var/lib/leases")));
        assert!(dir("file://host/var").is_err_and(|e| e.contains("no host")));
        assert!(dir("file:///x?sync=1").is_err_and(|e| e.contains("do not take parameter")));
        assert!(dir("file://").is_err_and(|e| e.contains("needs a directory")));
    }
}
