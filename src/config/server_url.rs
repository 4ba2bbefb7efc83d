//! A provisioning server's base URL (`server`, `report`), parsed once, when the
//! configuration is read: the scheme as a [`Scheme`], the host, the port (the scheme's
//! default when none is written), the path, and the credentials of the user info kept
//! apart, never shown. The transports take what they need from it; nothing takes the
//! URL's text apart again.
//!
//! The text is first checked here, part by part, so that a refusal says what is wrong in
//! the configuration's words (and never shows a password); then the `url` crate (already
//! in the tree through reqwest) parses it without its user info, and that parse is the
//! URL from then on.

// A build without every transport leaves some of the parts unused.
#![cfg_attr(
    not(all(feature = "http", feature = "tftp", feature = "ftp")),
    allow(dead_code)
)]

use std::fmt;
use std::path::Path;

use url::Url;

use super::values::{self, shown};

/// A server URL's scheme: the transports, and folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Http,
    Https,
    Ftp,
    Ftps,
    Tftp,
    File,
}

impl Scheme {
    /// Every scheme, in the order the messages list them.
    const ALL: [Scheme; 6] = [
        Scheme::Http,
        Scheme::Https,
        Scheme::Ftp,
        Scheme::Ftps,
        Scheme::Tftp,
        Scheme::File,
    ];

    /// The scheme's name, in lower case: `https`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Ftp => "ftp",
            Scheme::Ftps => "ftps",
            Scheme::Tftp => "tftp",
            Scheme::File => "file",
        }
    }

    /// The scheme named `name`, in any case.
    pub(crate) fn named(name: &str) -> Option<Scheme> {
        Scheme::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The port a URL of this scheme means when it names none (0 for a folder, which has
    /// no port). FTPS is explicit (`AUTH TLS` on the FTP port).
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Ftp | Scheme::Ftps => 21,
            Scheme::Tftp => 69,
            Scheme::File => 0,
        }
    }

    /// Whether a server of this scheme takes the agent's uploads (every one but TFTP).
    pub(crate) fn takes_uploads(self) -> bool {
        self != Scheme::Tftp
    }

    /// Whether the scheme is over TLS (`https`, `ftps`).
    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Ftps)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A user name and password from a URL's user info (percent-decoded). `Debug` does not
/// show the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// One provisioning server's base URL, ending with `/` (file names are appended to it),
/// without its user info; the credentials that user info gave (they replace
/// `fetch.username` and `fetch.password` for this server) are kept beside it.
/// `Display` is the URL without credentials; `Debug` shows the user name, never the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    scheme: Scheme,
    /// No user info; the path ends with `/`.
    url: Url,
    /// The path, percent-decoded (as is where it does not decode to UTF-8).
    path: String,
    credentials: Option<Credentials>,
}

impl ServerUrl {
    /// The URL without credentials, ending with `/`: `https://prov.example.com/phones/`.
    pub(crate) fn as_str(&self) -> &str {
        self.url.as_str()
    }

    pub(crate) fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host to connect to: a name, or an address (an IPv6 one without brackets);
    /// empty for a folder.
    pub(crate) fn host(&self) -> &str {
        let host = self.url.host_str().unwrap_or("");
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port: the one written, or the scheme's default.
    pub(crate) fn port(&self) -> u16 {
        self.url
            .port()
            .unwrap_or_else(|| self.scheme.default_port())
    }

    /// The path, percent-decoded, from its leading `/` to its trailing one: `/phones/`.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// A `file:` server's folder, ending with `/`; `None` for the other schemes.
    pub(crate) fn folder(&self) -> Option<&Path> {
        (self.scheme == Scheme::File).then(|| Path::new(&self.path))
    }

    /// The credentials of the URL's user info.
    pub(crate) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The URL of the file `name` on this server (no credentials).
    pub(crate) fn file_url(&self, name: &str) -> String {
        format!("{}{name}", self.url)
    }

    /// The fetch settings for this server: `fetch` with its URL's credentials.
    pub(crate) fn fetch_settings(&self, fetch: &super::Fetch) -> super::Fetch {
        let mut fetch = fetch.clone();
        if let Some(Credentials { user, password }) = &self.credentials {
            fetch.username = Some(user.clone());
            fetch.password = Some(password.clone());
        }
        fetch
    }

    /// The folder `relative` under this server's base (a master configuration file's
    /// `LICENSE_DIRECTORY`), with the same scheme, host and credentials: segments of
    /// ASCII letters, digits and `-._~!$&'()*+,;=:@`, separated by `/` (a leading or
    /// trailing one is ignored); never `.` or `..`, so it cannot climb out of the base.
    pub(crate) fn subfolder(&self, relative: &str) -> Result<ServerUrl, String> {
        let trimmed = relative.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(self.clone());
        }
        for segment in trimmed.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(format!(
                    "{}: a folder under the server is plain names separated by '/' (no \
                     empty, '.' or '..' part)",
                    shown(relative)
                ));
            }
            if let Some(c) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(*c)))
            {
                return Err(format!(
                    "{}: a folder name cannot contain {c:?}",
                    shown(relative)
                ));
            }
        }
        let mut url = self.url.clone();
        url.set_path(&format!("{}{trimmed}/", self.url.path()));
        Ok(ServerUrl {
            scheme: self.scheme,
            path: decoded(url.path()),
            url,
            credentials: self.credentials.clone(),
        })
    }

    /// A URL for the tests of other modules, as the configuration would read it.
    #[cfg(test)]
    pub(crate) fn test(text: &str) -> ServerUrl {
        match ServerUrl::parse(text, Path::new("/"), super::TRANSPORTS) {
            Ok(url) => url,
            Err(why) => panic!("{text}: {why}"),
        }
    }

    /// Parses a base URL as the configuration gives it: `http://[user:password@]host
    /// [:port]/path/`, `https://…`, `ftp://…`, `ftps://…`, `tftp://host[:port]/path/` (no
    /// credentials), or a folder as `file:///absolute/path/` or `file:relative/path/`
    /// (relative to `base`, kept absolute), for a build fetching over `schemes`. A `/` is
    /// added at the end when missing. The error says what is wrong, naming the URL without
    /// its user info.
    pub(crate) fn parse(text: &str, base: &Path, schemes: &[&str]) -> Result<ServerUrl, String> {
        const FORMS: &str = "expected http://host/path/, https://host/path/, ftp://host/path/, \
                             ftps://host/path/, tftp://host/path/, file:///absolute/path/ or \
                             file:relative/path/";
        if text.is_empty() {
            return Err(format!("empty; {FORMS}"));
        }
        // Every message names the URL without its user info: errors go to the log.
        let shown_url = shown(&without_user_info(text));
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{shown_url}: a URL cannot contain {c:?}"));
        }
        let Some((name, rest)) = text.split_once(':') else {
            return Err(format!("{shown_url}: no scheme; {FORMS}"));
        };
        let Some(scheme) = Scheme::named(name) else {
            return Err(format!(
                "{shown_url}: scheme {:?} is not supported; {FORMS}",
                name.to_ascii_lowercase()
            ));
        };
        if !schemes.contains(&scheme.name()) {
            return Err(format!(
                "{shown_url}: this agent is built without {scheme}: its board ships no \
                 {scheme} (it fetches over {})",
                schemes.join(", ")
            ));
        }
        if scheme == Scheme::File {
            return folder(rest, base, &shown_url, FORMS);
        }
        let Some(after) = rest.strip_prefix("//") else {
            return Err(format!(
                "{shown_url}: {scheme}: is followed by // and the host; {FORMS}"
            ));
        };
        let authority = after.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return Err(format!("{shown_url}: no host; {FORMS}"));
        }
        if after.contains(['?', '#']) {
            return Err(format!(
                "{shown_url}: a base URL has no query or fragment: the file names are \
                 appended to it"
            ));
        }
        let (host, credentials) = url_credentials(authority, &shown_url)?;
        if host.is_empty() {
            return Err(format!("{shown_url}: no host; {FORMS}"));
        }
        if scheme == Scheme::Tftp && credentials.is_some() {
            return Err(format!("{shown_url}: TFTP has no user name or password"));
        }
        port(host).map_err(|why| format!("{shown_url}: {why}"))?;
        let mut plain = format!("{scheme}://{host}{}", &after[authority.len()..]);
        if !plain.ends_with('/') {
            plain.push('/');
        }
        let url = Url::parse(&plain).map_err(|e| format!("{shown_url}: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{shown_url}: no host; {FORMS}"));
        }
        Ok(ServerUrl {
            scheme,
            path: decoded(url.path()),
            url,
            credentials,
        })
    }
}

/// A `file:` URL's folder (after `file:`), resolved against `base`.
fn folder(rest: &str, base: &Path, shown_url: &str, forms: &str) -> Result<ServerUrl, String> {
    let written = match rest.strip_prefix("//") {
        Some(p) if p.starts_with('/') => p,
        Some(_) => {
            return Err(format!(
                "{shown_url}: a file URL with a host is not supported; {forms}"
            ))
        }
        None => rest,
    };
    let resolved = values::path(written, base)?;
    if resolved.to_str().is_none() {
        return Err(format!(
            "{shown_url}: the folder {} is not UTF-8",
            resolved.display()
        ));
    }
    // Absolute (`base` is), and UTF-8: the `url` crate takes it.
    let url = Url::from_directory_path(&resolved).map_err(|()| {
        format!(
            "{shown_url}: the folder {} is not absolute",
            resolved.display()
        )
    })?;
    let path = decoded(url.path());
    Ok(ServerUrl {
        scheme: Scheme::File,
        url,
        path,
        credentials: None,
    })
}

/// The URL without credentials.
impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerUrl")
            .field("url", &self.as_str())
            .field("username", &self.credentials.as_ref().map(|c| &c.user))
            .finish()
    }
}

/// `text` (a URL as given) as messages show it: without its user info, quoted, cut.
pub(crate) fn shown_url(text: &str) -> String {
    shown(&without_user_info(text))
}

/// Why percent-decoding failed.
enum Undecodable {
    /// A `%` not followed by two hex digits.
    Escape,
    /// Bytes that are not UTF-8.
    NotUtf8,
}

/// Percent-decodes `text`: `%40` is `@`.
fn percent_decode(text: &str) -> Result<String, Undecodable> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(byte.ok_or(Undecodable::Escape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Undecodable::NotUtf8)
}

/// A URL's path percent-decoded, or as it is when it does not decode (a lone `%`, bytes
/// that are not UTF-8).
fn decoded(path: &str) -> String {
    percent_decode(path).unwrap_or_else(|_| path.to_string())
}

/// User info percent-decoded, or why not.
fn decode_user_info(text: &str, what: &str) -> Result<String, String> {
    percent_decode(text).map_err(|e| match e {
        Undecodable::Escape => format!("{what}: a '%' must be followed by two hex digits"),
        Undecodable::NotUtf8 => format!("{what} is not UTF-8 once decoded"),
    })
}

/// Splits `user:password@` off an authority.
fn url_credentials<'a>(
    authority: &'a str,
    shown_url: &str,
) -> Result<(&'a str, Option<Credentials>), String> {
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok((authority, None));
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return Err(format!(
            "{shown_url}: the user info must be user:password (or give fetch.username and \
             fetch.password)"
        ));
    };
    let user = decode_user_info(user, &format!("{shown_url}: the user name"))?;
    let password = decode_user_info(password, &format!("{shown_url}: the password"))?;
    values::username(&user).map_err(|e| format!("{shown_url}: the user name: {e}"))?;
    values::password(&password).map_err(|e| format!("{shown_url}: the password {e}"))?;
    Ok((host, Some(Credentials { user, password })))
}

/// The port of a URL's host (`host`, `host:port`, `[v6]` or `[v6]:port`, the user info
/// taken off), checked for every scheme alike before the `url` crate parses it, to say
/// what is wrong: digits, 1 to 65535, or none (the scheme's default).
fn port(host: &str) -> Result<(), String> {
    let port = match host.strip_prefix('[') {
        Some(v6) => {
            let Some((_, after)) = v6.split_once(']') else {
                return Err(format!("{}: an IPv6 address without its ']'", shown(host)));
            };
            match after {
                "" => return Ok(()),
                _ => after.strip_prefix(':').ok_or_else(|| {
                    format!(
                        "{}: only ':' and the port may follow an IPv6 address",
                        shown(host)
                    )
                })?,
            }
        }
        None => match host.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err(format!(
                    "{}: more than one ':'; an IPv6 address goes in brackets: [fe80::1]:8080",
                    shown(host)
                ))
            }
            Some((_, port)) => port,
            None => return Ok(()),
        },
    };
    const RANGE: &str = "a port is a number from 1 to 65535";
    if port.is_empty() {
        return Err(format!(
            "':' without a port; {RANGE} (or leave out the ':' for the scheme's default)"
        ));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {}: {RANGE}", shown(port)));
    }
    // Only digits: the parse fails on overflow alone.
    match port.trim_start_matches('0').parse::<u32>() {
        Ok(n) if (1..=65_535).contains(&n) => Ok(()),
        _ => Err(format!("port {port} is out of range: {RANGE}")),
    }
}

/// `text` with the user info of its authority (after the scheme, up to the last `@`
/// before the path) replaced by `***`, so that no password is ever shown, even in a URL
/// too broken to parse.
fn without_user_info(text: &str) -> String {
    let (scheme, rest) = match text.split_once(':') {
        Some((scheme, rest)) => (format!("{scheme}:"), rest),
        None => (String::new(), text),
    };
    // However many slashes follow the scheme (`ftp:/u:p@h/` is broken, and still shown
    // without its password).
    let authority = rest.trim_start_matches('/');
    let slashes = &rest[..rest.len() - authority.len()];
    // Up to the last `@` anywhere: a password written with a raw `/`, `?` or `#` (not
    // percent-encoded) ends the authority early for a parser, never for this mask; a
    // path holding an `@` is masked too, the safe side of a message.
    match authority.rfind('@') {
        Some(at) => format!("{scheme}{slashes}***{}", &authority[at..]),
        None => text.to_string(),
    }
}

/// Servers for people, in order: `https://a/, ftp://b/` (credentials never shown).
pub(crate) fn listed(servers: &[ServerUrl]) -> String {
    let bases: Vec<&str> = servers.iter().map(ServerUrl::as_str).collect();
    bases.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ServerUrl {
        ServerUrl::test(text)
    }

    #[test]
    fn the_parts_of_a_url() {
        for (text, scheme, host, port, path) in [
            ("http://prov/", Scheme::Http, "prov", 80, "/"),
            (
                "HTTPS://Prov.Example:8443/a/b",
                Scheme::Https,
                "prov.example",
                8443,
                "/a/b/",
            ),
            ("ftp://u:p@prov/phones", Scheme::Ftp, "prov", 21, "/phones/"),
            ("ftps://[fe80::1]/", Scheme::Ftps, "fe80::1", 21, "/"),
            ("FTPS://prov:990/x/", Scheme::Ftps, "prov", 990, "/x/"),
            (
                "tftp://10.0.0.1/a%20b/",
                Scheme::Tftp,
                "10.0.0.1",
                69,
                "/a b/",
            ),
            ("tftp://[::1]:6969/", Scheme::Tftp, "::1", 6969, "/"),
            (
                "ftp://prov/lizenzen-ä/",
                Scheme::Ftp,
                "prov",
                21,
                "/lizenzen-ä/",
            ),
            ("file:///srv/prov", Scheme::File, "", 0, "/srv/prov/"),
        ] {
            let url = parse(text);
            assert_eq!(
                (url.scheme(), url.host(), url.port(), url.path()),
                (scheme, host, port, path),
                "{text}"
            );
            assert!(url.as_str().ends_with('/'), "{url}");
        }
        assert_eq!(
            parse("file:///srv/prov").folder(),
            Some(Path::new("/srv/prov/"))
        );
        assert_eq!(parse("https://prov/").folder(), None);
        assert_eq!(
            parse("https://prov/a/").file_url("x.cfg"),
            "https://prov/a/x.cfg"
        );
        assert!(!Scheme::Tftp.takes_uploads());
        assert!(Scheme::ALL
            .iter()
            .all(|s| Scheme::named(&s.name().to_ascii_uppercase()) == Some(*s)));
    }

    /// The credentials are kept, and neither `Display` nor `Debug` shows the password
    /// (in any form: as written, or decoded).
    #[test]
    fn credentials_are_kept_and_never_shown() {
        let url = parse("ftp://PlcmSpIp:Pa%40ss-W0rd@prov.example.com:2121/phones/");
        assert_eq!(
            url.credentials(),
            Some(&Credentials {
                user: "PlcmSpIp".into(),
                password: "Pa@ss-W0rd".into(),
            })
        );
        let shown = [
            url.to_string(),
            format!("{url:?}"),
            format!("{:?}", url.credentials()),
            url.file_url("x"),
        ];
        for text in &shown {
            assert!(!text.contains("Pa@ss"), "{text}");
            assert!(!text.contains("Pa%40ss"), "{text}");
        }
        assert_eq!(shown[0], "ftp://prov.example.com:2121/phones/");
        assert!(shown[1].contains("PlcmSpIp"), "{}", shown[1]);
    }

    /// What the `url` crate refuses that the checks before it let through is refused too,
    /// naming the URL.
    #[test]
    fn what_the_url_crate_refuses_is_refused_at_load() {
        for text in ["http://999.1.1.1/", "https://a<b/", "tftp://:69/"] {
            let e = ServerUrl::parse(text, Path::new("/"), super::super::TRANSPORTS).unwrap_err();
            assert!(e.starts_with(&format!("{text:?}: ")), "{e}");
        }
    }
}
