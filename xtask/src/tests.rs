//! The board files and the check of a generated `agent.toml`: the shipped boards pass,
//! and a bad board or a bad generated configuration is refused with the file and key.

use std::path::{Path, PathBuf};

use crate::board::{self, Board};
use crate::render;

fn repo() -> PathBuf {
    crate::repo_root()
}

/// The vvx-armv7 board file's text with `key`'s line replaced by `line` (appended when
/// `key` is not in the file).
fn vvx_with(key: &str, line: &str) -> String {
    let text = std::fs::read_to_string(repo().join("boards/vvx-armv7.toml")).unwrap();
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.split('=').next().map(str::trim) == Some(key) {
                found = true;
                line.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        out.push(line.to_string());
    }
    out.join("\n") + "\n"
}

fn parse(text: &str) -> Result<Board, board::BoardError> {
    board::parse(text, Path::new("/boards/vvx-armv7.toml"))
}

/// The check of the configuration generated from a board text.
fn check(text: &str) -> Result<(), String> {
    let b = parse(text).map_err(|e| format!("board refused: {e}"))?;
    render::check_config(&b, &render::config(&b))
}

#[test]
fn every_shipped_board_loads_and_its_generated_files_pass() {
    let names = board::names(&repo());
    assert!(names.len() >= 3, "{names:?}");
    for name in names {
        let b = board::load(&name, &repo()).unwrap_or_else(|e| panic!("{e}"));
        crate::firmware::generated(&b, &repo()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_drop_gets_its_dhcp_clients_hook_executable() {
    for name in board::names(&repo()) {
        let b = board::load(&name, &repo()).unwrap_or_else(|e| panic!("{e}"));
        let g = crate::firmware::generated(&b, &repo()).unwrap_or_else(|e| panic!("{e}"));
        let (text, on_phone, mode) = g.dhcp_hook;
        let want = match b.init {
            board::Init::Sysv => "/usr/share/udhcpc/default.script.d/license-agent",
            board::Init::Systemd => "/etc/dhcp/dhclient-exit-hooks.d/license-agent",
        };
        assert_eq!(on_phone, want, "{name}");
        assert_eq!(mode, 0o755, "{name}");
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
        assert!(text.contains("/run/license-agent/dhcp"), "{name}");
    }
    // A board whose control socket is elsewhere than the hook's default is refused.
    let b = parse(&vvx_with(
        "control_socket",
        "control_socket = \"/run/other/control.sock\"",
    ))
    .unwrap();
    let e = crate::firmware::generated(&b, &repo()).err().unwrap();
    assert!(e.contains("control_socket"), "{e}");
}

#[test]
fn a_server_whose_transport_the_board_does_not_ship_is_refused() {
    let http_only = vvx_with("transports", "transports = \"http\"");
    let with = |server: &str| http_only.replace("server = \"\"", &format!("server = \"{server}\""));
    assert_eq!(check(&with("https://prov.example.com/phones/")), Ok(()));
    assert_eq!(check(&with("file:///data/prov/")), Ok(()));
    let e = check(&with("tftp://prov.example.com/phones/")).unwrap_err();
    assert!(e.contains("ships no tftp"), "{e}");
    let e = check(&with("ftps://prov.example.com/phones/")).unwrap_err();
    assert!(e.contains("ships no ftps"), "{e}");
    // The same server is fine on a board that ships it.
    let tftp = vvx_with("transports", "transports = \"http tftp\"").replace(
        "server = \"\"",
        "server = \"tftp://prov.example.com/phones/\"",
    );
    assert_eq!(check(&tftp), Ok(()));
}

#[test]
fn a_generated_config_the_agent_refuses_is_caught() {
    // The board file is fine by its own rules; the agent's parser is what refuses.
    let twice = vvx_with("enabled_features", "enabled_features = \"vqmon vqmon\"");
    let e = check(&twice).unwrap_err();
    assert!(e.contains("does not parse") && e.contains("twice"), "{e}");
    let unknown = vvx_with("enabled_features", "enabled_features = \"no-such-feature\"");
    let e = check(&unknown).unwrap_err();
    assert!(
        e.contains("does not parse") && e.contains("enabled_features"),
        "{e}"
    );

    // A template that yields an unknown key.
    let b = parse(&vvx_with("name", "name = \"vvx-armv7\"")).unwrap();
    let good = render::config(&b);
    assert_eq!(render::check_config(&b, &good), Ok(()));
    let e = render::check_config(&b, &(good.clone() + "bogus = 1\n")).unwrap_err();
    assert!(e.contains("bogus"), "{e}");
    let e = render::check_config(&b, &good.replace("keyring = ", "# keyring = ")).unwrap_err();
    assert!(e.contains("keyring"), "{e}");
}

#[test]
fn bad_board_files_are_refused_naming_the_file_and_key() {
    let cases: [(String, &str); 12] = [
        (vvx_with("colour", "colour = \"red\""), "colour"),
        (vvx_with("target", "# no target"), "target"),
        (
            vvx_with("target", "target = \"mips-unknown-linux-gnu\""),
            "target",
        ),
        (vvx_with("max_bytes", "max_bytes = 2800000"), "max_bytes"),
        (vvx_with("max_bytes", "max_bytes = \"2.8 MB\""), "max_bytes"),
        (
            vvx_with("transports", "transports = \"http gopher\""),
            "transports",
        ),
        (vvx_with("name", "name = \"vvx\""), "name"),
        (
            vvx_with("state_dir", "state_dir = \"data/license-agent\""),
            "state_dir",
        ),
        (vvx_with("log", "log = \"journal\""), "log"),
        (
            vvx_with("description", "description = \"a\\nserver = 1\""),
            "description",
        ),
        (
            vvx_with("interface", "interface = \"eth0\"\ninterface = \"eth1\""),
            "interface",
        ),
        (vvx_with("init", "[init]"), "init"),
    ];
    for (text, key) in cases {
        let e = parse(&text).expect_err(key);
        let shown = e.to_string();
        assert!(shown.starts_with("/boards/vvx-armv7.toml: "), "{shown}");
        assert!(shown.contains(key), "{key}: {shown}");
    }
    assert!(parse("").is_err());
    assert!(parse("\u{0}").is_err());
    let e = board::load("no-such-board", &repo()).unwrap_err();
    assert!(e.to_string().contains("no such board"), "{e}");
}

#[test]
fn the_generated_config_is_what_the_board_says() {
    let text = vvx_with("server", "server = \"https://prov.example.com/phones/\"").replace(
        "enabled_features = \"\"",
        "enabled_features = \"vqmon usb-call-recording\"",
    );
    let b = parse(&text).unwrap();
    let config = render::config(&b);
    assert!(config.contains("\nserver = \"https://prov.example.com/phones/\"\n"));
    assert!(config.contains("\nenabled_features = [\"vqmon\", \"usb-call-recording\"]\n"));
    assert!(config.contains("\nsupervisor_socket = \"/run/phone/supervisor.sock\"\n"));
    assert_eq!(render::check_config(&b, &config), Ok(()));
    let unit = "[Service]\n@STATE_LINES@\nRuntimeDirectory=@RUNTIME_DIRECTORY@\n\n\n";
    assert_eq!(
        render::template(&b, unit, "t").unwrap(),
        "[Service]\nReadWritePaths=/data/license-agent\n# Not under /var/lib (no \
         StateDirectory=): created before the sandbox is set up.\nExecStartPre=+/bin/mkdir \
         -p -m 0700 /data/license-agent\nRuntimeDirectory=license-agent\n"
    );
    let e = render::template(&b, "x @NOPE@ @system-service\n", "t").unwrap_err();
    assert_eq!(e, "t: placeholders left: @NOPE@");
}
