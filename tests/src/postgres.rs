//! PostgreSQL for the tests (the event store of issue 24): a fresh database on the shared test
//! server, or a whole cluster of a test's own for the tests that restart or kill the server.
//!
//! The shared server is the one `.ci/postgres` starts (Debian's postgresql-15, a cluster in a
//! temporary directory, on 127.0.0.1 with a password); it hands the tests its address through
//! `BATTLEPLAN_TEST_POSTGRES` (a URL without the password) and
//! `BATTLEPLAN_TEST_POSTGRES_PASSWORD`. A private cluster needs only the PostgreSQL binaries
//! (`initdb` in `/usr/lib/postgresql/*/bin` or on `PATH`).
//!
//! **When PostgreSQL is missing:** under `CI=true` the test fails (`.ci/run` starts the server
//! before the tests, so a missing one is a broken CI, never a reason to pass); on a developer's
//! machine the test is skipped, loudly: a banner on stderr (written past the test harness's
//! capture, so it shows even for a passing test) names the test and the command to run,
//! `eval "$(bash .ci/postgres)"`, then `cargo test`. The helpers return `None` for a skip, and
//! the test returns early:
//!
//! ```text
//! let Some(database) = postgres::database("appends_in_order") else { return };
//! ```
//!
//! Nothing here drops a database: the cluster is temporary, and dropping from `Drop` inside an
//! async test is trouble. A [`PrivateCluster`] is stopped and removed when dropped.
//!
//! This file is also compiled into the adapters crate's tests (`#[path =
//! "../../tests/src/postgres.rs"] mod postgres;`), so it uses only std, tokio and
//! tokio-postgres, which both crates depend on.

// Test support: a panic is how a broken setup is reported. Each includer uses only part of this.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The shared server's URL (`postgres://postgres@127.0.0.1:PORT/postgres`, no password).
pub const URL_VARIABLE: &str = "BATTLEPLAN_TEST_POSTGRES";
/// The password of the shared server's `postgres` role.
pub const PASSWORD_VARIABLE: &str = "BATTLEPLAN_TEST_POSTGRES_PASSWORD";
/// What a developer runs to have the shared server (it installs PostgreSQL too, as root).
pub const START_COMMAND: &str = "eval \"$(bash .ci/postgres)\"";

/// The shared test server, from the environment.
#[derive(Clone)]
pub struct Server {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`, without the password.
    pub url: String,
    pub password: String,
}

/// A database of one test's own on the shared server, left in place when dropped.
#[derive(Clone)]
pub struct TestDatabase {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`, without the password.
    pub url: String,
    pub password: String,
    pub name: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Server")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TestDatabase")
            .field("url", &self.url)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// A tokio-postgres configuration for this database, password included.
    pub fn config(&self) -> tokio_postgres::Config {
        config(&self.url, &self.password)
    }
}

/// The shared test server, or `None` (after the loud skip banner) when the environment does not
/// name one on a developer's machine. Panics under `CI=true` when it does not.
pub fn server() -> Option<Server> {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    server_for(&test)
}

fn server_for(test: &str) -> Option<Server> {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (variable(URL_VARIABLE), variable(PASSWORD_VARIABLE)) {
        (Some(url), Some(password)) => Some(Server { url, password }),
        _ => {
            unavailable(
                test,
                &format!("{URL_VARIABLE} and {PASSWORD_VARIABLE} are not both set"),
            );
            None
        }
    }
}

/// Fails the test under `CI=true`; otherwise prints the skip banner past the harness's capture.
fn unavailable(test: &str, reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test} needs PostgreSQL, which is required under CI=true ({reason}). .ci/run starts \
             it before the tests (Debian's postgresql-15, installed if missing, a cluster in a \
             temporary directory) with `{START_COMMAND}`, which exports {URL_VARIABLE} and \
             {PASSWORD_VARIABLE}; run the tests through .ci/run, or run that command first"
        );
    }
    let rule = "!".repeat(78);
    // std::io::stderr rather than eprintln!: the test harness captures eprintln! of a passing
    // test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n{rule}\nSKIPPED: {test} needs PostgreSQL ({reason}).\nTo run it:  {START_COMMAND}\n\
         then cargo test. (Under CI=true this is a failure, not a skip.)\n{rule}"
    );
}

/// A tokio-postgres configuration for a URL without a password, and the password.
pub fn config(url: &str, password: &str) -> tokio_postgres::Config {
    let mut config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|error| panic!("{url} is not a PostgreSQL URL: {error}"));
    config
        .password(password)
        .connect_timeout(Duration::from_secs(30));
    config
}

/// A client connected to `url` with `password`, its connection driven by a task spawned on the
/// current tokio runtime (so: from inside an async test).
pub async fn connect(url: &str, password: &str) -> tokio_postgres::Client {
    let (client, connection) = config(url, password)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
    tokio::spawn(connection);
    client
}

/// Runs `sql` (one or more statements) on a connection of its own, closed afterwards. Needs no
/// spawned task: the connection is driven alongside the statements.
async fn execute(url: &str, password: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config(url, password).connect(tokio_postgres::NoTls).await?;
    let work = async move {
        let result = client.batch_execute(sql).await;
        drop(client);
        result
    };
    let (result, ended) = tokio::join!(work, connection);
    result?;
    ended
}

/// Runs a future to completion on a current-thread runtime of its own, on a thread of its own,
/// so that a synchronous helper works from a plain `#[test]` and from inside an async one alike
/// (where a `block_on` on the test's own thread would panic).
fn block_on<F, T>(make: impl FnOnce() -> F + Send) -> T
where
    F: Future<Output = T>,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|error| panic!("cannot build a tokio runtime: {error}"));
                runtime.block_on(make())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `bp_<test>_<pid>_<counter>_<nanoseconds>`: lower case letters, digits and underscores, at
/// most 63 bytes (PostgreSQL's limit on a name), unique across the tests of one process and,
/// through the clock, across runs that reuse a process id.
fn unique_name(test: &str) -> String {
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let suffix = format!("_{}_{count}_{nanos:x}", std::process::id());
    let mut stem: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    // ASCII only, so any byte length is a character boundary.
    stem.truncate(63 - "bp_".len() - suffix.len());
    format!("bp_{stem}{suffix}")
}

/// `url` with its database replaced by `name` (any `?options` kept).
fn with_database(url: &str, name: &str) -> String {
    let authority = url.find("://").map_or(0, |scheme| scheme + 3);
    let path = url[authority..]
        .find('/')
        .map_or(url.len(), |slash| authority + slash);
    let options = url[path..]
        .find('?')
        .map_or("", |query| &url[path + query..]);
    format!("{}/{name}{options}", &url[..path])
}

/// A fresh database on the shared server for a synchronous `#[test]` (callable from an async
/// one too: the work runs on a thread and runtime of its own). `None` is a skip; see the module.
pub fn database(test: &str) -> Option<TestDatabase> {
    let server = server_for(test)?;
    Some(block_on(|| create_database(server, test)))
}

/// [`database`] for an async test, on the test's own runtime.
pub async fn database_async(test: &str) -> Option<TestDatabase> {
    let server = server_for(test)?;
    Some(create_database(server, test).await)
}

async fn create_database(server: Server, test: &str) -> TestDatabase {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = unique_name(test);
        match execute(
            &server.url,
            &server.password,
            &format!("CREATE DATABASE \"{name}\""),
        )
        .await
        {
            Ok(()) => {
                return TestDatabase {
                    url: with_database(&server.url, &name),
                    password: server.password,
                    name,
                }
            }
            // Taken by an earlier run, or template1 busy for a moment: another name, a moment later.
            Err(error)
                if attempt < 5
                    && matches!(
                        error.code(),
                        Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                            | Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!(
                "{test}: cannot create database {name} on {} ({URL_VARIABLE}; is the server \
                 from `{START_COMMAND}` still running?): {error}",
                server.url
            ),
        }
    }
}

/// A PostgreSQL cluster of one test's own, for tests that restart or kill the server: in a
/// temporary directory, on a port of its own on 127.0.0.1, the role `postgres` with a password
/// (scram-sha-256), `fsync` on. Dropping it stops the server (immediate) and removes the
/// directory.
pub struct PrivateCluster {
    /// The temporary directory: `data` (the cluster), `server.log`, and the unix socket.
    root: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    /// The `postgres` user's uid and gid when initdb and pg_ctl run as that user (we are root,
    /// which they refuse to run as).
    owner: Option<(u32, u32)>,
}

impl std::fmt::Debug for PrivateCluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PrivateCluster")
            .field("data", &self.data)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A started [`PrivateCluster`], or `None` (after the loud skip banner) when the PostgreSQL
/// binaries are missing on a developer's machine. Panics under `CI=true` when they are.
pub fn private_cluster(test: &str) -> Option<PrivateCluster> {
    let Some(bin) = postgres_bin() else {
        unavailable(
            test,
            "no initdb in /usr/lib/postgresql/*/bin or on PATH; Debian's postgresql-15 has it",
        );
        return None;
    };
    let owner = (command_output("id", &["-u"]).trim() == "0").then(|| {
        let id = |flag: &str| {
            Command::new("id")
                .args([flag, "postgres"])
                .output()
                .ok()
                .filter(|output| output.status.success())
                .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "running as root, but there is no `postgres` user to run PostgreSQL as \
                         (Debian's postgresql-common creates it)"
                    )
                })
        };
        (id("-u"), id("-g"))
    });
    let root = std::env::temp_dir().join(unique_name(&format!("pg_{test}")));
    std::fs::create_dir(&root)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", root.display()));
    let mut cluster = PrivateCluster {
        data: root.join("data"),
        root,
        bin,
        port: 0,
        password: password(),
        owner,
    };
    cluster.initdb();
    cluster.first_start();
    Some(cluster)
}

/// The directory of `initdb` and `pg_ctl`: the newest of /usr/lib/postgresql/*/bin (Debian's
/// layout, not on PATH), else PATH's.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|directory| directory.join("initdb").is_file() && directory.join("pg_ctl").is_file())
}

/// A command's stdout; panics if it cannot run or fails.
fn command_output(program: &str, arguments: &[&str]) -> String {
    let output = Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// 32 hexadecimal digits from the kernel's random source (no crate for randomness is shared by
/// both includers): nothing to escape in a URL, a file or a configuration.
fn password() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .unwrap_or_else(|error| panic!("cannot read /dev/urandom: {error}"));
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Ports for private clusters: below Linux's ephemeral range (32768 and up), where the tests'
/// own outgoing connections take theirs, so that a port stays free across a restart.
const PRIVATE_PORTS: std::ops::Range<u16> = 20_000..32_000;

impl PrivateCluster {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`, without the password.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (PGDATA).
    pub fn data_directory(&self) -> &Path {
        &self.data
    }

    /// What the server has logged so far (warnings and worse, and crash recovery).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// A tokio-postgres configuration for a URL of this cluster, password included.
    pub fn config(&self, url: &str) -> tokio_postgres::Config {
        config(url, &self.password)
    }

    /// Creates the database `name` (letters, digits and underscores) and returns its URL,
    /// without the password. Synchronous, on a runtime and thread of its own, so callable from
    /// a sync or an async test.
    pub fn database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name:?}: a private cluster's database is named with at most 63 letters, digits \
             and underscores"
        );
        let url = self.url();
        block_on(|| async {
            execute(&url, &self.password, &format!("CREATE DATABASE \"{name}\"")).await
        })
        .unwrap_or_else(|error| panic!("cannot create database {name} on {url}: {error}"));
        with_database(&url, name)
    }

    /// Crashes the server and starts it again (`pg_ctl restart -m immediate`): no shutdown
    /// checkpoint, so it comes back through crash recovery, on the same port. Returns once it
    /// accepts connections.
    pub fn restart_immediate(&self) {
        self.pg_ctl(&["-m", "immediate", "restart"])
            .unwrap_or_else(|output| panic!("pg_ctl restart failed: {output}"));
    }

    /// Crashes the server (`pg_ctl stop -m immediate`) and leaves it down.
    pub fn stop_immediate(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"])
            .unwrap_or_else(|output| panic!("pg_ctl stop failed: {output}"));
    }

    /// Starts the server again after [`stop_immediate`](Self::stop_immediate), on the same
    /// port; returns once it accepts connections (after any crash recovery).
    pub fn start(&self) {
        self.pg_ctl(&["start"])
            .unwrap_or_else(|output| panic!("pg_ctl start failed: {output}"));
    }

    /// A PostgreSQL program run as the cluster's owner: `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.owner.is_some() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }

    /// Runs `program ARGUMENTS`; on failure, its output and the server's log.
    fn run(&self, mut command: Command) -> Result<(), String> {
        let output = command
            .output()
            .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{command:?}: {}\n{}{}\nthe server's log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        ))
    }

    /// `pg_ctl -D DATA -l LOG -w -t 120 ARGUMENTS`. The log file always: without it the server
    /// would write to pg_ctl's stdout, a pipe of ours, and hold it open.
    fn pg_ctl(&self, arguments: &[&str]) -> Result<(), String> {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "120"])
            .args(arguments);
        self.run(command)
    }

    fn initdb(&self) {
        let password_file = self.root.join("password");
        std::fs::write(&password_file, format!("{}\n", self.password))
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", password_file.display()));
        self.give_to_owner(&self.root);
        self.give_to_owner(&password_file);
        let mut command = self.command("initdb");
        command
            .arg("-D")
            .arg(&self.data)
            .args([
                "--auth=scram-sha-256",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", password_file.display()));
        let result = self.run(command);
        let _ = std::fs::remove_file(&password_file);
        result.unwrap_or_else(|output| panic!("initdb failed: {output}"));
        let conf = self.data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .unwrap_or_else(|error| panic!("cannot open {}: {error}", conf.display()));
        writeln!(file, "include 'battleplan.conf'")
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", conf.display()));
    }

    /// Starts the server for the first time, on the first port of [`PRIVATE_PORTS`] (from a
    /// place this process and cluster choose) that is free and that the server can bind.
    fn first_start(&mut self) {
        let span = u64::from(PRIVATE_PORTS.end - PRIVATE_PORTS.start);
        let seed =
            u64::from(std::process::id()) * 97 + COUNTER.fetch_add(1, Ordering::Relaxed) * 13;
        let mut last_failure = String::new();
        for attempt in 0..40 {
            let offset = u16::try_from((seed + attempt * 7919) % span).unwrap_or_default();
            let port = PRIVATE_PORTS.start + offset;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            self.port = port;
            self.write_settings();
            match self.pg_ctl(&["start"]) {
                Ok(()) => return,
                Err(output) if output.contains("could not bind") => last_failure = output,
                Err(output) => panic!("the private cluster did not start: {output}"),
            }
        }
        panic!("the private cluster found no port it could bind on 127.0.0.1: {last_failure}");
    }

    fn write_settings(&self) {
        let settings = self.data.join("battleplan.conf");
        std::fs::write(
            &settings,
            format!(
                "listen_addresses = '127.0.0.1'\n\
                 port = {}\n\
                 unix_socket_directories = '{}'\n\
                 fsync = on\n\
                 max_connections = 100\n\
                 shared_buffers = 32MB\n\
                 log_min_messages = warning\n",
                self.port,
                self.root.display()
            ),
        )
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", settings.display()));
        self.give_to_owner(&settings);
        let log = self.root.join("server.log");
        if !log.exists() {
            std::fs::write(&log, "")
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", log.display()));
            self.give_to_owner(&log);
        }
    }

    /// Hands a file or directory to the `postgres` user (when we are root; otherwise it is
    /// ours already), the directory readable by its owner alone as initdb wants.
    fn give_to_owner(&self, path: &Path) {
        if path.is_dir() {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .unwrap_or_else(|error| panic!("cannot chmod {}: {error}", path.display()));
        }
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|error| panic!("cannot chown {}: {error}", path.display()));
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
