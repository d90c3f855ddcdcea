//! The Debian package: `tools/package-deb.sh --no-build --fast` packages the release binary this test
//! run built (cargo-deb), checks `dpkg-deb -c`/`-I`/`-e` (binary, units, conffile, sysusers.d,
//! maintainer scripts), installs, upgrades, removes and purges it in a scratch root
//! (`dpkg --root`, chrootless maintainer scripts), and runs `deploy/install.sh --root` in another.
//! Needs root, dpkg and systemd's tools (CI has them): elsewhere it says so loudly and returns,
//! or only runs the package checks (`--check-only`) when it is not root.

mod common;

use std::process::Command;
use std::time::Instant;

/// Skips loudly outside CI, fails in CI.
fn skip(why: &str) {
    let msg = format!("{why} — the Debian package test (tools/package-deb.sh) needs it");
    if common::in_ci() {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPING: {msg} !!!!!!!!\n");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_debian_package_has_its_files_and_installs_into_a_scratch_root() {
    for tool in ["dpkg", "dpkg-deb", "readelf"] {
        if !have(tool) {
            return skip(&format!(
                "{tool} is not installed (apt-get install dpkg binutils)"
            ));
        }
    }
    // cargo-deb packages target/release/ggufd: the binary cargo built for this test run.
    let bin = common::ggufd();
    let release = bin.parent().unwrap();
    if release.file_name().is_none_or(|n| n != "release") {
        eprintln!(
            "\n!!!!!!!! SKIPPING: ggufd is not a release build ({}); run cargo test --release !!!!!!!!\n",
            bin.display()
        );
        return;
    }
    let mut target_dir = release.parent().unwrap().to_path_buf();
    // --fast: lighter xz compression (the contents are the same; 10 s instead of 60 s).
    let mut args = vec!["--no-build".to_string(), "--fast".to_string()];
    // cargo test --target T puts it in <target dir>/T/release.
    let triple = target_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if triple.ends_with("-linux-gnu") {
        args.extend(["--target".to_string(), triple]);
        target_dir.pop();
    }
    let cargo_deb_installed = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_deb_installed && !common::in_ci() {
        return skip(
            "cargo-deb is not installed (cargo install cargo-deb --version 3.8.0 --locked)",
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if common::in_ci() {
            panic!("the scratch-root installs of tools/package-deb.sh need root");
        }
        eprintln!("\n!!!!!!!! not root: package checks only, no scratch-root installs !!!!!!!!\n");
        args.push("--check-only".to_string());
    } else {
        for tool in ["systemd-sysusers", "deb-systemd-helper", "systemctl"] {
            if !have(tool) {
                return skip(&format!(
                    "{tool} is not installed (apt-get install systemd init-system-helpers)"
                ));
            }
        }
    }

    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(common::repo_root().join("tools/package-deb.sh"))
        .args(&args)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("run tools/package-deb.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tools/package-deb.sh {args:?} failed ({}):\n{stderr}{stdout}",
        out.status
    );
    eprintln!("{stderr}");
    let deb = stdout.lines().last().unwrap_or_default();
    assert!(deb.ends_with(".deb"), "no .deb reported: {stdout:?}");
    assert!(std::path::Path::new(deb).is_file(), "{deb} does not exist");
    eprintln!("tools/package-deb.sh: {deb} in {:.1?}", t0.elapsed());
}
