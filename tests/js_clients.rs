//! Runs the JavaScript suite (tests/js, npm `socket.io-client`) against the server binary
//! this `cargo test` built, so the README's one test command covers everything. Installs the
//! npm dependencies first when they are missing.

use std::{path::Path, process::Command};

#[test]
fn javascript_clients_suite() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js");
    let installed = ["socket.io-client", "axios"].iter().all(|m| dir.join("node_modules").join(m).exists());
    if !installed {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is installed");
        assert!(status.success(), "npm ci failed");
    }
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=4", "--test-timeout=300000", "--test-reporter=spec"])
        .current_dir(&dir)
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .status()
        .expect("node is installed");
    assert!(status.success(), "JavaScript client tests failed (see the output above)");
}
