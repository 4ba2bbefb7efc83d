//! The daemon against neighbours that misbehave in ways the liveness tests (issue 11)
//! did not model (issue 23): a supervisor that stops reading, a control socket path held
//! by a listener that never accepts, descriptors running out, clients that drip their
//! requests, check-syncs that wait on a silent server, a supervisor flipping its call
//! state. The real `license-agent` binary (or the armv7 one under qemu-arm), the
//! in-process test supervisor and control clients of `common`, the test clock.

use crate::common;

use std::time::{Duration, Instant};

use common::now;
use common::phone::DAY;
use common::supervisor::TestSupervisor;

use crate::liveness::{phone_with_supervisor, secs, Proc, PATIENCE};

/// A REBOOT the agent cannot write at once is never one that reaches the supervisor
/// after a `CALL-STATE active` the agent read meanwhile: with the supervisor not
/// reading (its socket full of the agent's ERR answers to its junk), a license ends
/// after the grace; the supervisor then says `CALL-STATE active`, the agent shows the
/// call, and only then does the supervisor read again: no REBOOT comes until the call
/// has ended and the grace passed.
#[test]
fn a_reboot_is_never_queued_behind_lines_the_supervisor_has_not_read() {
    let (phone, socket) = phone_with_supervisor("[timing]\nidle_grace = \"2s\"\n");
    let end = now() + 100 * DAY;
    let license = phone.sign("phone", &[("vqmon", end - 200 * DAY, Some(end))]);
    phone.install_at(&license, end - 100);
    let sup = TestSupervisor::start(&socket, "idle");
    let mut daemon = Proc::spawn(&phone, Some(end - 60));
    assert!(sup.wait_connected(PATIENCE), "{}", daemon.log_tail(30));
    assert!(sup.wait_line("FEATURES vqmon", 1, PATIENCE).is_some());
    daemon.wait_control();

    // The supervisor stops reading and sends junk until the agent's answers fill the
    // socket and its own buffer (it says it drops ERR answers then).
    sup.stop_reading(true);
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(phone.path("daemon.log"))
        .unwrap_or_default()
        .contains("does not read its ERR answers")
    {
        assert!(Instant::now() < deadline, "{}", daemon.log_tail(30));
        assert!(sup.flood("junk", 2_000), "the supervisor's flood");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The license ends, long after the idle period began: a reboot is due at once.
    let set = common::control::request(
        &phone.path("control.sock"),
        &format!(r#"{{"cmd":"test-set-time","now":{}}}"#, end + 1),
        PATIENCE,
    );
    assert!(set.is_ok_and(|(v, _)| v["ok"] == true), "test-set-time");
    daemon
        .wait_status(|s| s["daemon"]["reboot"]["pending"] == true)
        .expect("a reboot is needed");
    // A call begins; the agent reads it (it still reads) and shows it.
    std::thread::sleep(Duration::from_millis(500));
    let active = sup.call("active").expect("connected");
    daemon
        .wait_status(|s| {
            s["daemon"]["call_state"]
                .as_str()
                .is_some_and(|c| c.starts_with("active"))
        })
        .unwrap_or_else(|| panic!("the call is seen:\n{}", daemon.log_tail(30)));

    // The supervisor reads again: everything the agent wrote arrives; no REBOOT.
    sup.stop_reading(false);
    assert!(sup.barrier(PATIENCE), "{}", daemon.log_tail(30));
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(sup.barrier(PATIENCE));
    if let Some((at, line)) = sup.wait_line("REBOOT", 1, Duration::ZERO) {
        panic!(
            "{line} arrived {} after CALL-STATE active, mid-call\n{}",
            secs(at.saturating_duration_since(active.at)),
            daemon.log_tail(30)
        );
    }

    // The call ends: the REBOOT comes after the whole grace.
    let idle = sup.call("idle").expect("connected");
    let (at, line) = sup
        .wait_line("REBOOT", 1, PATIENCE)
        .unwrap_or_else(|| panic!("no REBOOT after the call:\n{}", daemon.log_tail(30)));
    assert!(line.ends_with(" license-expired"), "{line}");
    assert!(
        at.saturating_duration_since(idle.at) >= Duration::from_secs(2),
        "{line} came {} after CALL-STATE idle",
        secs(at.saturating_duration_since(idle.at))
    );
}
