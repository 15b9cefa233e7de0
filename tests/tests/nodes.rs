//! Three `run` nodes on one PostgreSQL store run the September festival (2,000 generated
//! customers) under `--clock-at` steps: each campaign has one owner at a time, by a lease.
//!
//! 1. At the burst's first noon the owner is killed (SIGKILL) in the middle of its sends:
//!    another node takes the campaign over within the lease's time, and sends the rest; the
//!    killed node, started again, settles the messages it had handed to its channel when it
//!    died (its file outbox knows which it took).
//! 2. At the middle stage's first noon the owner is stopped (SIGSTOP) mid-sends past its
//!    lease: another node takes over; continued (SIGCONT), the old owner finds the campaign
//!    gone and stops acting on it (its appends are fenced off).
//!
//! In both, every message the log records as sent is in exactly one node's file outbox, once
//! (counted by key), no file holds a message the log does not say was sent, and every
//! transition is recorded once.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use battleplan_tests::{binary, postgres, Daemon};

const CAMPAIGN: &str = "sept-festival-2026";
const SCOPE: &str = "campaign:sept-festival-2026";
const LEASE: &str = "2";
const NODES: [&str; 3] = ["a", "b", "c"];

struct Cluster<'a> {
    dir: &'a Path,
    url: String,
    password: String,
}

impl Cluster<'_> {
    /// `battleplan --store URL --data probe ARGS`, which must succeed.
    fn ask(&self, arguments: &[&str]) -> String {
        self.ask_on("probe", arguments)
    }

    /// The same with `--data DATA`: a node's directory sends the command to that node's daemon
    /// through its control socket.
    fn ask_on(&self, data: &str, arguments: &[&str]) -> String {
        let output = Command::new(binary())
            .args(["--store", &self.url, "--data", data])
            .args(arguments)
            .current_dir(self.dir)
            .env("BATTLEPLAN_STORE_PASSWORD", &self.password)
            .env("USER", "tester")
            .env_remove("BATTLEPLAN_DATA")
            .env_remove("BATTLEPLAN_STORE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "battleplan {arguments:?}: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn node(&self, name: &str, at: &str) -> Daemon {
        self.node_in(name, &format!("node-{name}"), at)
    }

    /// A node named `name` whose local files are in `data`.
    fn node_in(&self, name: &str, data: &str, at: &str) -> Daemon {
        Daemon::start_with(
            self.dir,
            &[
                "--store",
                &self.url,
                "--data",
                data,
                "run",
                "--node",
                name,
                "--lease",
                LEASE,
                "--clock-at",
                at,
            ],
            &[("BATTLEPLAN_STORE_PASSWORD", &self.password)],
        )
    }

    /// The campaign's lease holder and epoch, straight from the table.
    fn holder(&self) -> Option<(String, i64)> {
        let (url, password) = (self.url.clone(), self.password.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let client = postgres::connect(&url, &password).await;
                    client
                        .query_opt(
                            "SELECT holder, epoch FROM bp_leases
                             WHERE scope = $1 AND expires_at > clock_timestamp()",
                            &[&SCOPE],
                        )
                        .await
                        .unwrap()
                        .map(|row| (row.get(0), row.get(1)))
                })
        })
        .join()
        .unwrap()
    }

    /// Every send of the campaign: key -> (status, instant).
    fn sends(&self, at: &str) -> Vec<serde_json::Value> {
        let view: serde_json::Value = serde_json::from_str(&self.ask(&[
            "outbox",
            CAMPAIGN,
            "--json",
            "--customers",
            "--clock-at",
            at,
        ]))
        .unwrap();
        view["customers"].as_array().cloned().unwrap_or_default()
    }

    /// Whether every send due by `at` has its fate recorded.
    fn settled(&self, at: &str) -> bool {
        let now = battleplan_tests::instant(at);
        self.sends(at).iter().all(|send| {
            send["status"] != "pending"
                || send["at"]
                    .as_str()
                    .is_some_and(|when| battleplan_tests::instant(when) > now)
        })
    }

    /// Keys in every node's file outbox, and how often each.
    fn written(&self) -> BTreeMap<String, usize> {
        let mut keys = BTreeMap::new();
        for node in NODES {
            let Ok(files) = std::fs::read_dir(self.dir.join(format!("node-{node}/outbox"))) else {
                continue;
            };
            for file in files {
                let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
                for line in text.lines().filter(|line| !line.is_empty()) {
                    let message: serde_json::Value = serde_json::from_str(line).unwrap();
                    *keys
                        .entry(message["key"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
        }
        keys
    }

    fn lines_of(&self, node: &str) -> usize {
        std::fs::read_dir(self.dir.join(format!("node-{node}/outbox")))
            .map(|files| {
                files
                    .map(|file| {
                        std::fs::read_to_string(file.unwrap().path())
                            .unwrap_or_default()
                            .lines()
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Every customer message the log says was sent is in exactly one file, once; the files
    /// hold nothing else of the campaign's customers.
    fn exactly_once(&self, at: &str) {
        let written = self.written();
        let twice: Vec<_> = written.iter().filter(|(_, count)| **count > 1).collect();
        assert!(twice.is_empty(), "written more than once: {twice:?}");
        let sent: Vec<String> = self
            .sends(at)
            .iter()
            .filter(|send| send["status"] == "sent")
            .map(|send| send["key"].as_str().unwrap().to_string())
            .collect();
        assert!(!sent.is_empty());
        let missing: Vec<_> = sent
            .iter()
            .filter(|key| !written.contains_key(*key))
            .collect();
        assert!(
            missing.is_empty(),
            "recorded as sent, in no outbox: {missing:?}"
        );
        let sent: std::collections::BTreeSet<String> = sent.into_iter().collect();
        let statuses: BTreeMap<String, String> = self
            .sends(at)
            .iter()
            .map(|send| {
                (
                    send["key"].as_str().unwrap().to_string(),
                    format!("{} {} {}", send["status"], send["at"], send["reason"]),
                )
            })
            .collect();
        // (Messages to staff, reminders and reports, are checked above: once each.)
        let extra: Vec<String> = written
            .keys()
            .filter(|key| !sent.contains(*key))
            .filter_map(|key| statuses.get(key).map(|status| format!("{key}: {status}")))
            .collect();
        assert!(
            extra.is_empty(),
            "in a file, not recorded as sent: {extra:#?}"
        );
    }
}

/// Polls `condition` every 50 ms, for at most `seconds`.
fn until(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) -> Duration {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        if condition() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("waited {seconds} s for {what}");
}

/// The node a lease's holder (`NAME#PROCESS`) names.
fn node_of(holder: &str) -> &'static str {
    let name = holder.split('#').next().unwrap_or_default();
    NODES
        .iter()
        .find(|node| **node == name)
        .copied()
        .unwrap_or_else(|| panic!("a lease held by {holder}, not a node of the test"))
}

fn signal(daemon: &Daemon, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn three_nodes_share_the_festival_each_send_once_through_a_kill_and_a_pause() {
    let Some(database) = postgres::database("three_nodes_share_the_festival") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let cluster = Cluster {
        dir: scratch.path(),
        url: database.url.clone(),
        password: database.password.clone(),
    };
    cluster.ask(&["init"]);
    cluster.ask(&[
        "customers",
        "generate",
        "--count",
        "2000",
        "--as-of",
        "2026-08-18T00:00:00+08:00",
    ]);
    cluster.ask(&[
        "plan",
        "apply",
        "battleplan.toml",
        "--clock-at",
        "2026-08-01T00:00:00Z",
    ]);
    cluster.ask(&[
        "customers",
        "import",
        "customers.csv",
        "--clock-at",
        "2026-08-18T00:00:00+08:00",
    ]);

    // 1. The burst's first noon: the owner killed mid-sends.
    let burst = "2026-09-02T12:00:00+08:00";
    let mut nodes: BTreeMap<&str, Daemon> = NODES
        .iter()
        .map(|name| (*name, cluster.node(name, burst)))
        .collect();
    until("a node to take the campaign", 30, || {
        cluster.holder().is_some()
    });
    let (owner, epoch) = cluster.holder().unwrap();
    let owner = node_of(&owner);
    until("the owner to be sending", 120, || {
        cluster.lines_of(owner) >= 600
    });
    let mut killed = nodes.remove(owner).unwrap();
    killed.kill();
    let took = until("another node to take over", 30, || {
        cluster
            .holder()
            .is_some_and(|(holder, _)| node_of(&holder) != owner)
    });
    assert!(
        took < Duration::from_secs(6),
        "taken over {took:?} after the kill: within the lease's time and a renewal"
    );
    let (heir, heir_epoch) = cluster.holder().unwrap();
    let heir = node_of(&heir);
    assert!(heir_epoch > epoch, "a takeover moves the fencing token on");
    // The killed node started again settles what it had handed over.
    nodes.insert(owner, cluster.node(owner, burst));
    until("every send due at the burst to be settled", 180, || {
        cluster.settled(burst)
    });
    cluster.exactly_once(burst);
    for (name, mut node) in std::mem::take(&mut nodes) {
        let (code, lines) = node.terminate();
        assert_eq!(code, 0, "{}", lines.join("\n"));
        for line in lines.iter().filter(|line| line.contains("settling")) {
            eprintln!("node {name}: {line}");
        }
    }
    assert_ne!(heir, owner);

    // 2. The middle stage's first noon: the owner stopped past its lease, then continued.
    let middle = "2026-09-11T12:00:00+08:00";
    let mut nodes: BTreeMap<&str, Daemon> = NODES
        .iter()
        .map(|name| (*name, cluster.node(name, middle)))
        .collect();
    until("a node to take the campaign", 30, || {
        cluster.holder().is_some()
    });
    let (owner, _) = cluster.holder().unwrap();
    let owner = node_of(&owner);
    let before = cluster.lines_of(owner);
    until("the owner to be sending", 120, || {
        cluster.lines_of(owner) >= before + 300
    });
    signal(&nodes[owner], "STOP");
    until("another node to take over", 30, || {
        cluster
            .holder()
            .is_some_and(|(holder, _)| node_of(&holder) != owner)
    });
    signal(&nodes[owner], "CONT");
    let paused = nodes.get_mut(owner).unwrap();
    paused.wait_for("the lease passed to another node");
    until(
        "every send due in the middle stage to be settled",
        180,
        || cluster.settled(middle),
    );
    cluster.exactly_once(middle);

    // 3. A person's command through a node that does not own the campaign: taken (the expected
    //    version keeps it safe), and the owner acts on it (woken by the store's notification):
    //    the advance into the late stage skips the rest of the middle stage, and the owner's
    //    dispatcher gives up the middle stage's mail still planned for its later days.
    let (holder, _) = cluster.holder().unwrap();
    let holder = node_of(&holder);
    let other = NODES.iter().find(|name| **name != holder).unwrap();
    let skipped = || {
        let view: serde_json::Value = serde_json::from_str(&cluster.ask(&[
            "outbox",
            CAMPAIGN,
            "--json",
            "--reach-out",
            "middle-stage-mail",
            "--clock-at",
            middle,
        ]))
        .unwrap();
        view["reach_outs"][0]["not_sent"]["phase_skipped"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(skipped(), 0, "nothing skipped before the advance");
    cluster.ask_on(
        &format!("node-{other}"),
        &[
            "advance",
            CAMPAIGN,
            "--actor",
            "zhou",
            "--reason",
            "the late stage starts early this year",
        ],
    );
    until("the owner to give up the skipped stage's mail", 60, || {
        skipped() > 0
    });
    until(
        "every send due after the advance to be settled",
        180,
        || cluster.settled(middle),
    );
    cluster.exactly_once(middle);

    // A second process given a running node's name is refused: two processes acting as one
    // node would each take the other's messages in flight for their own.
    let mut twin = cluster.node_in(holder, "twin", middle);
    let (code, lines) = twin.finish();
    assert_eq!(code, 2, "{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|line| line.contains(&format!("a node named {holder} is running"))),
        "{}",
        lines.join("\n")
    );
    for (name, mut node) in nodes {
        let (code, lines) = node.terminate();
        assert_eq!(code, 0, "{}", lines.join("\n"));
        for line in lines
            .iter()
            .filter(|line| line.contains("settling") || line.contains("refused by the store"))
        {
            eprintln!("node {name}: {line}");
        }
    }

    // Every transition once: the scheduler's events on the campaign's stream, from the export.
    let mut transitions: BTreeMap<String, usize> = BTreeMap::new();
    for line in cluster.ask(&["export"]).lines().skip(1) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["stream"] == format!("campaign-{CAMPAIGN}").as_str()
            && event["metadata"]["actor"] == "system:scheduler"
        {
            *transitions
                .entry(format!("{} {}", event["event_type"], event["payload"]))
                .or_default() += 1;
        }
    }
    assert!(transitions.len() >= 4, "{transitions:?}");
    let repeated: Vec<_> = transitions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "transitions recorded twice: {repeated:?}"
    );
    let verify: serde_json::Value =
        serde_json::from_str(&cluster.ask(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(verify["intact"], true, "{verify}");
}
