//! Helpers shared by the end-to-end tests in `tests/`: this crate has no library code of its
//! own beyond them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `rill` binary, built once per test process: `RILL_BIN` when set, otherwise
/// `cargo build -p rill --bin rill` with the running test's target directory and profile
/// (`cargo test -p rill-tests` alone does not build workspace binaries).
pub fn rill_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(binary) = std::env::var_os("RILL_BIN") {
            return PathBuf::from(binary);
        }
        // The test runs as <target>/<profile>/deps/cli-<hash>; the binary goes to
        // <target>/<profile>/rill.
        let test = std::env::current_exe().expect("path of the test executable");
        let profile_dir = test
            .parent()
            .and_then(Path::parent)
            .expect("the test executable sits in <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("a profile directory has a parent");
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("profile directory {} has no name", profile_dir.display()),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate sits in the workspace");
        let output = Command::new(cargo)
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", target_dir)
            .args([
                "build",
                "--quiet",
                "-p",
                "rill",
                "--bin",
                "rill",
                "--profile",
            ])
            .arg(profile)
            .output()
            .expect("cargo runs");
        assert!(
            output.status.success(),
            "cargo build of the rill binary failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let binary = profile_dir.join("rill");
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}
