//! The core's promises that are about its shape.

/// The core does no I/O: no file, socket, thread or system call of its own. The store
/// is reached through `storage` (on the file system it was opened on).
#[test]
fn the_core_names_no_file_socket_thread_or_system_call() {
    const FORBIDDEN: [&str; 8] = [
        "std::fs",
        "std::net",
        "std::thread",
        "std::process",
        "nix::",
        "std::os::",
        "Mono::now",
        "real_now",
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon/core");
    let mut files = vec![root];
    let mut seen = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
            continue;
        }
        // The tests may use what they like; the core may not.
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "tests.rs" || path.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        // Code, not the words about it.
        let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
        for (line, word) in code.flat_map(|l| FORBIDDEN.map(|w| (l, w))) {
            assert!(
                !line.contains(word),
                "{} names {word}: the core does no I/O: {line}",
                path.display()
            );
        }
    }
    assert!(seen >= 5, "only {seen} files of the core were read");
}
