//! The tests' private PostgreSQL cluster does not outlive the test processes that use it.

use std::process::Command;
use std::time::{Duration, Instant};

use budget_events::db::testing::{join_cluster, scratch_dir};

#[test]
fn the_private_test_cluster_stops_once_its_last_user_has_exited() {
    let dir = scratch_dir("reaper");
    // A stand-in for a test process: the cluster is registered to it, not to this one.
    let mut user = Command::new("sleep").arg("30").spawn().unwrap();
    let pg = join_cluster(&dir, user.id(), 2).unwrap();
    assert!(pg.is_running());

    // Alive user: the reaper leaves the cluster running well past its idle limit.
    std::thread::sleep(Duration::from_secs(4));
    assert!(pg.is_running(), "stopped while its user was alive");

    user.kill().unwrap();
    user.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.is_running() {
        assert!(Instant::now() < deadline, "the cluster still runs 30 s after its last user exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
