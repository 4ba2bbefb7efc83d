//! The phone's master configuration file (`<mac>.cfg`, else `000000000000.cfg`, or the
//! `.cfg` file a server URL names): the two attributes of its `APPLICATION` element the
//! agent needs, `LICENSE_DIRECTORY` and `LOG_FILE_DIRECTORY`, and where they lead.
//!
//! A strict, small reader: the file must be well-formed XML (quick-xml events, end tags
//! matched) whose root element is `APPLICATION`; every other element and attribute is
//! ignored, a DOCTYPE is refused (no entity can be declared, so none expands), and an
//! attribute value must be printable ASCII of at most [`MAX_DIRECTORY`] bytes. What
//! does not read is an error naming what and where; the caller keeps the directories it
//! knew.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::config::{Scheme, ServerUrl};
use crate::format::Serial;

/// The site-wide master configuration file.
pub(crate) const SITE_MASTER: &str = "000000000000.cfg";

/// The longest directory attribute, in bytes.
pub(crate) const MAX_DIRECTORY: usize = 255;

/// The master files to ask for, in order: the one a server URL named, or the phone's
/// and then the site's.
pub(crate) fn names(mac: Serial, named: Option<&str>) -> Vec<String> {
    match named {
        Some(name) => vec![name.to_string()],
        None => vec![format!("{mac}.cfg"), SITE_MASTER.to_string()],
    }
}

/// The two directories as the file writes them (`None`: not there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directories {
    pub(crate) licenses: Option<String>,
    pub(crate) logs: Option<String>,
}

/// Reads a master configuration file.
pub(crate) fn parse(bytes: &[u8]) -> Result<Directories, String> {
    let mut reader = Reader::from_reader(bytes);
    let config = reader.config_mut();
    config.check_comments = true;
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut found: Option<Directories> = None;
    let mut depth = 0usize;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("not well-formed XML at byte {at}: {e}"))?;
        match event {
            Event::Eof => break,
            Event::DocType(_) => return Err(format!("a DOCTYPE at byte {at}: not taken")),
            Event::Start(element) => {
                if depth == 0 {
                    root(&element, &mut found, at)?;
                }
                depth += 1;
            }
            Event::Empty(element) if depth == 0 => root(&element, &mut found, at)?,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(text) if depth == 0 && !text.iter().all(u8::is_ascii_whitespace) => {
                return Err(format!("text outside the root element at byte {at}"));
            }
            Event::CData(_) if depth == 0 => {
                return Err(format!("text outside the root element at byte {at}"));
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("the file ends inside an element: cut short?".into());
    }
    found.ok_or_else(|| "no APPLICATION element: not a master configuration file".to_string())
}

/// The root element: `APPLICATION`, once.
fn root(
    element: &quick_xml::events::BytesStart<'_>,
    found: &mut Option<Directories>,
    at: u64,
) -> Result<(), String> {
    if found.is_some() {
        return Err(format!("a second root element at byte {at}"));
    }
    let name = element.name();
    if name.as_ref() != b"APPLICATION" {
        return Err(format!(
            "the root element is {:?}, not APPLICATION: not a master configuration file",
            String::from_utf8_lossy(name.as_ref())
        ));
    }
    let mut dirs = Directories::default();
    for attribute in element.attributes() {
        let attribute =
            attribute.map_err(|e| format!("APPLICATION's attributes do not read: {e}"))?;
        let slot = match attribute.key.as_ref() {
            b"LICENSE_DIRECTORY" => &mut dirs.licenses,
            b"LOG_FILE_DIRECTORY" => &mut dirs.logs,
            _ => continue,
        };
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute
            .unescape_value()
            .map_err(|e| format!("{key} does not read: {e}"))?;
        if value.len() > MAX_DIRECTORY {
            return Err(format!(
                "{key} is {} bytes; at most {MAX_DIRECTORY}",
                value.len()
            ));
        }
        if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "{key} holds {c:?}: a folder or a URL is printable ASCII"
            ));
        }
        *slot = Some(value.into_owned());
    }
    *found = Some(dirs);
    Ok(())
}

/// Where a directory attribute leads from `server`, the server the master file came
/// from: missing or empty, the server itself; a URL of one of `schemes` (not a folder
/// of the phone: `file`), that URL; else a folder under the server.
pub(crate) fn resolve(
    server: &ServerUrl,
    directory: Option<&str>,
    schemes: &[&str],
) -> Result<ServerUrl, String> {
    let Some(directory) = directory.filter(|d| !d.is_empty()) else {
        return Ok(server.clone());
    };
    if !directory.contains("://") {
        return server.subfolder(directory);
    }
    let schemes: Vec<&str> = schemes.iter().copied().filter(|s| *s != "file").collect();
    let url = ServerUrl::parse(directory, std::path::Path::new("/"), &schemes)?;
    if url.scheme() == Scheme::File {
        return Err(format!("{url}: not a folder of the phone"));
    }
    Ok(url)
}
