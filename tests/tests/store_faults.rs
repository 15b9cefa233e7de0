//! Injected IO faults: a write, an `fdatasync`, a rename or a file creation fails (as a full
//! disk fails it, `BATTLEPLAN_FAULTS`, see `battleplan_adapters::fault`) at one point after
//! another of an import, of the daemon's dispatch and of restoring an export. Each time the
//! command fails cleanly (exit 1, naming the disk) or, for a fault the outbox survives, goes on;
//! none hangs; and once the fault is gone the store is intact, holds everything, and running the
//! command again completes it exactly once. The number of faults injected is printed.
//!
//! A full disk of a real file system is tried too, in `customers_import_on_a_full_file_system`:
//! a small tmpfs, mounted by the test when it runs as root (CI does), filled by an import.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::mount::{needs_root, Mounted};
use battleplan_tests::{binary, bp, copy_dir, instant, mutate, ok, run_in};

const CAMPAIGN: &str = "sept-festival-2026";
const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
/// A little after the warm-up's reach-outs: every send planned and dispatched.
const UNTIL: &str = "2026-08-26T12:00:00+08:00";

/// The longest a faulted command may take before the test calls it hung (a safety net, never a
/// way to synchronise).
const HANG: Duration = Duration::from_secs(90);

struct Outcome {
    code: i32,
    stderr: String,
}

/// Runs `battleplan --data DATA ARGS` in `dir` with `faults`, failing the test if it has not
/// ended within `HANG`.
fn run_with(dir: &Path, data: &Path, arguments: &[&str], faults: Option<&str>) -> Outcome {
    let mut command = Command::new(binary());
    command
        .arg("--data")
        .arg(data)
        .args(arguments)
        .current_dir(dir)
        .env("USER", battleplan_tests::TESTER)
        .env_remove("BATTLEPLAN_DATA")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match faults {
        Some(faults) => command.env("BATTLEPLAN_FAULTS", faults),
        None => command.env_remove("BATTLEPLAN_FAULTS"),
    };
    let child = command.spawn().unwrap();
    let started = Instant::now();
    let id = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = loop {
        match receiver.recv_timeout(Duration::from_millis(200)) {
            Ok(output) => break output.unwrap(),
            Err(_) if started.elapsed() > HANG => {
                let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
                panic!(
                    "`battleplan {}` with {faults:?} hung for {HANG:?}",
                    arguments.join(" ")
                );
            }
            Err(_) => {}
        }
    };
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `audit verify --json` of an intact store (the chain, every payload, the stored projection):
/// its event count (fails the test otherwise).
fn intact_events(dir: &Path, data: &Path, context: &str) -> u64 {
    let output = Command::new(binary())
        .arg("--data")
        .arg(data)
        .args(["audit", "verify", "--json"])
        .current_dir(dir)
        .env_remove("BATTLEPLAN_FAULTS")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "{context}: audit verify said:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report["intact"], true, "{context}: {report}");
    report["events"].as_u64().unwrap()
}

/// The file outbox's lines by key (a key twice fails the test) and the log's sends.
fn sends(dir: &Path, data: &Path, context: &str) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut lines = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(data.join("outbox")) {
        for entry in entries {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("{context}: a broken outbox line ({error})"));
                *lines
                    .entry(value["key"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
    }
    let twice: Vec<_> = lines.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "{context}: written twice: {twice:?}");
    let report: serde_json::Value = serde_json::from_str(
        &ok(run_in(
            dir,
            &[
                "--data",
                data.to_str().unwrap(),
                "outbox",
                CAMPAIGN,
                "--json",
                "--customers",
            ],
        ))
        .stdout,
    )
    .unwrap();
    let mut sent = Vec::new();
    for customer in report["customers"].as_array().unwrap() {
        if customer["status"] == "sent" {
            sent.push(customer["key"].as_str().unwrap().to_string());
        }
    }
    (lines, sent)
}

struct Setup {
    dir: PathBuf,
    /// A store with the plan applied.
    planned: PathBuf,
    /// The same with the customers imported.
    imported: PathBuf,
    /// An export of a store after its dispatch.
    export: PathBuf,
}

fn setup(dir: &Path) -> Setup {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    // No quotas and no quiet hours on mail: the warm-up's reach-outs all go at once.
    let plan = mutate(
        &example,
        &[
            (
                "free_per_day = 200          # the first 200 a day are free\n",
                "",
            ),
            (
                "daily_cap = 2000            # the platform's initial cap\n",
                "",
            ),
            ("cost_per_1000 = 2.00        # then 2 CNY per 1000\n", ""),
            (
                "quiet_hours = { start = \"22:00\", end = \"08:00\", policy = \"hold\" }\n",
                "",
            ),
            ("monthly_budget = 100.00\n", ""),
        ],
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let planned = dir.join("planned");
    std::fs::rename(dir.join("data"), &planned).unwrap();
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: 1_000,
            seed: 5,
            as_of: instant("2026-08-20T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    let imported = dir.join("imported");
    copy_dir(&planned, &imported);
    let outcome = run_with(dir, &imported, &import_arguments(), None);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let dispatched = dir.join("dispatched");
    copy_dir(&imported, &dispatched);
    let outcome = run_with(dir, &dispatched, &run_arguments(), None);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let export = dir.join("export.jsonl");
    ok(run_in(
        dir,
        &[
            "--data",
            dispatched.to_str().unwrap(),
            "export",
            "--out",
            export.to_str().unwrap(),
        ],
    ));
    Setup {
        dir: dir.to_path_buf(),
        planned,
        imported,
        export,
    }
}

fn import_arguments() -> Vec<&'static str> {
    vec![
        "customers",
        "import",
        "customers.csv",
        "--clock-at",
        "2026-08-20T00:00:00Z",
    ]
}

fn run_arguments() -> Vec<&'static str> {
    vec!["run", "--simulate", "--clock-at", WARM_UP, "--until", UNTIL]
}

/// How a faulted run must end: `true` if the fault fired.
fn fired(outcome: &Outcome, context: &str) -> bool {
    match outcome.code {
        0 => outcome.stderr.contains("injected fault"),
        1 => {
            assert!(
                outcome.stderr.contains("disk") || outcome.stderr.contains("No space left"),
                "{context}: failed without naming the disk:\n{}",
                outcome.stderr
            );
            true
        }
        code => panic!("{context}: exited {code}:\n{}", outcome.stderr),
    }
}

/// Faults at `site`, the `n`th call failing for n = 1, 2, ... until one no longer fires (or
/// `most`), `suffix` "" (the disk stays full) or "!" (it fails once).
fn faults_of(site: &str, suffix: &str, most: usize) -> Vec<String> {
    (1..=most).map(|n| format!("{site}:{n}{suffix}")).collect()
}

/// Imports with a fault, then without: each fault fails the import cleanly, the store stays
/// intact, and the import completes to the same count as one never faulted.
fn import_under(setup: &Setup, faults: &[String], expected: u64, worker: usize) -> usize {
    let mut fired_count = 0;
    for (number, fault) in faults.iter().enumerate() {
        let data = setup.dir.join(format!("import-{worker}-{number}"));
        copy_dir(&setup.planned, &data);
        let context = format!("customers import with {fault}");
        let outcome = run_with(&setup.dir, &data, &import_arguments(), Some(fault));
        if !fired(&outcome, &context) {
            std::fs::remove_dir_all(&data).unwrap();
            // Past the last call at this site: the later ones would not fire either.
            if fault.ends_with(|c: char| c.is_ascii_digit()) {
                break;
            }
            continue;
        }
        fired_count += 1;
        if outcome.code == 1 {
            intact_events(&setup.dir, &data, &context);
        }
        let again = run_with(&setup.dir, &data, &import_arguments(), None);
        assert_eq!(again.code, 0, "{context}, run again: {}", again.stderr);
        assert_eq!(
            intact_events(&setup.dir, &data, &context),
            expected,
            "{context}: completed with another count"
        );
        let third = run_with(&setup.dir, &data, &import_arguments(), None);
        assert_eq!(third.code, 0, "{context}, a third time: {}", third.stderr);
        assert_eq!(intact_events(&setup.dir, &data, &context), expected);
        std::fs::remove_dir_all(&data).unwrap();
    }
    fired_count
}

/// Dispatches with a fault, then without: every send planned is sent, written to the outbox
/// once, and recorded once.
fn dispatch_under(setup: &Setup, faults: &[String], worker: usize) -> usize {
    let mut fired_count = 0;
    for (number, fault) in faults.iter().enumerate() {
        let data = setup.dir.join(format!("dispatch-{worker}-{number}"));
        copy_dir(&setup.imported, &data);
        let context = format!("run with {fault}");
        let outcome = run_with(&setup.dir, &data, &run_arguments(), Some(fault));
        if !fired(&outcome, &context) {
            std::fs::remove_dir_all(&data).unwrap();
            if fault.ends_with(|c: char| c.is_ascii_digit()) {
                break;
            }
            continue;
        }
        fired_count += 1;
        if outcome.code == 1 {
            intact_events(&setup.dir, &data, &context);
            let again = run_with(&setup.dir, &data, &run_arguments(), None);
            assert_eq!(again.code, 0, "{context}, run again: {}", again.stderr);
        }
        intact_events(&setup.dir, &data, &context);
        let (lines, sent) = sends(&setup.dir, &data, &context);
        assert!(!sent.is_empty(), "{context}: nothing sent");
        for key in &sent {
            assert!(
                lines.contains_key(key),
                "{context}: {key} is not in the outbox"
            );
        }
        // Every customer's line in the outbox is a send the log records.
        let sent: std::collections::BTreeSet<&String> = sent.iter().collect();
        for key in lines.keys() {
            let customer_send = key.starts_with(&format!("{CAMPAIGN}/"))
                && key.split('/').count() == 4
                && !key.contains("/task");
            assert!(
                !customer_send || sent.contains(key),
                "{context}: {key} is in the outbox but the log does not say it was sent"
            );
        }
        std::fs::remove_dir_all(&data).unwrap();
    }
    fired_count
}

/// Restores the export with a fault, then without: nothing is left behind by the failure, and
/// the restore then gives the export's head hash.
fn restore_under(setup: &Setup, faults: &[String], expected: u64) -> usize {
    let mut fired_count = 0;
    for (number, fault) in faults.iter().enumerate() {
        let data = setup.dir.join(format!("restore-{number}"));
        let context = format!("import with {fault}");
        let export = setup.export.to_str().unwrap().to_string();
        let outcome = run_with(&setup.dir, &data, &["import", &export], Some(fault));
        if !fired(&outcome, &context) {
            std::fs::remove_dir_all(&data).unwrap();
            if fault.ends_with(|c: char| c.is_ascii_digit()) {
                break;
            }
            continue;
        }
        fired_count += 1;
        if outcome.code == 1 {
            assert!(
                !data.exists() || std::fs::read_dir(&data).unwrap().next().is_none(),
                "{context}: a failed restore left {}",
                data.display()
            );
            let leftovers: Vec<_> = std::fs::read_dir(&setup.dir)
                .unwrap()
                .filter_map(|entry| entry.ok())
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".battleplan-import-")
                })
                .collect();
            assert!(
                leftovers.is_empty(),
                "{context}: a temporary directory is left"
            );
            let again = run_with(&setup.dir, &data, &["import", &export], None);
            assert_eq!(again.code, 0, "{context}, run again: {}", again.stderr);
        }
        assert_eq!(intact_events(&setup.dir, &data, &context), expected);
        std::fs::remove_dir_all(&data).unwrap();
    }
    fired_count
}

/// A person's command (pause, advance, cancel) with a fault, then retried with the same
/// command id: recorded exactly once however many times it is retried.
fn commands_under(setup: &Setup, sites: &[(&str, usize)]) -> usize {
    let mut fired_count = 0;
    let commands: [&[&str]; 3] = [&["pause"], &["advance"], &["cancel"]];
    for (index, verb) in commands.iter().enumerate() {
        let command_id = format!("5f0e8a2c-0000-4000-8000-00000000000{index}");
        let arguments: Vec<&str> = verb
            .iter()
            .copied()
            .chain([
                CAMPAIGN,
                "--actor",
                "alice",
                "--reason",
                "a test",
                "--clock-at",
                "2026-08-10T00:00:00Z",
                "--command-id",
                &command_id,
            ])
            .collect();
        let reference = setup.dir.join(format!("command-{index}"));
        copy_dir(&setup.planned, &reference);
        let outcome = run_with(&setup.dir, &reference, &arguments, None);
        assert_eq!(outcome.code, 0, "{}", outcome.stderr);
        let expected = intact_events(&setup.dir, &reference, "the command");
        std::fs::remove_dir_all(&reference).unwrap();
        for (site, most) in sites {
            for n in 1..=*most {
                let fault = format!("{site}:{n}");
                let context = format!("`{}` with {fault}", verb.join(" "));
                let data = setup.dir.join(format!("command-{index}-{site}-{n}"));
                copy_dir(&setup.planned, &data);
                let outcome = run_with(&setup.dir, &data, &arguments, Some(&fault));
                if !fired(&outcome, &context) {
                    std::fs::remove_dir_all(&data).unwrap();
                    break;
                }
                fired_count += 1;
                intact_events(&setup.dir, &data, &context);
                for attempt in ["again", "a third time"] {
                    let again = run_with(&setup.dir, &data, &arguments, None);
                    assert_eq!(again.code, 0, "{context}, {attempt}: {}", again.stderr);
                    assert_eq!(
                        intact_events(&setup.dir, &data, &context),
                        expected,
                        "{context}, {attempt}: recorded another number of times"
                    );
                }
                std::fs::remove_dir_all(&data).unwrap();
            }
        }
    }
    fired_count
}

#[test]
fn every_injected_fault_fails_cleanly_and_nothing_acknowledged_is_lost_or_done_twice() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(dir.path());
    let imported_events = intact_events(&setup.dir, &setup.imported, "the import");
    // Every line but the trailer is an event.
    let exported_events = std::fs::read_to_string(&setup.export)
        .unwrap()
        .lines()
        .count() as u64
        - 1;
    std::thread::scope(|scope| {
        let setup = &setup;
        let imports = scope.spawn(move || {
            let mut fired = 0;
            for (site, suffix, most) in [
                ("wal.write", "", 120),
                ("wal.sync", "", 80),
                ("sled.flush", "", 4),
                ("segment.write", "", 3),
                ("segment.sync", "", 3),
                ("wal.write", "!", 16),
                ("wal.sync", "!", 14),
            ] {
                let here = import_under(setup, &faults_of(site, suffix, most), imported_events, 0);
                println!("customers import, {site}{suffix}: {here} fired");
                fired += here;
            }
            let here = commands_under(
                setup,
                &[("wal.write", 8), ("wal.sync", 6), ("sled.flush", 3)],
            );
            println!("pause, advance, cancel: {here} fired");
            fired += here;
            let here = restore_under(
                setup,
                &[
                    "store.create:1".into(),
                    "store.rename:1".into(),
                    "wal.create:1".into(),
                    "wal.create:2".into(),
                    "wal.write:1".into(),
                    "wal.write:2".into(),
                    "wal.sync:1".into(),
                    "wal.sync:2".into(),
                    "sled.flush:1".into(),
                    "sled.flush:2".into(),
                    "segment.write:1".into(),
                    "segment.sync:1".into(),
                ],
                exported_events,
            );
            println!("import of an export: {here} fired");
            fired + here
        });
        let dispatches = scope.spawn(move || {
            let mut fired = 0;
            for (site, suffix, most) in [
                ("wal.write", "", 120),
                ("wal.sync", "", 80),
                ("sled.flush", "", 4),
                ("wal.write", "!", 6),
                ("wal.sync", "!", 6),
                ("outbox.write", "!", 16),
                ("outbox.sync", "!", 12),
                ("outbox.create", "!", 3),
            ] {
                let here = dispatch_under(setup, &faults_of(site, suffix, most), 1);
                println!("run, {site}{suffix}: {here} fired");
                fired += here;
            }
            fired
        });
        let fired = imports.join().unwrap() + dispatches.join().unwrap();
        let figure = format!("store faults: {fired} injected faults, each failed cleanly or was survived, none lost or repeated anything");
        println!("{figure}");
        // For .ci/run to print after the tests, whose output cargo keeps when they pass.
        let _ = std::fs::write(
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-faults.txt"),
            format!("{figure}\n"),
        );
        assert!(fired >= 200, "only {fired} faults fired");
    });
}

#[test]
fn customers_import_on_a_full_file_system() {
    if !needs_root("customers_import_on_a_full_file_system", "store_faults") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    let mounted = Mounted::new(&dir.join("small"), "12m");
    let data = mounted.0.join("data");
    ok(run_in(
        dir,
        &[
            "--data",
            data.to_str().unwrap(),
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let rows = 60_000;
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: rows,
            seed: 9,
            as_of: instant("2026-08-20T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    // The disk fills: the import stops, cleanly, naming the disk.
    let full = run_with(dir, &data, &import_arguments(), None);
    assert_eq!(full.code, 1, "{}", full.stderr);
    assert!(full.stderr.contains("disk"), "{}", full.stderr);
    // Asked while the disk is full, the store neither answers wrongly nor is damaged.
    let status = run_with(dir, &data, &["status"], None);
    assert!(status.code == 0 || status.code == 1, "{}", status.stderr);
    // Space comes back: everything acknowledged is there, and the import finishes, once.
    mounted.resize("512m");
    let before = intact_events(dir, &data, "after the disk filled");
    assert!(before > 1, "nothing was imported before the disk filled");
    let again = run_with(dir, &data, &import_arguments(), None);
    assert_eq!(again.code, 0, "{}", again.stderr);
    // As many events as the same plan and import on a disk with room.
    let reference = dir.join("reference");
    ok(run_in(
        dir,
        &[
            "--data",
            reference.to_str().unwrap(),
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let outcome = run_with(dir, &reference, &import_arguments(), None);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let after = intact_events(dir, &data, "after the import finished");
    assert_eq!(after, intact_events(dir, &reference, "the reference"));
    assert!(after > before, "{after} after {before}");
    let third = run_with(dir, &data, &import_arguments(), None);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(intact_events(dir, &data, "imported again"), after);
    let verified = run_in(dir, &["--data", data.to_str().unwrap(), "audit", "verify"]);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    drop(mounted);
}
