//! An in-memory file system for the simulator and the tests: a [`super::disk::Disk`] with no system
//! call at all, deterministic (a `BTreeMap` tree), that fails any call on command.
//!
//! It implements only the [`Calls`] (`unlink`, `rename`, `fsync` of a folder, …), with
//! the errors Linux gives (raw OS errors: `ENOENT`, `ENOTDIR`, `EEXIST`, …); the durable
//! write, the removal and the rest are the real protocol of [`super::atomic`], so a fault
//! injected into one call leaves what it would leave on a real disk (a failed `fsync` of
//! the temporary: the temporary removed, the old file in place).
//!
//! Entries are regular files, folders, symbolic links and other files (FIFOs, sockets,
//! devices), so the store's rules for strange files can be exercised. A symbolic link is
//! kept with its target but never followed: it behaves as a real link to nothing (a
//! read through it finds nothing; `lstat` says a link). Paths are taken from `/`
//! (`.` and `..` resolved by name); `/` is always a folder.
//!
//! Faults ([`MemDisk::fail_next`], [`MemDisk::fail_at`], [`MemDisk::decide`]) are asked
//! in the order they were given, before each call ([`Op`]); the first that answers
//! decides. Power cuts are not modelled.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;

use super::disk::{Calls, FileType, Special};
use super::{InMemory, Mode};

/// An entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    File(Vec<u8>),
    Folder,
    /// A symbolic link to this target, never followed (see the module doc).
    Symlink(PathBuf),
    /// A FIFO, a socket, a device.
    Other(Special),
}

impl Node {
    fn file_type(&self) -> FileType {
        match self {
            Node::File(_) => FileType::Regular,
            Node::Folder => FileType::Folder,
            Node::Symlink(_) => FileType::Symlink,
            Node::Other(s) => FileType::Other(*s),
        }
    }
}

/// The kinds of call a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum OpKind {
    /// `lstat`, or a look whether a folder is there.
    Stat,
    List,
    Read,
    /// Creating and writing a new file (the temporary of a durable write).
    Write,
    /// `fsync` of a file just written, or of a folder.
    Fsync,
    Rename,
    Remove,
    /// Creating one folder.
    MakeFolder,
}

/// A call about to be made: its kind and path (normalised from `/`), and for a rename
/// where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) path: PathBuf,
    pub(crate) to: Option<PathBuf>,
}

/// Decides whether a call fails, and with which error (`None`: it goes through). Called
/// with the disk locked: it must not call the disk.
pub(crate) type Decide = Box<dyn FnMut(&Op) -> Option<Errno> + Send>;

enum Rule {
    /// The next `left` calls of `kind` fail.
    Next {
        kind: OpKind,
        left: u32,
        errno: Errno,
    },
    /// Every call on `path` or below it fails.
    At {
        path: PathBuf,
        errno: Errno,
    },
    Decide(Decide),
}

impl Rule {
    fn answer(&mut self, op: &Op) -> Option<Errno> {
        match self {
            Rule::Next { kind, left, errno } if *kind == op.kind && *left > 0 => {
                *left -= 1;
                Some(*errno)
            }
            Rule::Next { .. } => None,
            Rule::At { path, errno } => {
                let on = |p: &Path| p.starts_with(&*path);
                (on(&op.path) || op.to.as_deref().is_some_and(on)).then_some(*errno)
            }
            Rule::Decide(decide) => decide(op),
        }
    }
}

#[derive(Default)]
struct State {
    tree: BTreeMap<PathBuf, Node>,
    rules: Vec<Rule>,
    injected: u64,
}

/// The in-memory file system. A clone is the same disk (shared); [`MemDisk::fork`]
/// copies it.
#[derive(Clone)]
pub(crate) struct MemDisk {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemDisk")
            .field("entries", &state.tree.len())
            .field("rules", &state.rules.len())
            .finish()
    }
}

impl Default for MemDisk {
    fn default() -> MemDisk {
        MemDisk::new()
    }
}

fn err(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

/// `path` from `/`, with `.` and `..` resolved by name.
fn key(path: &Path) -> PathBuf {
    // Already so (the store's paths are): the same bytes the components would give back.
    if let Some(text) = path.to_str() {
        let plain = text.starts_with('/')
            && (text == "/" || !text.ends_with('/'))
            && !text.contains("//")
            && !text.split('/').any(|part| part == "." || part == "..");
        if plain {
            return path.to_path_buf();
        }
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

impl State {
    /// Asks the rules about `op`.
    fn fault(&mut self, kind: OpKind, path: &Path, to: Option<&Path>) -> io::Result<()> {
        // No rule to ask: the call is not even described (most calls of a simulation).
        if self.rules.is_empty() {
            return Ok(());
        }
        let op = Op {
            kind,
            path: path.to_path_buf(),
            to: to.map(Path::to_path_buf),
        };
        let answer = self.rules.iter_mut().find_map(|r| r.answer(&op));
        self.rules
            .retain(|r| !matches!(r, Rule::Next { left: 0, .. }));
        match answer {
            Some(errno) => {
                self.injected += 1;
                Err(err(errno))
            }
            None => Ok(()),
        }
    }

    /// The folders above `path` must be there (a link among them leads nowhere).
    fn walk(&self, path: &Path) -> io::Result<()> {
        // Looked at from below: the error is the topmost one's, as a walk from `/` meets.
        let mut topmost = None;
        for dir in path.ancestors().skip(1) {
            match self.tree.get(dir) {
                Some(Node::Folder) => {}
                None | Some(Node::Symlink(_)) => topmost = Some(Errno::ENOENT),
                Some(_) => topmost = Some(Errno::ENOTDIR),
            }
        }
        topmost.map_or(Ok(()), |errno| Err(err(errno)))
    }

    /// The entry at `path` (its folders there), not following a link.
    fn entry(&self, path: &Path) -> io::Result<&Node> {
        self.walk(path)?;
        self.tree.get(path).ok_or_else(|| err(Errno::ENOENT))
    }

    /// The folder at `dir`, following a last link (which leads nowhere).
    fn folder(&self, dir: &Path) -> io::Result<()> {
        match self.entry(dir)? {
            Node::Folder => Ok(()),
            Node::Symlink(_) => Err(err(Errno::ENOENT)),
            _ => Err(err(Errno::ENOTDIR)),
        }
    }

    /// `path` and everything below it.
    fn subtree(&self, path: &Path) -> Vec<PathBuf> {
        self.tree
            .range(path.to_path_buf()..)
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect()
    }

    /// Puts `node` at `path`, its folders made and whatever was there replaced.
    fn put(&mut self, path: &Path, node: Node) {
        for dir in path.ancestors().skip(1) {
            if self.tree.get(dir) != Some(&Node::Folder) {
                self.tree.insert(dir.to_path_buf(), Node::Folder);
            }
        }
        for p in self.subtree(path) {
            self.tree.remove(&p);
        }
        self.tree.insert(path.to_path_buf(), node);
    }
}

impl MemDisk {
    /// An empty disk: only `/`.
    pub(crate) fn new() -> MemDisk {
        let mut state = State::default();
        state.tree.insert(PathBuf::from("/"), Node::Folder);
        MemDisk {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in a caller's decision leaves the tree whole: go on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The mode of a store that writes on this disk, holding no writer lock (no other
    /// process can see this disk).
    pub(crate) fn writer_mode(&self) -> Mode {
        Mode::InMemoryWriter(InMemory(()))
    }

    /// Puts `node` at `path` (its folders made, whatever was there replaced), with no
    /// fault: the scene a test or a run starts from.
    pub(crate) fn put(&self, path: &Path, node: Node) {
        self.state().put(&key(path), node);
    }

    /// The entry at `path`, if any.
    pub(crate) fn get(&self, path: &Path) -> Option<Node> {
        self.state().tree.get(&key(path)).cloned()
    }

    /// Every entry, `/` included, in path order.
    pub(crate) fn entries(&self) -> BTreeMap<PathBuf, Node> {
        self.state().tree.clone()
    }

    /// Another disk with a copy of this one's entries, and no faults.
    pub(crate) fn fork(&self) -> MemDisk {
        let copy = MemDisk::new();
        copy.state().tree = self.entries();
        copy
    }

    /// The next `count` calls of `kind` fail with `errno`.
    pub(crate) fn fail_next(&self, kind: OpKind, count: u32, errno: Errno) {
        self.state().rules.push(Rule::Next {
            kind,
            left: count,
            errno,
        });
    }

    /// Every call on `path`, or on anything below it, fails with `errno` (until
    /// [`MemDisk::clear_faults`]).
    pub(crate) fn fail_at(&self, path: &Path, errno: Errno) {
        self.state().rules.push(Rule::At {
            path: key(path),
            errno,
        });
    }

    /// `decide` is asked about every call (deterministic if it is: a seeded generator).
    pub(crate) fn decide(&self, decide: impl FnMut(&Op) -> Option<Errno> + Send + 'static) {
        self.state().rules.push(Rule::Decide(Box::new(decide)));
    }

    /// No more faults.
    pub(crate) fn clear_faults(&self) {
        self.state().rules.clear();
    }

    /// How many calls failed by a fault so far.
    pub(crate) fn faults_injected(&self) -> u64 {
        self.state().injected
    }
}

impl Calls for MemDisk {
    fn lstat(&self, path: &Path) -> io::Result<FileType> {
        let path = key(path);
        let mut s = self.state();
        s.fault(OpKind::Stat, &path, None)?;
        s.entry(&path).map(Node::file_type)
    }

    fn is_dir(&self, path: &Path) -> bool {
        let path = key(path);
        let mut s = self.state();
        s.fault(OpKind::Stat, &path, None).is_ok() && s.folder(&path).is_ok()
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<(String, FileType)>> {
        let dir = key(dir);
        let mut s = self.state();
        s.fault(OpKind::List, &dir, None)?;
        s.folder(&dir)?;
        Ok(s.tree
            .range(dir.clone()..)
            .skip(1)
            .take_while(|(p, _)| p.starts_with(&dir))
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .filter_map(|(p, node)| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some((name, node.file_type()))
            })
            .collect())
    }

    fn read_regular(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
        let path = key(path);
        let mut s = self.state();
        s.fault(OpKind::Read, &path, None)?;
        match s.entry(&path)? {
            // Read up to one byte past the cap, as a real read does.
            Node::File(bytes) => {
                let end = usize::try_from(cap.saturating_add(1))
                    .map_or(bytes.len(), |n| n.min(bytes.len()));
                crate::files::within(bytes[..end].to_vec(), cap)
            }
            Node::Symlink(_) => Err(err(Errno::ENOENT)),
            other => Err(crate::files::not_regular(other.file_type())),
        }
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        let path = key(path);
        let mut s = self.state();
        s.fault(OpKind::Remove, &path, None)?;
        if *s.entry(&path)? == Node::Folder {
            return Err(err(Errno::EISDIR));
        }
        s.tree.remove(&path);
        Ok(())
    }

    fn create_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let path = key(path);
        let mut s = self.state();
        s.fault(OpKind::Write, &path, None)?;
        s.walk(&path)?;
        if s.tree.contains_key(&path) {
            return Err(err(Errno::EEXIST));
        }
        s.tree.insert(path.clone(), Node::File(bytes.to_vec()));
        // Written, not yet durable: a failed fsync leaves the file as it is.
        s.fault(OpKind::Fsync, &path, None)
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (key(from), key(to));
        let mut s = self.state();
        s.fault(OpKind::Rename, &from, Some(&to))?;
        let moving = s.entry(&from)?.clone();
        s.walk(&to)?;
        if from == to {
            return Ok(());
        }
        if to.starts_with(&from) || from == Path::new("/") {
            return Err(err(Errno::EINVAL));
        }
        match (moving == Node::Folder, s.tree.get(&to)) {
            (_, None) => {}
            (true, Some(Node::Folder)) if s.subtree(&to).len() > 1 => {
                return Err(err(Errno::ENOTEMPTY))
            }
            (true, Some(Node::Folder)) => {}
            (true, Some(_)) => return Err(err(Errno::ENOTDIR)),
            (false, Some(Node::Folder)) => return Err(err(Errno::EISDIR)),
            (false, Some(_)) => {}
        }
        s.tree.remove(&to);
        for old in s.subtree(&from) {
            if let (Some(node), Ok(rest)) = (s.tree.remove(&old), old.strip_prefix(&from)) {
                let new = if rest.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(rest)
                };
                s.tree.insert(new, node);
            }
        }
        Ok(())
    }

    fn fsync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = key(dir);
        let mut s = self.state();
        s.fault(OpKind::Fsync, &dir, None)?;
        s.folder(&dir)
    }

    fn mkdir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = key(dir);
        let mut s = self.state();
        let mut down: Vec<PathBuf> = dir.ancestors().map(Path::to_path_buf).collect();
        down.reverse();
        for p in down {
            match s.tree.get(&p) {
                Some(Node::Folder) => {}
                None => {
                    s.fault(OpKind::MakeFolder, &p, None)?;
                    s.tree.insert(p, Node::Folder);
                }
                // What `create_dir_all` meets: a link or the folder's own name taken is
                // "exists"; a file above it, "not a directory".
                Some(Node::Symlink(_)) => return Err(err(Errno::EEXIST)),
                Some(_) if p == dir => return Err(err(Errno::EEXIST)),
                Some(_) => return Err(err(Errno::ENOTDIR)),
            }
        }
        Ok(())
    }

    fn shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk::Disk;

    fn file(bytes: &[u8]) -> Option<Node> {
        Some(Node::File(bytes.to_vec()))
    }

    #[test]
    fn a_path_is_keyed_by_its_bytes_from_slash() {
        for (path, keyed) in [
            ("/", "/"),
            ("/sim/state/meta.json", "/sim/state/meta.json"),
            ("/sim/state/", "/sim/state"),
            ("/sim//state", "/sim/state"),
            ("/sim/./state/../site", "/sim/site"),
            ("/sim/.tmp-a", "/sim/.tmp-a"),
            ("/..", "/"),
            ("state/x", "/state/x"),
        ] {
            let got = key(Path::new(path));
            assert_eq!(got.as_os_str(), std::ffi::OsStr::new(keyed), "{path}");
        }
    }

    #[test]
    fn a_durable_write_replaces_whole_and_a_failed_one_leaves_the_old_file() {
        let disk = MemDisk::new();
        let dir = Path::new("/state");
        disk.ensure_dir(dir).unwrap();
        disk.write(dir, "a", b"one").unwrap();
        disk.write(dir, "a", b"two").unwrap();
        assert_eq!(disk.get(&dir.join("a")), file(b"two"));
        // A fork is a copy, not the same disk.
        let fork = disk.fork();
        fork.write(dir, "a", b"forked").unwrap();
        assert_eq!(disk.get(&dir.join("a")), file(b"two"));
        // The temporary's fsync fails: it is removed, the old file stays.
        disk.fail_next(OpKind::Fsync, 1, Errno::EIO);
        let e = disk.write(dir, "a", b"three").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::EIO as i32));
        assert_eq!(disk.get(&dir.join("a")), file(b"two"));
        let names: Vec<String> = disk.list(dir).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(disk.faults_injected(), 1);
        // The fault was used up.
        disk.write(dir, "a", b"four").unwrap();
    }

    #[test]
    fn reads_keep_the_contract_of_read_regular() {
        let disk = MemDisk::new();
        disk.put(Path::new("/d/plain"), Node::File(b"12345".to_vec()));
        disk.put(Path::new("/d/fifo"), Node::Other(Special::Fifo));
        disk.put(Path::new("/d/link"), Node::Symlink("/d/plain".into()));
        assert_eq!(disk.read(Path::new("/d/plain"), 5).unwrap(), b"12345");
        let e = disk.read(Path::new("/d/plain"), 4).unwrap_err();
        assert!(crate::files::is_too_large(&e), "{e}");
        assert_eq!(e.to_string(), "larger than 4 bytes");
        let e = disk.read(Path::new("/d/fifo"), 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a FIFO)");
        let e = disk.read(Path::new("/d"), 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a directory)");
        let e = disk.read(Path::new("/d/link"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            disk.file_type(Path::new("/d/link")).unwrap(),
            FileType::Symlink
        );
        let e = disk.read(Path::new("/d/plain/x"), 10).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::ENOTDIR as i32));
    }

    #[test]
    fn renames_follow_linux() {
        let disk = MemDisk::new();
        disk.put(Path::new("/a/x"), Node::File(b"x".to_vec()));
        disk.put(Path::new("/b/y"), Node::File(b"y".to_vec()));
        disk.put(Path::new("/c"), Node::Folder);
        for (from, to, errno) in [
            ("/a", "/b", Errno::ENOTEMPTY),
            ("/a/x", "/c", Errno::EISDIR),
            ("/c", "/c/d", Errno::EINVAL),
            ("/a", "/a/x/z", Errno::ENOTDIR),
            ("/nothing", "/d", Errno::ENOENT),
        ] {
            let e = disk.rename(Path::new(from), Path::new(to)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno as i32), "{from} to {to}");
        }
        // A folder moves with what is in it, onto an empty one.
        disk.rename(Path::new("/a"), Path::new("/c")).unwrap();
        assert_eq!(disk.get(Path::new("/c/x")), file(b"x"));
        assert_eq!(disk.get(Path::new("/a")), None);
    }

    #[test]
    fn faults_by_path_and_by_decision() {
        let disk = MemDisk::new();
        disk.ensure_dir(Path::new("/s/phone")).unwrap();
        disk.put(Path::new("/s/phone/0"), Node::File(b"0".to_vec()));
        disk.fail_at(Path::new("/s/phone"), Errno::EROFS);
        let e = disk.write(Path::new("/s/phone"), "1", b"").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::EROFS as i32));
        // Every call below the path too, and a rename into it.
        let e = disk.read(Path::new("/s/phone/0"), 10).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::EROFS as i32));
        disk.put(Path::new("/s/x"), Node::File(b"x".to_vec()));
        let e = disk
            .rename(Path::new("/s/x"), Path::new("/s/phone/x"))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::EROFS as i32));
        disk.write(Path::new("/s"), "meta", b"m").unwrap();
        disk.clear_faults();
        let mut calls = 0;
        disk.decide(move |op| {
            calls += 1;
            (op.kind == OpKind::Rename && calls > 2).then_some(Errno::ENOSPC)
        });
        let e = disk.write(Path::new("/s"), "meta", b"n").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::ENOSPC as i32));
        assert_eq!(disk.get(Path::new("/s/meta")), file(b"m"));
        assert_eq!(disk.get(Path::new("/s/.tmp-meta")), None);
    }
}
