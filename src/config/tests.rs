//! Configuration tests: the example, defaults, every refusal naming its key and the file,
//! path resolution, the MAC from sysfs, durations, and random text never panicking.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::server_url::Credentials;
use super::*;

const FILE: &str = "/opt/demo/agent.toml";
const NO_MAC: &str = "keyring = \"keyring\"\nstate_dir = \"state\"\n";
const BASE: &str = "keyring = \"keyring\"\nstate_dir = \"state\"\nmac = \"0004f2000001\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("{text:?} was refused: {e}"),
    }
}

/// The error for `text`, checked to name the file and `key`, and to say `fragment`.
fn refused(text: &str, key: Option<&str>, fragment: &str) -> ConfigError {
    let e = match parse(text) {
        Ok(config) => panic!("{text:?} was accepted: {config:?}"),
        Err(e) => e,
    };
    assert_eq!(e.file, Path::new(FILE), "{e}");
    assert_eq!(e.key.as_deref(), key, "{text:?}: {e}");
    assert!(
        e.message.contains(fragment),
        "{text:?}: {e} lacks {fragment:?}"
    );
    let shown = e.to_string();
    let prefix = match key {
        Some(key) => format!("{FILE}: {key}: "),
        None => format!("{FILE}: "),
    };
    assert!(shown.starts_with(&prefix), "{shown}");
    assert!(!shown.contains('\n'), "one line: {shown}");
    eprintln!("{shown}");
    e
}

fn serial(text: &str) -> Serial {
    Serial::parse(text).unwrap()
}

#[test]
fn the_example_parses_to_its_values() {
    let config = Config::parse(EXAMPLE, Path::new(DEFAULT_PATH)).unwrap();
    let expected = Config {
        path: PathBuf::from(DEFAULT_PATH),
        mac: MacSource::Fixed(serial("0004f2000001")),
        site_serial: Some(serial("100000000001")),
        keyring: "/etc/license-agent/keyring".into(),
        state_dir: "/var/lib/license-agent".into(),
        servers: vec![ServerUrl::test("https://prov.example.com/phones/")],
        enabled_features: vec![FeatureId(2), FeatureId(1)],
        supervisor: Supervisor::Socket("/run/phone/supervisor.sock".into()),
        control_socket: "/run/license-agent/control.sock".into(),
        features_file: "/run/license-agent/features".into(),
        report: ReportTo::Servers,
        boot_server: crate::config::BootServer::default(),
        reboot_windows: None,
        fetch: Fetch {
            ca_file: Some("/etc/license-agent/provisioning-ca.pem".into()),
            client_identity: Some(ClientIdentity {
                cert: "/etc/license-agent/phone-cert.pem".into(),
                key: "/etc/license-agent/phone-key.pem".into(),
            }),
            username: Some("phone".into()),
            password: Some("secret".into()),
            connect_timeout: Secs(10),
            total_timeout: Secs(60),
        },
        timing: Timing::default(),
        syslog: syslog::Syslog {
            server: Some(syslog::SyslogServer {
                host: "logs.example.com".into(),
                port: 6514,
                transport: syslog::Transport::Tls,
            }),
            facility: 16,
            level: 6,
            local: syslog::Local::Auto,
            ca_file: Some("/etc/license-agent/provisioning-ca.pem".into()),
            client_identity: Some(ClientIdentity {
                cert: "/etc/license-agent/phone-cert.pem".into(),
                key: "/etc/license-agent/phone-key.pem".into(),
            }),
        },
    };
    assert_eq!(config, expected);
    // The example shows the defaults, so it may be copied without changing behaviour.
    assert_eq!(
        config.fetch.connect_timeout,
        Fetch::default().connect_timeout
    );
    assert_eq!(config.fetch.total_timeout, Fetch::default().total_timeout);
}

#[test]
fn the_example_with_its_alternatives_uncommented_parses() {
    let text = EXAMPLE
        .replace("mac = \"0004f2000001\"", "")
        .replace("# interface = \"eth0\"", "interface = \"eth0\"")
        .replace("supervisor_socket = \"/run/phone/supervisor.sock\"", "")
        .replace("# supervisor = \"none\"", "supervisor = \"none\"")
        .replace("# windows = ", "windows = ");
    let config = Config::parse(&text, Path::new(DEFAULT_PATH)).unwrap();
    assert_eq!(config.mac, MacSource::Interface("eth0".into()));
    assert_eq!(config.supervisor, Supervisor::None);
    let windows = config.reboot_windows.expect("the windows");
    assert_eq!(windows.windows.len(), 2);
    assert_eq!(windows.deadline, 7 * 86_400);
}

#[test]
fn reboot_windows_read_and_every_bad_value_names_its_key() {
    let c = ok(&format!(
        "{BASE}[reboot]\nwindows = [\"Mon-Fri 01:00-04:00\"]\ntimezone = \"CET-1CEST,M3.5.0,M10.5.0/3\"\n\
         wait_for_window = [\"license-expired\"]\ndeadline = \"2d\"\n"
    ));
    let s = c.reboot_windows.unwrap();
    assert_eq!(s.deadline, 2 * 86_400);
    assert_eq!(
        s.causes.iter().copied().collect::<Vec<_>>(),
        [crate::engine::reboot::Cause::LicenseExpired]
    );
    // The defaults: both causes but license-expired, 7 days, UTC.
    let d = ok(&format!(
        "{BASE}[reboot]\nwindows = [\"daily 02:00-03:00\"]\n"
    ))
    .reboot_windows
    .unwrap();
    assert_eq!(d.causes.len(), 2);
    assert_eq!(d.deadline, 7 * 86_400);
    // No windows: nothing waits.
    assert!(ok(&format!("{BASE}[reboot]\ntimezone = \"UTC0\"\n"))
        .reboot_windows
        .is_none());
    for (table, key, says) in [
        (
            "windows = [\"Mon-Fri 1:00-04:00\"]",
            "reboot.windows",
            "DAYS HH:MM-HH:MM",
        ),
        (
            "windows = \"Mon-Fri 01:00-04:00\"",
            "reboot.windows",
            "a list of windows",
        ),
        (
            "timezone = \"Europe/Paris\"",
            "reboot.timezone",
            "POSIX TZ rule",
        ),
        (
            "timezone = \":Europe/Paris\"",
            "reboot.timezone",
            "database",
        ),
        (
            "wait_for_window = [\"reboot\"]",
            "reboot.wait_for_window",
            "feature-licensed",
        ),
        ("deadline = \"soon\"", "reboot.deadline", "duration"),
        ("window = []", "reboot.window", "windows"),
    ] {
        refused(&format!("{BASE}[reboot]\n{table}\n"), Some(key), says);
    }
}

#[test]
fn defaults() {
    let config = ok(BASE);
    assert_eq!(config.path, Path::new(FILE));
    assert_eq!(config.site_serial, None);
    assert_eq!(config.servers, []);
    assert!(config.enabled_features.is_empty());
    assert_eq!(
        config.supervisor,
        Supervisor::Socket("/run/phone/supervisor.sock".into())
    );
    assert_eq!(
        config.control_socket,
        Path::new("/run/license-agent/control.sock")
    );
    assert_eq!(
        config.features_file,
        Path::new("/run/license-agent/features")
    );
    assert_eq!(config.fetch, Fetch::default());
    assert_eq!(config.timing, Timing::default());
    // Empty tables are the defaults too.
    assert_eq!(ok(&format!("{BASE}[fetch]\n[timing]\n")), config);

    let t = Timing::default();
    assert_eq!(
        [
            t.windback_tolerance,
            t.poll_interval,
            t.renewal_check_interval,
            t.idle_grace,
            t.stagger_window,
            t.reboot_reask,
            t.retry_initial,
            t.retry_max
        ],
        [86_400, 3_600, 86_400, 30, 3_600, 600, 30, 3_600].map(Secs)
    );
    let f = Fetch::default();
    assert_eq!((f.connect_timeout, f.total_timeout), (Secs(10), Secs(60)));
    assert_eq!(
        (f.ca_file, f.client_identity, f.username, f.password),
        (None, None, None, None)
    );
}

#[test]
fn every_value_is_read() {
    let config = ok(&format!(
        "{NO_MAC}interface = \"wlan0\"\nsite_serial = \"ABCDEF012345\"\n\
         enabled_features = [\"VQMON\", \"feature-00ab\", \"0x0003\", \"4\"]\n\
         supervisor = \"none\"\ncontrol_socket = \"/tmp/c.sock\"\nfeatures_file = \"/tmp/f\"\n\
         [fetch]\nusername = \"u\"\npassword = \"\"\nconnect_timeout = 5\ntotal_timeout = \"2m\"\n\
         [timing]\nwindback_tolerance = 0\npoll_interval = \"1h30m\"\n\
         renewal_check_interval = \"2d\"\nidle_grace = \"0s\"\nstagger_window = 0x10\n\
         reboot_reask = 1_000\nretry_initial = \"1s\"\nretry_max = \"1s\"\n"
    ));
    assert_eq!(config.mac, MacSource::Interface("wlan0".into()));
    assert_eq!(config.site_serial, Some(serial("abcdef012345")));
    assert_eq!(
        config.enabled_features,
        [2, 0xab, 3, 4].map(FeatureId).to_vec()
    );
    assert_eq!(config.supervisor, Supervisor::None);
    assert_eq!(config.control_socket, Path::new("/tmp/c.sock"));
    assert_eq!(config.features_file, Path::new("/tmp/f"));
    assert_eq!(config.fetch.username.as_deref(), Some("u"));
    assert_eq!(config.fetch.password.as_deref(), Some(""));
    assert_eq!(config.fetch.connect_timeout, Secs(5));
    assert_eq!(config.fetch.total_timeout, Secs(120));
    let t = config.timing;
    assert_eq!(
        [
            t.windback_tolerance,
            t.poll_interval,
            t.renewal_check_interval,
            t.idle_grace,
            t.stagger_window,
            t.reboot_reask,
            t.retry_initial,
            t.retry_max
        ],
        [0, 5_400, 172_800, 0, 16, 1_000, 1, 1].map(Secs)
    );
}

#[test]
fn dotted_keys_and_inline_tables_are_tables_too() {
    let config = ok(&format!(
        "{BASE}timing.poll_interval = \"2h\"\nfetch = {{ total_timeout = 30 }}\n"
    ));
    assert_eq!(config.timing.poll_interval, Secs(7_200));
    assert_eq!(config.fetch.total_timeout, Secs(30));
}

#[test]
fn mac_forms() {
    for text in [
        "0004f2000001",
        "0004F2000001",
        "00:04:f2:00:00:01",
        "00:04:F2:00:00:01",
        "00-04-f2-00-00-01",
    ] {
        let config = ok(&format!("{NO_MAC}mac = \"{text}\""));
        assert_eq!(
            config.mac,
            MacSource::Fixed(serial("0004f2000001")),
            "{text}"
        );
    }
    for text in [
        "",
        "0004f200000",
        "0004f20000012",
        "0004f200000g",
        "00:04:f2-00:00:01",
        "00:04:f2:00:00:0",
        "00:04:f2:00:00:001",
        "0:04:f2:00:00:001",
        "00 04 f2 00 00 01",
        "00.04.f2.00.00.01",
        " 0004f2000001",
        "0004f2000001\n",
        "ü004f2000001",
        "000000000000",
        "00:00:00:00:00:00",
    ] {
        refused(&format!("{NO_MAC}mac = {text:?}"), Some("mac"), "");
    }
}

#[test]
fn refusals_name_their_key_and_the_file() {
    let too_long_socket = format!("/run/{}.sock", "s".repeat(100));
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        // Unknown keys, wherever they are.
        (format!("{BASE}keyrnig = 1"), Some("keyrnig"), "unknown key (did you mean keyring?)"),
        (format!("{BASE}colour = \"red\""), Some("colour"), "the keys at the top level are: mac,"),
        (format!("{BASE}[timing]\npoll = \"1h\""), Some("timing.poll"), "the keys in [timing] are: windback_tolerance"),
        (format!("{BASE}[timing]\npoll_intervals = 5"), Some("timing.poll_intervals"), "did you mean poll_interval?"),
        (format!("{BASE}[fetch]\nuser = \"x\""), Some("fetch.user"), "unknown key"),
        (format!("{BASE}timing.foo = 1"), Some("timing.foo"), "unknown key"),
        (format!("{BASE}[foo]\nbar = 1"), Some("foo"), "unknown key"),
        (format!("{BASE}[timing.sub]\nx = 1"), Some("timing.sub"), "unknown key"),
        (format!("{BASE}\"a.b\" = 1"), Some("\"a.b\""), "unknown key"),
        // An unknown key is reported before what it may explain (the missing keyring).
        ("mac = \"0004f2000001\"\nkeyrng = \"k\"\nstate_dir = \"s\"".into(), Some("keyrng"), "did you mean keyring?"),
        // mac / interface.
        (NO_MAC.into(), Some("mac"), "missing; give the phone's MAC"),
        (format!("{NO_MAC}mac = 5"), Some("mac"), "expected a MAC address like \"0004f2000001\", found an integer"),
        (format!("{NO_MAC}mac = \"0004f200001\""), Some("mac"), "not a MAC address"),
        (format!("{BASE}interface = \"eth0\""), Some("interface"), "mac and interface are both given"),
        (format!("{NO_MAC}interface = \"a/b\""), Some("interface"), "cannot contain '/'"),
        (format!("{NO_MAC}interface = \"..\""), Some("interface"), "not an interface name"),
        (format!("{NO_MAC}interface = \"\""), Some("interface"), "1 to 15 bytes"),
        (format!("{NO_MAC}interface = \"abcdefghijklmnop\""), Some("interface"), "1 to 15 bytes"),
        (format!("{NO_MAC}interface = \"eth 0\""), Some("interface"), "cannot contain ' '"),
        (format!("{NO_MAC}interface = [\"eth0\"]"), Some("interface"), "found an array"),
        // Serial, required paths.
        (format!("{BASE}site_serial = \"12345\""), Some("site_serial"), "expected 12 hex digits"),
        (format!("{BASE}site_serial = 100000000001"), Some("site_serial"), "found an integer"),
        ("mac = \"0004f2000001\"\nstate_dir = \"s\"".into(), Some("keyring"), "missing; the path of the trusted keyring"),
        ("mac = \"0004f2000001\"\nkeyring = \"k\"".into(), Some("state_dir"), "missing; the directory"),
        ("mac = \"0004f2000001\"\nkeyring = \"\"\nstate_dir = \"s\"".into(), Some("keyring"), "empty"),
        ("mac = \"0004f2000001\"\nkeyring = 1\nstate_dir = \"s\"".into(), Some("keyring"), "expected the keyring's path, found an integer"),
        ("mac = \"0004f2000001\"\nkeyring = \"k\\u0000\"\nstate_dir = \"s\"".into(), Some("keyring"), "NUL"),
        (format!("{BASE}features_file = true"), Some("features_file"), "found a boolean"),
        // Server URL.
        (format!("{BASE}server = \"sftp://h/\""), Some("server"), "scheme \"sftp\" is not supported"),
        (format!("{BASE}server = \"prov.example.com\""), Some("server"), "no scheme"),
        (format!("{BASE}server = \"https:///phones/\""), Some("server"), "no host"),
        (format!("{BASE}server = \"https:prov\""), Some("server"), "followed by //"),
        (format!("{BASE}server = \"https://h/p?x=1\""), Some("server"), "no query or fragment"),
        (format!("{BASE}server = \"https://u@h/\""), Some("server"), "user:password"),
        (format!("{BASE}server = \"https://u:p%zz@h/\""), Some("server"), "two hex digits"),
        (format!("{BASE}server = \"https://u:p@/\""), Some("server"), "no host"),
        (format!("{BASE}server = \"https://u:p@h/\"\n[fetch]\nusername = \"v\"\npassword = \"q\""), Some("server"), "both the URL's user info and fetch.username"),
        (format!("{BASE}server = \"https://h/a b/\""), Some("server"), "cannot contain ' '"),
        (format!("{BASE}server = \"file://host/x/\""), Some("server"), "with a host"),
        (format!("{BASE}server = \"\""), Some("server"), "empty"),
        // Features.
        (format!("{BASE}enabled_features = \"vqmon\""), Some("enabled_features"), "expected an array of feature names"),
        (format!("{BASE}enabled_features = [\"nope\"]"), Some("enabled_features"), "not a known name"),
        (format!("{BASE}enabled_features = [2]"), Some("enabled_features"), "found an integer"),
        (format!("{BASE}enabled_features = [\"feature-0000\"]"), Some("enabled_features"), "id 0 is not a feature"),
        (format!("{BASE}enabled_features = [\"vqmon\",\n  \"0x0002\"]"), Some("enabled_features"), "line 5, column 3: vqmon is listed twice (also on line 4)"),
        // Supervisor and sockets.
        (format!("{BASE}supervisor = \"systemd\""), Some("supervisor"), "the only value is \"none\""),
        (format!("{BASE}supervisor = false"), Some("supervisor"), "found a boolean"),
        (format!("{BASE}supervisor = \"none\"\nsupervisor_socket = \"/s\""), Some("supervisor"), "both given"),
        (format!("{BASE}supervisor_socket = {too_long_socket:?}"), Some("supervisor_socket"), "at most 107 bytes"),
        (format!("{BASE}control_socket = {too_long_socket:?}"), Some("control_socket"), "at most 107 bytes"),
        (format!("{BASE}control_socket = 5"), Some("control_socket"), "expected a socket path"),
        // [fetch].
        (format!("{BASE}fetch = 1"), Some("fetch"), "expected a table ([fetch]), found an integer"),
        (format!("{BASE}[fetch]\nclient_cert = \"c.pem\""), Some("fetch.client_key"), "missing; fetch.client_cert is given (line 5)"),
        (format!("{BASE}[fetch]\nclient_key = \"k.pem\""), Some("fetch.client_cert"), "go together"),
        (format!("{BASE}[fetch]\nusername = \"u\""), Some("fetch.password"), "missing; fetch.username is given"),
        (format!("{BASE}[fetch]\npassword = \"p\""), Some("fetch.username"), "go together"),
        (format!("{BASE}[fetch]\nusername = \"a:b\"\npassword = \"p\""), Some("fetch.username"), "cannot contain ':'"),
        (format!("{BASE}[fetch]\nusername = \"\"\npassword = \"p\""), Some("fetch.username"), "empty"),
        (format!("{BASE}[fetch]\nusername = \"u\"\npassword = \"p\\n\""), Some("fetch.password"), "control character"),
        (format!("{BASE}[fetch]\nca_file = \"\""), Some("fetch.ca_file"), "empty"),
        (format!("{BASE}[fetch]\nconnect_timeout = \"0s\""), Some("fetch.connect_timeout"), "must be more than zero: every connection would time out"),
        (format!("{BASE}[fetch]\ntotal_timeout = 0"), Some("fetch.total_timeout"), "must be more than zero"),
        (format!("{BASE}[fetch]\ntotal_timeout = \"1 m\""), Some("fetch.total_timeout"), "a duration has no spaces"),
        // [timing]: types and forms.
        (format!("{BASE}timing = \"1h\""), Some("timing"), "expected a table"),
        (format!("{BASE}[[timing]]\npoll_interval = 1"), Some("timing"), "found an array"),
        (format!("{BASE}[timing]\npoll_interval = -5"), Some("timing.poll_interval"), "cannot be negative"),
        (format!("{BASE}[timing]\npoll_interval = \"-5s\""), Some("timing.poll_interval"), "cannot be negative"),
        (format!("{BASE}[timing]\npoll_interval = \"\""), Some("timing.poll_interval"), "empty"),
        (format!("{BASE}[timing]\npoll_interval = \"1x\""), Some("timing.poll_interval"), "unknown unit 'x'"),
        (format!("{BASE}[timing]\npoll_interval = \"60\""), Some("timing.poll_interval"), "60 has no unit"),
        (format!("{BASE}[timing]\npoll_interval = \"1m1h\""), Some("timing.poll_interval"), "from the largest unit to the smallest"),
        (format!("{BASE}[timing]\npoll_interval = \"99999999999999999999s\""), Some("timing.poll_interval"), "too large"),
        (format!("{BASE}[timing]\npoll_interval = 9223372036854775807"), Some("timing.poll_interval"), "too large"),
        (format!("{BASE}[timing]\npoll_interval = \"36501d\""), Some("timing.poll_interval"), "100 years"),
        (format!("{BASE}[timing]\npoll_interval = 1.5"), Some("timing.poll_interval"), "expected a duration: whole seconds (90) or a string like \"90s\", \"1h30m\" or \"2d\", found a float"),
        (format!("{BASE}[timing]\nidle_grace = true"), Some("timing.idle_grace"), "found a boolean"),
        (format!("{BASE}[timing]\nidle_grace = 1979-05-27"), Some("timing.idle_grace"), "found a datetime"),
        (format!("{BASE}[timing]\nwindback_tolerance = {{ h = 1 }}"), Some("timing.windback_tolerance"), "found a table"),
        // [timing]: zero, where it is refused, and the retry order.
        (format!("{BASE}[timing]\npoll_interval = 0"), Some("timing.poll_interval"), "must be more than zero: the agent would poll"),
        (format!("{BASE}[timing]\nreboot_reask = \"0s\""), Some("timing.reboot_reask"), "must be more than zero: the agent would ask"),
        (format!("{BASE}[timing]\nrenewal_check_interval = \"0d\""), Some("timing.renewal_check_interval"), "must be more than zero"),
        (format!("{BASE}[timing]\nstagger_window = \"0s\""), Some("timing.stagger_window"), "must be more than zero: the stagger delay is the MAC's hash modulo the window"),
        (format!("{BASE}[timing]\nretry_initial = 0"), Some("timing.retry_initial"), "must be more than zero"),
        (format!("{BASE}[timing]\nretry_max = \"0m\""), Some("timing.retry_max"), "must be more than zero"),
        (format!("{BASE}[timing]\nretry_initial = \"2h\""), Some("timing.retry_initial"), "2h is longer than timing.retry_max (1h, the default)"),
        (format!("{BASE}[timing]\nretry_max = \"10s\""), Some("timing.retry_max"), "10s is shorter than timing.retry_initial (30s, the default)"),
        (format!("{BASE}[timing]\nretry_max = \"1m\"\nretry_initial = \"1h\""), Some("timing.retry_initial"), "1h is longer than timing.retry_max (1m)"),
        // TOML syntax errors: the key when the line says it, the place always.
        (format!("{BASE}[timing]\npoll_interval = 1h"), Some("timing.poll_interval"), "line 5, column"),
        (format!("{BASE}mac = \"0004f2000002\""), Some("mac"), "invalid TOML"),
        (format!("{BASE}keyring = /etc/keyring"), Some("keyring"), "line 4"),
        (format!("{BASE}[fetch]\nusername = phone"), Some("fetch.username"), "invalid TOML"),
        (format!("{BASE}[timing]\nnot_a_key = 1h"), None, "line 5"),
        (format!("{BASE}===="), None, "line 4, column 2: invalid TOML"),
        (format!("{BASE}[timing"), None, "invalid TOML"),
        ("mac = \"unterminated".into(), Some("mac"), "invalid TOML"),
    ];
    for (text, key, fragment) in &cases {
        refused(text, *key, fragment);
    }
}

#[test]
fn value_errors_give_the_line_and_column_of_the_value() {
    let e = refused(
        &format!("{BASE}[timing]\nidle_grace = \"30s\"\npoll_interval = \"1y\""),
        Some("timing.poll_interval"),
        "unknown unit 'y'",
    );
    assert!(e.message.starts_with("line 6, column 17: \"1y\": "), "{e}");
    let e = refused(&format!("{BASE}\n\n  colour = 1"), Some("colour"), "");
    assert!(
        e.message.starts_with("line 6, column 3: unknown key"),
        "{e}"
    );
}

#[test]
fn a_file_over_the_cap_is_refused() {
    let padding = format!("# {}\n", "x".repeat(100));
    let mut text = BASE.to_string();
    while text.len() <= MAX_FILE_SIZE {
        text.push_str(&padding);
    }
    refused(&text, None, "a configuration file is at most 65536 bytes");
    text.truncate(MAX_FILE_SIZE);
    let cut = text.rfind('\n').unwrap() + 1;
    text.truncate(cut);
    ok(&text);
}

#[test]
fn relative_paths_are_taken_from_the_files_directory() {
    let config = ok(
        "mac = \"0004f2000001\"\nkeyring = \"keys/keyring\"\nstate_dir = \"./state/\"\n\
         features_file = \"../run/features\"\ncontrol_socket = \"/run/c.sock\"\n\
         supervisor_socket = \"sup.sock\"\nserver = \"file:provisioning\"\n\
         [fetch]\nca_file = \"ca.pem\"\nclient_cert = \"/etc/c.pem\"\nclient_key = \"k.pem\"\n",
    );
    assert_eq!(config.keyring, Path::new("/opt/demo/keys/keyring"));
    assert_eq!(config.state_dir, Path::new("/opt/demo/state"));
    assert_eq!(config.features_file, Path::new("/opt/demo/../run/features"));
    assert_eq!(config.control_socket, Path::new("/run/c.sock"));
    assert_eq!(
        config.supervisor,
        Supervisor::Socket("/opt/demo/sup.sock".into())
    );
    assert_eq!(urls(&config), ["file:///opt/demo/provisioning/"]);
    assert_eq!(config.fetch.ca_file, Some("/opt/demo/ca.pem".into()));
    assert_eq!(
        config.fetch.client_identity,
        Some(ClientIdentity {
            cert: "/etc/c.pem".into(),
            key: "/opt/demo/k.pem".into()
        })
    );

    // A configuration path without a directory: the current one, made absolute.
    let here = std::env::current_dir().unwrap();
    let config = Config::parse(BASE, Path::new("agent.toml")).unwrap();
    assert_eq!(config.path, Path::new("agent.toml"));
    assert_eq!(config.keyring, here.join("keyring"));
    let config = Config::parse(BASE, Path::new("demo/agent.toml")).unwrap();
    assert_eq!(config.state_dir, here.join("demo/state"));
}

#[test]
fn server_urls_get_a_trailing_slash() {
    for (given, stored) in [
        (
            "https://prov.example.com/phones/",
            "https://prov.example.com/phones/",
        ),
        (
            "https://prov.example.com/phones",
            "https://prov.example.com/phones/",
        ),
        ("https://prov.example.com", "https://prov.example.com/"),
        ("HTTP://10.0.0.1:8080/p", "http://10.0.0.1:8080/p"),
        ("file:///srv/prov", "file:///srv/prov/"),
        ("file:/srv/prov/", "file:///srv/prov/"),
        ("file:///", "file:///"),
        ("file:prov/./x/", "file:///opt/demo/prov/x/"),
    ] {
        let config = ok(&format!("{BASE}server = {given:?}"));
        let stored = if stored.ends_with('/') {
            stored.to_string()
        } else {
            format!("{stored}/")
        };
        assert_eq!(urls(&config), [stored.as_str()], "{given}");
    }
}

#[test]
fn durations() {
    for (text, secs) in [
        ("0s", 0),
        ("90s", 90),
        ("1m", 60),
        ("10m", 600),
        ("1h30m", 5_400),
        ("1h30m15s", 5_415),
        ("2d", 172_800),
        ("1d2h3m4s", 93_784),
        ("1d4s", 86_404),
        ("007m", 420),
        ("36500d", MAX_SECS),
        ("36499d23h59m60s", MAX_SECS),
    ] {
        assert_eq!(Secs::parse(text), Ok(Secs(secs)), "{text}");
        let config = ok(&format!("{BASE}[timing]\nwindback_tolerance = {text:?}"));
        assert_eq!(config.timing.windback_tolerance, Secs(secs), "{text}");
    }
    for text in [
        "",
        "1",
        "s",
        "h1",
        "1x",
        "1H",
        "1S",
        "1h1h",
        "1m1h",
        "1s1m",
        " 1h",
        "1h ",
        "1 h",
        "-1s",
        "+1s",
        "1.5h",
        "1_000s",
        "½h",
        "1h½",
        "36500d1s",
        "18446744073709551616s",
        "18446744073709551615s",
        "213503982334601d",
        "1ｓ",
    ] {
        assert!(Secs::parse(text).is_err(), "{text:?} accepted");
        refused(
            &format!("{BASE}[timing]\nidle_grace = {text:?}"),
            Some("timing.idle_grace"),
            "",
        );
    }
    for (integer, secs) in [
        ("0", 0),
        ("90", 90),
        ("0x10", 16),
        ("0o10", 8),
        ("1_000", 1_000),
        ("+5", 5),
    ] {
        let config = ok(&format!("{BASE}[timing]\nidle_grace = {integer}"));
        assert_eq!(config.timing.idle_grace, Secs(secs), "{integer}");
    }
    for secs in [0, 1, 59, 60, 61, 3_600, 5_415, 86_400, 93_784, MAX_SECS] {
        let shown = Secs(secs).to_string();
        assert_eq!(Secs::parse(&shown), Ok(Secs(secs)), "{shown}");
    }
    assert_eq!(Secs(5_400).to_string(), "1h30m");
    assert_eq!(Secs(0).to_string(), "0s");
    assert_eq!(Secs(90).duration(), std::time::Duration::from_secs(90));
}

#[test]
fn the_password_is_not_in_debug_output() {
    let config = ok(&format!(
        "{BASE}[fetch]\nusername = \"phone\"\npassword = \"hunter2\""
    ));
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<hidden>"), "{shown}");
    assert!(!format!("{:?}", Fetch::default()).contains("<hidden>"));
}

/// [`Config::load_setting_aside`] of a file with nothing to set aside.
fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load_setting_aside(path).map(|(config, set_aside)| {
        assert!(set_aside.is_empty(), "{set_aside:?}");
        config
    })
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    fs::write(&file, BASE).unwrap();
    let config = load(&file).unwrap();
    assert_eq!(config.path, file);
    assert_eq!(config.keyring, dir.path().join("keyring"));

    let missing = dir.path().join("none.toml");
    let e = load(&missing).unwrap_err();
    assert_eq!(
        (e.file.as_path(), e.key.as_deref()),
        (missing.as_path(), None)
    );
    assert!(e.message.contains("cannot read"), "{e}");

    let e = load(dir.path()).unwrap_err();
    assert!(e.message.contains("cannot read"), "{e}");

    let big = dir.path().join("big.toml");
    fs::write(&big, format!("{BASE}#{}\n", "x".repeat(MAX_FILE_SIZE))).unwrap();
    let e = load(&big).unwrap_err();
    assert_eq!(e.key, None);
    assert!(e.message.contains("larger than 65536 bytes"), "{e}");

    let latin1 = dir.path().join("latin1.toml");
    fs::write(&latin1, b"mac = \"0004f2000001\"\n# caf\xe9\n").unwrap();
    let e = load(&latin1).unwrap_err();
    assert!(e.message.starts_with("line 2, column 6: not UTF-8"), "{e}");
}

/// A fake `/sys/class/net` with one interface per `(name, address file)`.
fn sysfs(interfaces: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, address) in interfaces {
        fs::create_dir(dir.path().join(name)).unwrap();
        fs::write(dir.path().join(name).join("address"), address).unwrap();
    }
    dir
}

fn on_interface(name: &str) -> Config {
    ok(&format!("{NO_MAC}interface = {name:?}"))
}

#[test]
fn mac_from_sysfs() {
    let sys = sysfs(&[
        ("eth0", b"00:04:f2:ab:cd:ef\n"),
        ("eth1", b"00:04:F2:AB:CD:EF"),
        ("lo", b"00:00:00:00:00:00\n"),
        ("junk", b"hello\n"),
        ("empty", b""),
        (
            "ib0",
            b"80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bc:de\n",
        ),
        ("bin", b"\xff\xfe\x00\n"),
    ]);
    let want = serial("0004f2abcdef");
    assert_eq!(on_interface("eth0").mac_from(sys.path()), Ok(want));
    assert_eq!(on_interface("eth1").mac_from(sys.path()), Ok(want));

    let fails = |name: &str, fragment: &str| {
        let e = on_interface(name).mac_from(sys.path()).unwrap_err();
        assert_eq!(e.file, Path::new(FILE), "{e}");
        assert_eq!(e.key.as_deref(), Some("interface"), "{e}");
        assert!(
            e.message.contains(fragment),
            "{name}: {e} lacks {fragment:?}"
        );
        assert!(
            e.to_string().starts_with(&format!("{FILE}: interface: ")),
            "{e}"
        );
    };
    fails("eth9", "no network interface \"eth9\"");
    fails("lo", "all-zero");
    fails("junk", "does not hold the interface's MAC");
    fails("empty", "not a MAC address");
    fails("ib0", "not a MAC address");
    fails("bin", "not a MAC address");

    // A fixed MAC never looks at sysfs.
    assert_eq!(
        ok(BASE).mac_from(Path::new("/nonexistent")),
        Ok(serial("0004f2000001"))
    );

    // The public field set by hand to a path is refused, not followed.
    let mut config = on_interface("eth0");
    config.mac = MacSource::Interface("../eth0".into());
    let e = config.mac_from(&sys.path().join("x")).unwrap_err();
    assert!(e.message.contains("cannot contain '/'"), "{e}");
}

#[test]
fn mac_reads_the_real_sysfs_without_panicking() {
    // Whatever this machine has: an answer, never a panic.
    let _ = on_interface("lo").mac();
    let _ = on_interface("nonexistent0").mac();
}

/// Random edits of the example: deletions, insertions and replacements of bytes.
fn mutated_example() -> impl Strategy<Value = String> {
    let edit = (any::<prop::sample::Index>(), 0u8..3, any::<char>());
    prop::collection::vec(edit, 1..6).prop_map(|edits| {
        let mut text: Vec<char> = EXAMPLE.chars().collect();
        for (at, op, c) in edits {
            let i = at.index(text.len() + 1);
            match op {
                0 if i < text.len() => {
                    text.remove(i);
                }
                1 => text.insert(i, c),
                _ if i < text.len() => text[i] = c,
                _ => text.push(c),
            }
        }
        text.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn toml_like_text_never_panics(
        text in "([a-z_.]{0,12} ?= ?(\"[-0-9a-z:/. ]{0,14}\"|[-+0-9_xob.:]{0,10}|\\[|\\]|\\{|\\}|true)\n|\\[{1,2}[a-z_. ]{0,12}\\]{0,2}\n|#[^\n]{0,10}\n){0,12}"
    ) {
        let _ = parse(&format!("{BASE}{text}"));
        let _ = parse(&text);
    }

    #[test]
    fn edited_example_never_panics(text in mutated_example()) {
        if let Err(e) = Config::parse(&text, Path::new(DEFAULT_PATH)) {
            prop_assert_eq!(e.file, PathBuf::from(DEFAULT_PATH));
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn value_parsers_never_panic(text in any::<String>()) {
        let _ = Secs::parse(&text);
        let _ = values::mac(&text);
        let _ = values::interface(&text);
        let _ = ServerUrl::parse(&text, Path::new("/b"), TRANSPORTS);
        let _ = values::path(&text, Path::new("/b"));
        let _ = values::username(&text);
    }

    #[test]
    fn durations_read_back(secs in 0..=MAX_SECS) {
        prop_assert_eq!(Secs::parse(&Secs(secs).to_string()), Ok(Secs(secs)));
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let cap = MAX_FILE_SIZE - 10;
    let arrays = format!("{BASE}x = {}", "[".repeat(cap - BASE.len()));
    refused(&arrays, None, "invalid TOML");
    let tables = format!("{BASE}x = {}", "{a=".repeat((cap - BASE.len()) / 3));
    refused(&tables, None, "invalid TOML");
    // Dotted keys and headers stop at toml's recursion limit too.
    let dotted = format!(
        "{BASE}timing{} = 1",
        ".a".repeat((cap - BASE.len()) / 2 - 10)
    );
    refused(&dotted, None, "invalid TOML: recursion limit");
    let headers = format!("{BASE}[timing{}]", ".a".repeat((cap - BASE.len()) / 2 - 10));
    refused(&headers, None, "invalid TOML: recursion limit");
    // Within the limit, the unknown key is named.
    refused(
        &format!("{BASE}timing{} = 1", ".a".repeat(40)),
        Some("timing.a"),
        "unknown key",
    );
}

#[test]
fn credentials_in_the_url_are_taken_out_of_it() {
    let text = "keyring = \"k\"\nstate_dir = \"s\"\nmac = \"0004f2000001\"\nserver = \"https://phone:s%40cret@prov.example.com:8443/phones\"\n";
    let config = Config::parse(text, Path::new("/opt/agent.toml")).unwrap();
    assert_eq!(urls(&config), ["https://prov.example.com:8443/phones/"]);
    // They are the server's, not [fetch]'s.
    assert_eq!(config.fetch.username, None);
    let settings = config.servers[0].fetch_settings(&config.fetch);
    assert_eq!(settings.username.as_deref(), Some("phone"));
    assert_eq!(settings.password.as_deref(), Some("s@cret"));
    assert!(!format!("{config:?}").contains("s@cret"));
}

#[test]
fn ftp_and_ftps_servers_take_their_credentials_out_of_the_url() {
    let text = format!(
        "{BASE}server = [\"ftp://PlcmSpIp:Pl%40cm@prov1.example.com/phones\", \"FTPS://prov2.example.com:990/\"]\n"
    );
    let config = ok(&text);
    assert_eq!(
        urls(&config),
        [
            "ftp://prov1.example.com/phones/",
            "ftps://prov2.example.com:990/"
        ]
    );
    assert_eq!(
        config.servers[0].credentials(),
        Some(&Credentials {
            user: "PlcmSpIp".into(),
            password: "Pl@cm".into()
        })
    );
    assert!(
        !format!("{config:?}").contains("Pl@cm"),
        "the password is never shown"
    );
    assert_eq!(config.servers[1].credentials(), None);
}

/// A server URL the configuration refuses is named in the error without its password
/// (the error goes to the log and to whoever runs the command).
#[test]
fn a_refused_server_url_never_shows_its_password() {
    for url in [
        "ftp://u:TopSecret1 x@127.0.0.1/",
        "ftp://u:TopSecret1@127.0.0.1/a?b",
        "ftp://u:TopSecret1@/",
        "https://u:TopSecret1%zz@h/",
        "https://u:TopSecret1%ff@h/",
        "https://u%zz:TopSecret1@h/",
        "gopher://u:TopSecret1@h/",
        "tftp://u:TopSecret1@h/",
        "ftp:u:TopSecret1@h/",
        "ftp:/u:TopSecret1@h/",
        "u:TopSecret1@h/",
    ] {
        let text = format!("{BASE}server = \"{url}\"\n");
        let e = Config::parse(&text, Path::new("/opt/demo/agent.toml")).unwrap_err();
        let shown = e.to_string();
        assert_eq!(e.key.as_deref(), Some("server"), "{url}: {shown}");
        assert!(!shown.contains("TopSecret1"), "{url}: {shown}");
    }
}

fn urls(config: &Config) -> Vec<&str> {
    config.servers.iter().map(ServerUrl::as_str).collect()
}

#[test]
fn a_list_of_servers_keeps_its_order_and_each_one_its_credentials() {
    let text = format!(
        "{BASE}server = [\"tftp://prov1.example.com/\", \"https://u:p@prov2.example.com/phones\", \"file:prov\"]\n"
    );
    let config = ok(&text);
    assert_eq!(
        urls(&config),
        [
            "tftp://prov1.example.com/",
            "https://prov2.example.com/phones/",
            "file:///opt/demo/prov/"
        ]
    );
    assert_eq!(config.servers[0].credentials(), None);
    assert_eq!(
        config.servers[1].credentials(),
        Some(&Credentials {
            user: "u".into(),
            password: "p".into()
        })
    );
    assert_eq!(
        config.servers[0].fetch_settings(&config.fetch).username,
        None
    );
    for (text, expected) in [
        (format!("{BASE}server = []"), "an empty list"),
        (
            format!("{BASE}server = [\"https://a/\", \"https://a\"]"),
            "https://a/ is listed twice",
        ),
        (format!("{BASE}server = [\"https://a/\", 5]"), "found an integer"),
        (
            format!(
                "{BASE}server = [{}]",
                (0..9).map(|i| format!("\"https://h{i}/\"")).collect::<Vec<_>>().join(", ")
            ),
            "more than 8 servers",
        ),
        (
            format!("{BASE}server = [\"https://a/\", \"https://u:p@b/\"]\n[fetch]\nusername = \"v\"\npassword = \"q\""),
            "both the URL's user info and fetch.username",
        ),
        (format!("{BASE}server = \"tftp://u:p@h/\""), "TFTP has no user name"),
    ] {
        let e = Config::parse(&text, Path::new("/opt/demo/agent.toml")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server"), "{text}");
        assert!(e.to_string().contains(expected), "{text}: {e}");
    }
}

/// The schemes of a board's transports are what a build with those features has, and a
/// configuration naming a server over a transport the board does not ship is refused
/// by the agent's own parser (what `cargo xtask` checks every firmware drop with).
#[test]
#[cfg(all(feature = "http", feature = "ftp", feature = "tftp"))]
fn a_board_without_a_transport_refuses_its_servers() {
    assert_eq!(schemes_of(["http", "ftp", "tftp"]), TRANSPORTS);
    assert_eq!(schemes_of(["tftp"]), ["tftp", "file"]);
    let config = |server: &str| {
        format!(
            "mac = \"0004f2000001\"\nkeyring = \"k\"\nstate_dir = \"s\"\nserver = \"{server}\"\n"
        )
    };
    let path = Path::new("/etc/license-agent/agent.toml");
    assert_eq!(
        check_config_text(&config("https://prov/p/"), path, ["http"]),
        Ok(())
    );
    assert_eq!(
        check_config_text(&config("file:///srv/p/"), path, []),
        Ok(())
    );
    let e = check_config_text(&config("tftp://prov/p/"), path, ["http"]).unwrap_err();
    assert!(e.contains("\"tftp://prov/p/\": this agent is built without tftp: its board ships no tftp (it fetches over http, https, file)"), "{e}");
    let e =
        check_config_text(&config("ftps://u:secret@prov/p/"), path, ["http", "tftp"]).unwrap_err();
    assert!(e.contains("ships no ftps") && !e.contains("secret"), "{e}");
    // This build has every transport: the same file parses.
    assert!(Config::parse(&config("tftp://prov/p/"), path).is_ok());
}

/// A path the agent writes (control socket, features file, the status report in a
/// `file:` folder) that is, or lies inside, what it reads or keeps is refused at load,
/// at the key that names it and its line (finding: `control_socket` on the keyring, or
/// `features_file` on `meta.json`, destroyed them).
#[test]
fn output_paths_may_not_be_inputs_or_the_state_folder() {
    let server = "server = \"file:prov/\"\n";
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        // The keyring, the state folder and what is in it.
        (format!("{BASE}control_socket = \"keyring\""), Some("control_socket"), "line 4, column 18: /opt/demo/keyring is the keyring (keyring, line 1): the agent binds its control socket there at every start, in place of a stale one; give another path: the agent must never write over what it reads or keeps"),
        (format!("{BASE}control_socket = \"/opt/demo/state/phone/0000000001.cfg\""), Some("control_socket"), "/opt/demo/state/phone/0000000001.cfg lies inside the state folder /opt/demo/state (state_dir, line 2)"),
        (format!("{BASE}features_file = \"state/meta.json\""), Some("features_file"), "line 4, column 17: /opt/demo/state/meta.json lies inside the state folder"),
        (format!("{BASE}features_file = \"state\""), Some("features_file"), "/opt/demo/state is the state folder (state_dir, line 2): the agent replaces the features file whenever the enabled set changes"),
        (format!("{BASE}features_file = \"state/rejected/x\""), Some("features_file"), "lies inside the state folder"),
        (format!("{BASE}features_file = \"state/lock\""), Some("features_file"), "lies inside the state folder"),
        (format!("{BASE}features_file = \"state/site/0000000002.cfg\""), Some("features_file"), "the agent replaces the features file"),
        // Lexically elsewhere, the same path once `..` is taken (nothing here exists).
        (format!("{BASE}features_file = \"x/../state/meta.json\""), Some("features_file"), "/opt/demo/x/../state/meta.json lies inside the state folder /opt/demo/state (state_dir, line 2) (once symbolic links and '..' are resolved: /opt/demo/state/meta.json)"),
        // The temporary file the features file is written through.
        ("features_file = \"ring\"\nkeyring = \".tmp-ring\"\nstate_dir = \"s\"\nmac = \"0004f2000001\"".into(), Some("features_file"), "line 1, column 17: /opt/demo/.tmp-ring is the keyring (keyring, line 2): the agent writes the features file as /opt/demo/.tmp-ring first"),
        // The configuration file, the supervisor's socket, the TLS files.
        (format!("{BASE}features_file = \"/opt/demo/agent.toml\""), Some("features_file"), "/opt/demo/agent.toml is the configuration file itself: "),
        (format!("{BASE}control_socket = \"agent.toml\""), Some("control_socket"), "is the configuration file itself"),
        (format!("{BASE}control_socket = \"/run/phone/supervisor.sock\""), Some("control_socket"), "/run/phone/supervisor.sock is the supervisor's socket (supervisor_socket, the default)"),
        (format!("{BASE}supervisor_socket = \"sup.sock\"\nfeatures_file = \"sup.sock\""), Some("features_file"), "(supervisor_socket, line 4)"),
        (format!("{BASE}features_file = \"ca.pem\"\n[fetch]\nca_file = \"ca.pem\""), Some("features_file"), "/opt/demo/ca.pem is the CA file (fetch.ca_file, line 6)"),
        (format!("{BASE}control_socket = \"/etc/c.pem\"\n[fetch]\nclient_cert = \"/etc/c.pem\"\nclient_key = \"k.pem\""), Some("control_socket"), "/etc/c.pem is the client certificate (fetch.client_cert, line 6)"),
        (format!("{BASE}features_file = \"k.pem\"\n[fetch]\nclient_cert = \"/etc/c.pem\"\nclient_key = \"k.pem\""), Some("features_file"), "/opt/demo/k.pem is the client key (fetch.client_key, line 7)"),
        (format!("{BASE}features_file = \"logs-ca.pem\"\n[syslog]\nserver = \"tls://logs\"\nca_file = \"logs-ca.pem\""), Some("features_file"), "/opt/demo/logs-ca.pem is the syslog CA file (syslog.ca_file, line 7)"),
        // A file: server's license files, this phone's, the site's, or another phone's.
        (format!("{BASE}{server}features_file = \"prov/0004f2000001-license.cfg\""), Some("features_file"), "line 5, column 17: /opt/demo/prov/0004f2000001-license.cfg is a license file of the server file:///opt/demo/prov/ (server, line 4)"),
        (format!("{BASE}{server}control_socket = \"prov/000000000000-license.cfg\""), Some("control_socket"), "is a license file of the server file:///opt/demo/prov/"),
        (format!("{BASE}{server}features_file = \"prov/0004F2ABCDEF-license.cfg\""), Some("features_file"), "is a license file"),
        (format!("{BASE}{server}control_socket = \"prov/000000000000-license.cfg/c.sock\""), Some("control_socket"), "/opt/demo/prov/000000000000-license.cfg/c.sock lies inside a license file of the server file:///opt/demo/prov/ /opt/demo/prov/000000000000-license.cfg (server, line 4)"),
        // The status report into a folder: the state folder, or a keyring in its place.
        (format!("{BASE}report = \"file:state/reports\""), Some("report"), "line 4, column 10: /opt/demo/state/reports/0004f2000001-license-status.json lies inside the state folder /opt/demo/state (state_dir, line 2): the agent writes its status report into /opt/demo/state/reports/ as <mac>-license-status.json"),
        (format!("{BASE}server = \"file:state/\""), Some("server"), "/opt/demo/state/0004f2000001-license-status.json lies inside the state folder /opt/demo/state (state_dir, line 2): the agent writes its status report into /opt/demo/state/ (report = true, the default) as <mac>-license-status.json, through .tmp-<mac>-license-status.json; give another folder, or report = false"),
        (format!("{BASE}server = [\"https://h/\", \"file:state/site\"]\nreport = true"), Some("server"), "(report = true)"),
        (format!("{NO_MAC}interface = \"eth0\"\nserver = \"file:state\""), Some("server"), "/opt/demo/state/<mac>-license-status.json lies inside the state folder"),
        (format!("{NO_MAC}interface = \"eth0\"\nreport = \"file:/etc/\"\nsupervisor_socket = \"/etc/0004F2000001-license-status.json\""), Some("report"), "/etc/<mac>-license-status.json is the supervisor's socket /etc/0004F2000001-license-status.json (supervisor_socket, line 5)"),
        (format!("{BASE}report = \"file:/etc/\"\nsupervisor_socket = \"/etc/.tmp-0004f2000001-license-status.json\""), Some("report"), "/etc/.tmp-0004f2000001-license-status.json is the supervisor's socket"),
        // A default output on a given input: the input's key is named, at its line.
        (format!("{BASE}state_dir = \"/run/license-agent\"").replace("state_dir = \"state\"\n", ""), Some("state_dir"), "line 3, column 13: the default control_socket /run/license-agent/control.sock lies inside the state folder /run/license-agent: the agent binds"),
        (format!("{BASE}keyring = \"/run/license-agent/features\"").replace("keyring = \"keyring\"\n", ""), Some("keyring"), "line 3, column 11: the default features_file /run/license-agent/features is the keyring: the agent replaces the features file"),
    ];
    for (text, key, fragment) in &cases {
        refused(text, *key, fragment);
    }

    // Neither given: the output's key, without a place.
    let e = Config::parse(BASE, Path::new("/run/license-agent/features")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("features_file"), "{e}");
    assert!(
        e.message.starts_with(
            "the default features_file /run/license-agent/features is the configuration file itself"
        ),
        "{e}"
    );
    // Ports are checked before, paths after everything else: the first error stays the
    // one of the form.
    refused(
        &format!("{BASE}features_file = \"state/meta.json\"\n[timing]\npoll_interval = 0"),
        Some("timing.poll_interval"),
        "must be more than zero",
    );
}

/// What stays allowed: the defaults, the status report into a `file:` server's folder
/// (the normal case), anything else in that folder, a file next to an input, names that
/// only begin like an input's, and a server folder in the state folder without a report.
#[test]
fn output_paths_beside_the_inputs_are_allowed() {
    ok(BASE);
    ok(&format!("{BASE}server = \"file:prov/\""));
    ok(&format!(
        "{BASE}server = \"file:prov/\"\nreport = \"file:prov/\""
    ));
    ok(&format!("{BASE}server = \"file:prov/\"\nreport = true"));
    ok(&format!(
        "{BASE}server = \"file:prov/\"\nfeatures_file = \"prov/features\"\ncontrol_socket = \"prov/c.sock\""
    ));
    ok(&format!(
        "{BASE}server = \"file:prov/\"\nfeatures_file = \"prov/0004f2000001-license.cfg.old\""
    ));
    ok(&format!(
        "{BASE}server = \"file:prov/\"\nfeatures_file = \"prov/site-license.cfg\""
    ));
    ok(&format!(
        "{BASE}features_file = \"/run/license-agent/features\"\ncontrol_socket = \"/run/license-agent/c.sock\""
    ));
    ok(&format!("{BASE}features_file = \"keyring-features\""));
    ok(&format!(
        "{BASE}features_file = \"statefile\"\ncontrol_socket = \"state.sock\""
    ));
    ok(&format!(
        "{BASE}features_file = \"features\"\ncontrol_socket = \"control.sock\""
    ));
    ok(&format!("{BASE}server = \"file:state/\"\nreport = false"));
    ok(&format!(
        "{BASE}server = \"file:state/\"\nreport = \"https://h/r/\""
    ));
    ok(&format!("{BASE}server = \"https://h/\""));
    ok(&format!(
        "{BASE}supervisor = \"none\"\ncontrol_socket = \"/run/phone/supervisor.sock\""
    ));
    ok(&format!(
        "{BASE}report = \"file:/etc/\"\nsupervisor_socket = \"/etc/0004f2000002-license-status.json\""
    ));
    ok(EXAMPLE);
}

/// The check resolves what exists: a symbolic link into the state folder, a state folder
/// or a keyring that is a link; `..` after a link goes where the kernel goes; a link at
/// the output itself is replaced, not followed; a loop is taken as written.
#[test]
fn output_paths_are_compared_once_links_are_resolved() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("agent.toml");
    fs::create_dir_all(d.join("state/phone")).unwrap();
    fs::create_dir_all(d.join("x/y")).unwrap();
    fs::create_dir_all(d.join("keys")).unwrap();
    fs::write(d.join("keys/ring"), "").unwrap();
    symlink(d.join("state"), d.join("link")).unwrap();
    symlink("keys/ring", d.join("keyring")).unwrap();
    symlink(d.join("x/y"), d.join("a")).unwrap();
    symlink("loop", d.join("loop")).unwrap();
    symlink(d.join("state"), d.join("state-link")).unwrap();
    let parse = |extra: &str| Config::parse(&format!("{BASE}{extra}"), &file);
    let refused = |extra: &str, key: &str, fragment: &str| {
        let e = parse(extra).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{extra}: {e}");
        assert!(
            e.message.contains(fragment),
            "{extra}: {e} lacks {fragment:?}"
        );
        assert!(e.message.contains("once symbolic links"), "{e}");
    };
    let state = fs::canonicalize(d.join("state")).unwrap();
    refused(
        "features_file = \"link/meta.json\"",
        "features_file",
        &format!("lies inside the state folder {}", state.display()),
    );
    refused(
        "control_socket = \"link/phone/0000000001.cfg\"",
        "control_socket",
        "lies inside the state folder",
    );
    refused(
        "control_socket = \"link/../state/phone/c.sock\"",
        "control_socket",
        "lies inside the state folder",
    );
    refused(
        "report = \"file:link/\"",
        "report",
        "lies inside the state folder",
    );
    // The keyring is a link: its target is the keyring.
    refused(
        "features_file = \"keys/ring\"",
        "features_file",
        "is the keyring",
    );
    // The state folder given as a link: the folder it points to is the state folder.
    let e = Config::parse(
        &format!(
            "{}state_dir = \"state-link\"\nfeatures_file = \"state/meta.json\"",
            BASE.replace("state_dir = \"state\"\n", "")
        ),
        &file,
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("features_file"), "{e}");

    // `a` is a link to x/y: a/../state is x/state, not the state folder.
    parse("features_file = \"a/../state/meta.json\"").unwrap();
    // A link at the output's own path is replaced by the agent, never followed.
    symlink(d.join("keys/ring"), d.join("features-link")).unwrap();
    parse("features_file = \"features-link\"").unwrap();
    // A loop, or a path under a file, is taken as written.
    parse("features_file = \"loop/features\"\ncontrol_socket = \"loop\"").unwrap();
    parse("features_file = \"keys/ring/features\"").unwrap_err();
    parse("features_file = \"agent.toml.d/features\"").unwrap();
}

/// Every server URL's port, and the report URL's, is checked at load for every scheme:
/// 1 to 65535, digits only (finding: 0, 65536 and -1 failed only at fetch time).
#[test]
fn server_ports_are_checked_at_load() {
    for scheme in ["http", "https", "ftp", "ftps", "tftp"] {
        for (port, fragment) in [
            (
                "0",
                "port 0 is out of range: a port is a number from 1 to 65535",
            ),
            ("65536", "port 65536 is out of range"),
            ("99999999999999999999", "is out of range"),
            ("000", "port 000 is out of range"),
            ("-1", "port \"-1\": a port is a number from 1 to 65535"),
            ("+80", "port \"+80\""),
            ("8o", "port \"8o\""),
            ("", "':' without a port"),
        ] {
            let url = format!("{scheme}://prov.example.com:{port}/phones/");
            let e = refused(&format!("{BASE}server = {url:?}"), Some("server"), fragment);
            assert!(
                e.message
                    .starts_with(&format!("line 4, column 10: \"{url}\": ")),
                "{e}"
            );
            // In a list, at the entry's place.
            let e = refused(
                &format!("{BASE}server = [\"https://ok/\",\n  {url:?}]"),
                Some("server"),
                fragment,
            );
            assert!(e.message.starts_with("line 5, column 3: "), "{e}");
        }
        for port in ["1", "21", "65535", "00080"] {
            ok(&format!(
                "{BASE}server = \"{scheme}://prov.example.com:{port}/phones/\""
            ));
        }
        ok(&format!("{BASE}server = \"{scheme}://[::1]:69/\""));
        ok(&format!("{BASE}server = \"{scheme}://[fe80::1]/\""));
        refused(
            &format!("{BASE}server = \"{scheme}://[::1]:0/\""),
            Some("server"),
            "port 0 is out of range",
        );
        refused(
            &format!("{BASE}server = \"{scheme}://[::1]8080/\""),
            Some("server"),
            "only ':' and the port may follow an IPv6 address",
        );
        refused(
            &format!("{BASE}server = \"{scheme}://[::1/\""),
            Some("server"),
            "an IPv6 address without its ']'",
        );
        refused(
            &format!("{BASE}server = \"{scheme}://fe80::1/\""),
            Some("server"),
            "\"fe80::1\": more than one ':'; an IPv6 address goes in brackets",
        );
        refused(
            &format!("{BASE}server = \"{scheme}://fe80::ab/\""),
            Some("server"),
            "an IPv6 address goes in brackets",
        );
    }
    // With credentials: the port after the user info, and the password never shown.
    ok(&format!("{BASE}server = \"ftp://u:p:w@prov:2121/\""));
    let e = refused(
        &format!("{BASE}server = \"ftp://u:Secret1@prov:65536/\""),
        Some("server"),
        "port 65536 is out of range",
    );
    assert!(!e.to_string().contains("Secret1"), "{e}");
    // The report URL too.
    refused(
        &format!("{BASE}report = \"https://prov:0/reports/\""),
        Some("report"),
        "port 0 is out of range",
    );
    refused(
        &format!("{BASE}report = \"ftp://prov:-1/\""),
        Some("report"),
        "port \"-1\"",
    );
    ok(&format!("{BASE}report = \"https://prov:8443/reports/\""));
}

/// The license names the check protects in a `file:` server are the names the fetch asks
/// for.
#[test]
fn the_protected_license_names_are_the_fetched_ones() {
    let server = "server = \"file:prov/\"\n";
    for name in [
        crate::fetch::SITE_FILE.to_string(),
        crate::fetch::phone_file(serial("0004f2000001")),
        crate::fetch::phone_file(serial("0004f2abcdef")),
    ] {
        refused(
            &format!("{BASE}{server}features_file = \"prov/{name}\""),
            Some("features_file"),
            "is a license file of the server",
        );
    }
}

#[test]
fn the_provisioning_table_defaults_to_the_phones_and_refuses_what_no_phone_takes() {
    use crate::config::{BootServer, DhcpOptions, OptionType, Scheme, ServerSource};
    // No table: the static list, as before.
    assert_eq!(ok(BASE).boot_server, BootServer::default());
    assert!(!ok(BASE).boot_server.locates());
    // DHCP: the phone's defaults, the master file on.
    let dhcp = ok(&format!("{BASE}[provisioning]\nsource = \"dhcp\"\n")).boot_server;
    assert_eq!(dhcp.source, ServerSource::Dhcp);
    assert_eq!(dhcp.options(), [160, 66]);
    assert!(dhcp.master_config);
    assert_eq!(dhcp.server_type, Scheme::Ftp);
    assert_eq!(dhcp.dhcp_file, Path::new("/run/license-agent/dhcp"));
    let all = ok(&format!(
        "{BASE}[provisioning]\nsource = \"dhcp\"\ndhcp_option = \"custom\"\ncustom_option = 128\n\
         custom_option_type = \"address\"\nserver_type = \"https\"\nmaster_config = false\n\
         dhcp_file = \"lease\"\n"
    ))
    .boot_server;
    assert_eq!(all.dhcp_options, DhcpOptions::Custom);
    assert_eq!(all.options(), [128]);
    assert_eq!(all.custom_type, OptionType::Address);
    assert_eq!(all.server_type, Scheme::Https);
    assert!(!all.master_config);
    assert!(all.locates());
    assert!(all.dhcp_file.is_absolute() && all.dhcp_file.ends_with("lease"));
    // The master file with a static server.
    let master = ok(&format!("{BASE}[provisioning]\nmaster_config = true\n")).boot_server;
    assert!(master.locates() && master.source == ServerSource::Static);

    let p = |line: &str| format!("{BASE}[provisioning]\n{line}\n");
    refused(
        &p("source = \"dns\""),
        Some("provisioning.source"),
        "expected one of \"static\", \"dhcp\"",
    );
    assert_eq!(ok(&p("dhcp_option = 66")).boot_server.options(), [66]);
    refused(
        &p("dhcp_option = 160"),
        Some("provisioning.dhcp_option"),
        "found an integer",
    );
    refused(
        &p("dhcp_option = \"160\""),
        Some("provisioning.dhcp_option"),
        "\"custom-then-66\"",
    );
    for n in ["127", "255", "0", "-1", "66"] {
        refused(
            &p(&format!("custom_option = {n}")),
            Some("provisioning.custom_option"),
            "128 to 254",
        );
    }
    refused(
        &p("custom_option = \"160\""),
        Some("provisioning.custom_option"),
        "option number",
    );
    refused(
        &p("custom_option_type = \"ip\""),
        Some("provisioning.custom_option_type"),
        "\"address\"",
    );
    refused(
        &p("server_type = \"file\""),
        Some("provisioning.server_type"),
        "expected one of",
    );
    refused(
        &p("master_config = \"yes\""),
        Some("provisioning.master_config"),
        "true or false",
    );
    refused(
        &p("dhcp_file = 7"),
        Some("provisioning.dhcp_file"),
        "file path",
    );
    refused(
        &p("options = 1"),
        Some("provisioning.options"),
        "unknown key",
    );
    refused(
        &format!("{BASE}provisioning = 1\n"),
        Some("provisioning"),
        "expected a table",
    );
}

/// `[syslog]`: the defaults without the table (the TLS files are `[fetch]`'s), each key
/// read, and every bad value refused at its key.
#[test]
fn the_syslog_table_is_read_and_every_bad_value_named() {
    let none = ok(BASE);
    assert_eq!(none.syslog, syslog::Syslog::default());
    assert_eq!(none.syslog.local, syslog::Local::Auto);
    let fetch = "[fetch]\nca_file = \"ca.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n";
    let inherited = ok(&format!("{BASE}{fetch}[syslog]\nserver = \"tls://logs\"\n"));
    assert_eq!(inherited.syslog.ca_file, Some("/opt/demo/ca.pem".into()));
    assert_eq!(
        inherited.syslog.client_identity,
        inherited.fetch.client_identity
    );
    let own = ok(&format!(
        "{BASE}{fetch}[syslog]\nserver = \"logs:1514\"\ntransport = \"tcp\"\n\
         facility = \"daemon\"\nlevel = \"warning\"\nlocal = \"log.sock\"\n\
         ca_file = \"logs-ca.pem\"\n"
    ));
    assert_eq!(
        own.syslog.server,
        Some(syslog::SyslogServer {
            host: "logs".into(),
            port: 1514,
            transport: syslog::Transport::Tcp
        })
    );
    assert_eq!((own.syslog.facility, own.syslog.level), (3, 4));
    assert_eq!(
        own.syslog.local,
        syslog::Local::Socket("/opt/demo/log.sock".into())
    );
    assert_eq!(own.syslog.ca_file, Some("/opt/demo/logs-ca.pem".into()));
    assert_eq!(
        ok(&format!("{BASE}[syslog]\nlocal = \"on\"\n"))
            .syslog
            .local,
        syslog::Local::Socket("/dev/log".into())
    );
    assert_eq!(
        ok(&format!("{BASE}[syslog]\nlocal = \"off\"\n"))
            .syslog
            .local,
        syslog::Local::Off
    );

    for (table, key, says) in [
        ("server = 5", "syslog.server", "a host"),
        (
            "server = \"http://logs\"",
            "syslog.server",
            "udp://, tcp:// or tls://",
        ),
        ("server = \"logs:99999\"", "syslog.server", "1 to 65535"),
        (
            "server = \"tcp://logs\"\ntransport = \"udp\"",
            "syslog.server",
            "says tcp but transport says udp",
        ),
        (
            "server = \"logs\"\ntransport = \"sctp\"",
            "syslog.transport",
            "expected one of",
        ),
        ("transport = \"tcp\"", "syslog.transport", "without server"),
        (
            "facility = \"local8\"",
            "syslog.facility",
            "one of kern, user",
        ),
        ("facility = 16", "syslog.facility", "a facility"),
        ("level = \"loud\"", "syslog.level", "one of emerg"),
        ("local = \"\"", "syslog.local", "\"auto\", \"on\", \"off\""),
        (
            "client_cert = \"c.pem\"",
            "syslog.client_key",
            "go together",
        ),
        (
            "client_key = \"k.pem\"",
            "syslog.client_cert",
            "go together",
        ),
        ("colour = \"red\"", "syslog.colour", ""),
    ] {
        refused(&format!("{BASE}[syslog]\n{table}\n"), Some(key), says);
    }
}

/// [`Config::parse_setting_aside`] of `text`.
fn setting_aside(text: &str) -> Result<(Config, Vec<ConfigError>), ConfigError> {
    Config::parse_setting_aside(text, Path::new(FILE))
}

/// A bad value of a key the agent can run without is set aside: the key reads as if
/// absent, each such value comes back as its error (in the order found), and the rest
/// of the file is taken as written.
#[test]
fn bad_values_are_set_aside_each_with_its_error() {
    let text = format!(
        "{BASE}server = \"http://prov:0/\"\nenabled_features = [\"vqmon\"]\nbogus = 1\n\
         [timing]\npoll_interval = \"forever\"\nidle_grace = \"45s\"\n\
         [reboot]\nwindows = [\"25:00-26:00\"]\n[syslog]\nfacility = \"nowhere\"\n\
         [fetch]\nwhatever = true\n"
    );
    let (config, set_aside) = setting_aside(&text).unwrap();
    let keys: Vec<&str> = set_aside.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "bogus",
            "server",
            "fetch.whatever",
            "timing.poll_interval",
            "reboot.windows",
            "syslog.facility"
        ]
    );
    assert!(
        set_aside[1].message.contains("port 0 is out of range"),
        "{}",
        set_aside[1]
    );
    // Read as if absent: the defaults; the good values as written.
    assert!(config.servers.is_empty());
    assert_eq!(config.timing.poll_interval, Timing::default().poll_interval);
    assert_eq!(config.timing.idle_grace.0, 45);
    assert!(config.reboot_windows.is_none());
    assert_eq!(config.syslog, syslog::Syslog::from_fetch(&Fetch::default()));
    assert_eq!(config.enabled_features.len(), 1);
    assert_eq!(config.mac, ok(BASE).mac);
}

/// A table of the wrong type, and two keys that contradict each other: set aside too.
#[test]
fn a_table_of_the_wrong_type_and_a_contradiction_are_set_aside() {
    let (config, set_aside) = setting_aside(&format!(
        "{BASE}reboot = 3\nsupervisor = \"none\"\nsupervisor_socket = \"/run/s\"\n"
    ))
    .unwrap();
    let keys: Vec<&str> = set_aside.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(keys, ["supervisor", "reboot"], "{set_aside:?}");
    assert_eq!(
        config.supervisor,
        Supervisor::Socket(PathBuf::from("/run/s"))
    );
}

/// Who the phone is, what it trusts and where its licenses are: never set aside, and a
/// file that is not TOML, or has too many bad values, is refused as a whole.
#[test]
fn what_the_phone_cannot_run_without_is_still_refused() {
    for (text, key) in [
        (format!("{NO_MAC}mac = \"xyz\"\n"), Some("mac")),
        (NO_MAC.to_string(), Some("mac")),
        (format!("{NO_MAC}interface = \"a/b\"\n"), Some("interface")),
        (format!("{BASE}site_serial = \"12\"\n"), Some("site_serial")),
        (
            "mac = \"0004f2000001\"\nstate_dir = \"state\"\nkeyring = 5\n".to_string(),
            Some("keyring"),
        ),
        (
            "mac = \"0004f2000001\"\nkeyring = \"keyring\"\n".to_string(),
            Some("state_dir"),
        ),
        (format!("{BASE}[timing\n"), None),
    ] {
        let e = setting_aside(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), key, "{text:?}: {e}");
    }
    let many: String = (0..=MAX_SET_ASIDE)
        .map(|n| format!("unknown{n} = 1\n"))
        .collect();
    let e = setting_aside(&format!("{BASE}{many}")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("unknown32"), "{e}");
    let (_, set_aside) = setting_aside(&format!(
        "{BASE}{}",
        &many[..many.rfind("unknown32").unwrap()]
    ))
    .unwrap();
    assert_eq!(set_aside.len(), MAX_SET_ASIDE);
}

proptest! {
    /// Whatever is appended to a good file, reading it sets aside only what it must:
    /// it never panics, it ends, and a file it takes parses strictly once the keys set
    /// aside are left out (each was the file's error at its turn).
    #[test]
    fn setting_aside_ends_and_keeps_the_good_values(tail in "[a-z_\\[\\]=\" .0-9\n]{0,200}") {
        let text = format!("{BASE}{tail}");
        if let Ok((config, set_aside)) = setting_aside(&text) {
            prop_assert!(set_aside.len() <= MAX_SET_ASIDE);
            prop_assert_eq!(config.mac, ok(BASE).mac);
            prop_assert_eq!(config.keyring, ok(BASE).keyring);
            prop_assert_eq!(config.state_dir, ok(BASE).state_dir);
            if set_aside.is_empty() {
                prop_assert!(parse(&text).is_ok());
            }
        }
    }
}
