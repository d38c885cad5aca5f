//! `mynalink-server --version`: what the install test and operators run to see which server a
//! package holds.

#[test]
fn version_flag_prints_the_package_version() {
    for flag in ["--version", "-V"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mynalink-server"))
            .arg(flag)
            .output()
            .expect("run mynalink-server");
        assert!(output.status.success(), "{flag}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim_end(),
            format!("mynalink-server {}", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}
