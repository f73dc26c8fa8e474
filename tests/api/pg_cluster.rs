//! Throwaway PostgreSQL clusters of the suite's own (the TLS and failover tests), run with
//! the system's binaries on a free port, as the `postgres` OS user when the tests run as root
//! (PostgreSQL refuses root). Each is stopped at once (`-m immediate`) when dropped.

use crate::test_ca::free_port;
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// One cluster's directory, port and runner.
pub(crate) struct Cluster {
    bin: PathBuf,
    /// Its data directory.
    pub(crate) pgdata: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub(crate) port: u16,
    run_as: Option<nix::unistd::User>,
}

impl Cluster {
    /// A cluster to be made in `pgdata` (created here, empty, mode 0700).
    pub(crate) fn new(pgdata: PathBuf) -> Self {
        let run_as = nix::unistd::geteuid()
            .is_root()
            .then(|| nix::unistd::User::from_name("postgres").unwrap().unwrap());
        let cluster = Self {
            bin: epop::db::embedded::find_bin_dir().expect("PostgreSQL is installed"),
            pgdata,
            port: free_port(),
            run_as,
        };
        if let Some(parent) = cluster.pgdata.parent() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::create_dir(&cluster.pgdata).unwrap();
        std::fs::set_permissions(&cluster.pgdata, std::fs::Permissions::from_mode(0o700)).unwrap();
        cluster.own(&cluster.pgdata);
        cluster
    }

    /// Gives `path` to the user the cluster runs as.
    pub(crate) fn own(&self, path: &Path) {
        if let Some(u) = &self.run_as {
            nix::unistd::chown(path, Some(u.uid), Some(u.gid)).unwrap();
        }
    }

    /// `initdb` with trust authentication and superuser `postgres`.
    pub(crate) fn init(&self) {
        self.run(
            "initdb",
            &[
                "-D",
                &self.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
            ],
        );
    }

    /// Starts it on 127.0.0.1 and its port with the extra server `options` (`-c k=v ...`),
    /// and waits until it accepts connections (or, for a standby, is consistent).
    pub(crate) fn start(&self, options: &str) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} {options}",
            self.port,
            self.pgdata.display(),
        );
        let log = self.pgdata.join("log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
            ],
        );
    }

    /// Stops it at once, as a crash would (no shutdown checkpoint, clients cut).
    pub(crate) fn kill(&self) {
        let _ = self.command("pg_ctl", &["stop", "-m", "immediate", "-D", &self.data()]);
    }

    /// Runs one of PostgreSQL's programs as the cluster's user; panics when it fails.
    pub(crate) fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program, args);
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    }

    /// Runs one of PostgreSQL's programs as the cluster's user.
    pub(crate) fn command(&self, program: &str, args: &[&str]) -> Output {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args).env("LC_ALL", "C");
        if let Some(u) = &self.run_as {
            cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        cmd.output().unwrap()
    }

    /// The data directory as text, for command lines.
    pub(crate) fn data(&self) -> String {
        self.pgdata.to_string_lossy().into_owned()
    }

    /// A URL of its `postgres` database as `postgres`, through `host`.
    pub(crate) fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}
