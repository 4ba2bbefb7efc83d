//! Publishing the enabled feature set for the phone firmware: the features file.
//!
//! Format (ASCII, one line per enabled feature, sorted by feature id; `#` lines are
//! comments):
//!
//! ```text
//! # license-agent: enabled features, one per line: NAME END (RFC 3339 UTC, or never)
//! usb-call-recording never
//! vqmon 2027-06-01T00:00:00Z
//! ```
//!
//! No line means no licensed feature. The file is written atomically (the firmware never
//! reads half a file) and only when the set changes, or when it is missing (a `/run`
//! emptied by a reboot).

use std::collections::BTreeMap;
use std::path::Path;

use crate::format::{End, FeatureId};
use crate::storage::disk::Disk;
use crate::storage::PublishedFeature;

/// The enabled set: feature → governing end.
pub(crate) type FeatureSet = BTreeMap<FeatureId, End>;

/// The file's text for a set.
pub(crate) fn render(set: &FeatureSet) -> String {
    let mut out = String::from(
        "# license-agent: enabled features, one per line: NAME END (RFC 3339 UTC, or never)\n",
    );
    for (id, end) in set {
        out.push_str(&format!("{id} {end}\n"));
    }
    out
}

/// The set as `meta.json` keeps it.
pub(crate) fn to_meta(set: &FeatureSet) -> Vec<PublishedFeature> {
    set.iter()
        .map(|(id, end)| PublishedFeature {
            id: id.0,
            end: match end {
                End::At(t) => Some(*t),
                End::Never => None,
            },
        })
        .collect()
}

/// The set `meta.json` kept.
pub(crate) fn from_meta(published: &[PublishedFeature]) -> FeatureSet {
    published
        .iter()
        .map(|p| (FeatureId(p.id), p.end.map_or(End::Never, End::At)))
        .collect()
}

/// Writes the features file if its content differs from `set` (or it is missing).
/// Returns whether it wrote.
#[cfg(test)]
pub(crate) fn publish(path: &Path, set: &FeatureSet) -> std::io::Result<bool> {
    publish_on(&crate::storage::disk::RealDisk, path, set)
}

/// [`publish`] on `disk`.
pub(crate) fn publish_on(disk: &dyn Disk, path: &Path, set: &FeatureSet) -> std::io::Result<bool> {
    let text = render(set);
    // Compared through a bounded, non-blocking read: a FIFO or a device put in its
    // place is simply replaced.
    let cap = text.len() as u64;
    if disk.read(path, cap).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(false);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    disk.ensure_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "features_file has no file name",
        )
    })?;
    disk.write(dir, name, text.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> FeatureSet {
        BTreeMap::from([
            (FeatureId(2), End::At(1_798_761_600)),
            (FeatureId(1), End::Never),
        ])
    }

    #[test]
    fn renders_one_line_per_feature_in_id_order() {
        assert_eq!(
            render(&set()),
            "# license-agent: enabled features, one per line: NAME END (RFC 3339 UTC, or never)\n\
             usb-call-recording never\nvqmon 2027-01-01T00:00:00Z\n"
        );
        assert_eq!(render(&FeatureSet::new()).lines().count(), 1);
    }

    #[test]
    fn writes_only_when_the_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/features");
        assert!(publish(&path, &set()).unwrap(), "missing: written");
        assert!(!publish(&path, &set()).unwrap(), "same: not written");
        assert!(
            publish(&path, &FeatureSet::new()).unwrap(),
            "changed: written"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn publishes_on_a_memory_disk_and_a_failed_write_leaves_what_was_there() {
        use crate::storage::disk::Special;
        use crate::storage::memdisk::{MemDisk, Node, OpKind};
        use nix::errno::Errno;
        let disk = MemDisk::new();
        let path = Path::new("/run/license-agent/features");
        disk.put(path, Node::Other(Special::Fifo));
        disk.fail_next(OpKind::Rename, 1, Errno::ENOSPC);
        let e = publish_on(&disk, path, &set()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::ENOSPC as i32));
        assert_eq!(disk.get(path), Some(Node::Other(Special::Fifo)));
        // The FIFO is replaced at the next try, and the same set is not written again.
        assert!(publish_on(&disk, path, &set()).unwrap());
        let text = render(&set()).into_bytes();
        assert_eq!(disk.get(path), Some(Node::File(text)));
        disk.fail_next(OpKind::Write, 1, Errno::EIO);
        assert!(!publish_on(&disk, path, &set()).unwrap());
    }

    #[test]
    fn meta_round_trip() {
        assert_eq!(from_meta(&to_meta(&set())), set());
    }
}
