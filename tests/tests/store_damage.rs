//! The damage corpus: a store left by a daemon killed mid-dispatch (so its write-ahead file holds
//! acknowledged events that sled does not), then its files flipped, truncated, zeroed, deleted
//! and swapped at many offsets, each on a fresh copy. Every command on each copy either finds
//! the store whole (every acknowledged event, the same head hash) or refuses naming the damage;
//! none panics, none says less than what was acknowledged, and every command gives the same exit
//! code for the same damage (2: damage is for the user to act on; 1 is for a failing machine).

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use battleplan_adapters::sled_store::wal;
use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{bp, copy_dir, instant, ok, run_in, Daemon, Run};

const CAMPAIGN: &str = "sept-festival-2026";
const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
const HOLD_AFTER_DELIVERY: &str = "BATTLEPLAN_FAILPOINT_HOLD_AFTER_DELIVERY";

/// The questions asked of each damaged copy, each on a copy of its own.
const COMMANDS: [&[&str]; 6] = [
    &["status"],
    &["outbox", CAMPAIGN],
    &["history"],
    &["export"],
    &["audit", "verify"],
    &["store", "check"],
];

/// The example campaign with a few hundred customers, and a daemon killed while it holds a
/// delivered batch not yet recorded: the events it appended are in the write-ahead file only.
fn killed_store(dir: &Path) -> PathBuf {
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
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
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: 300,
            seed: 11,
            as_of: instant("2026-08-20T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    ));
    let mut daemon = Daemon::start_with(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            WARM_UP,
            "--until",
            WARM_UP,
        ],
        &[(HOLD_AFTER_DELIVERY, "1")],
    );
    daemon.wait_for("delivered and not yet recorded");
    daemon.kill();
    dir.join("data")
}

fn run(data: &Path, command: &[&str]) -> Run {
    let mut arguments = vec!["--data", data.to_str().unwrap()];
    arguments.extend_from_slice(command);
    run_in(data.parent().unwrap(), &arguments)
}

/// The count and head hash `store check --json` reports of an intact store.
fn whole(data: &Path) -> Option<(u64, String)> {
    let run = run(data, &["store", "check", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).ok()?;
    (run.code == 0).then(|| {
        (
            report["events"].as_u64().unwrap(),
            report["head_hash"].as_str().unwrap().to_string(),
        )
    })
}

type Damage = Box<dyn Fn(&Path)>;

fn flip(file: &'static str, at: usize, bit: u8) -> Damage {
    Box::new(move |data| {
        let path = data.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(byte) = bytes.get_mut(at) {
            *byte ^= 1 << bit;
        }
        std::fs::write(&path, bytes).unwrap();
    })
}

fn truncate(file: &'static str, at: usize) -> Damage {
    Box::new(move |data| {
        let path = data.join(file);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..at.min(bytes.len())]).unwrap();
    })
}

fn zero(file: &'static str, from: usize, length: usize) -> Damage {
    Box::new(move |data| {
        let path = data.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        let end = (from + length).min(bytes.len());
        if from < end {
            bytes[from..end].fill(0);
        }
        std::fs::write(&path, bytes).unwrap();
    })
}

fn delete(file: &'static str) -> Damage {
    Box::new(move |data| std::fs::remove_file(data.join(file)).unwrap())
}

fn swap() -> Damage {
    Box::new(|data| {
        let [first, second] = wal::FILES.map(|name| data.join(name));
        let parked = data.join("parked");
        std::fs::rename(&first, &parked).unwrap();
        std::fs::rename(&second, &first).unwrap();
        std::fs::rename(&parked, &second).unwrap();
    })
}

#[test]
fn every_damage_is_found_or_harmless_and_every_command_says_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = killed_store(dir.path());
    // What the write-ahead files hold: the one with records is where most damage goes.
    let states: Vec<(&'static str, wal::FileState, usize)> = wal::FILES
        .iter()
        .map(|name| {
            let bytes = std::fs::read(pristine.join(name)).unwrap();
            (*name, wal::describe(&bytes), bytes.len())
        })
        .collect();
    let (file, state, _) = states
        .iter()
        .find(|(_, state, _)| state.records > 0)
        .cloned()
        .unwrap_or_else(|| panic!("no write-ahead file holds records: {states:?}"));
    assert!(state.damage.is_none(), "{state:?}");
    let (first, last) = state.positions.unwrap();
    assert!(last > first, "{state:?}");
    // The records' extent, from the recovery's own reading.
    let records_end = {
        let bytes = std::fs::read(pristine.join(file)).unwrap();
        let scanned = wal::scan(
            &bytes,
            state.generation.unwrap(),
            wal::Rules { strict: true },
        )
        .unwrap();
        scanned.end
    };
    let baseline = {
        let copy = dir.path().join("baseline");
        copy_dir(&pristine, &copy);
        whole(&copy).expect("the killed store opens whole")
    };
    assert_eq!(baseline.0, last, "the write-ahead file holds the log's end");

    let db_length = std::fs::metadata(pristine.join("db")).unwrap().len() as usize;
    let snapshot = std::fs::read_dir(&pristine)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .find(|name| name.starts_with("snap."));
    let mut cases: Vec<(String, Damage)> = Vec::new();
    // Bits flipped across the records (headers, bodies, the last byte) and in the seal.
    for step in 0..24 {
        let at = wal::RECORDS_START + (records_end - wal::RECORDS_START) * step / 24 + step;
        cases.push((
            format!("{file}: a bit flipped at byte {at}"),
            flip(file, at, (step % 8) as u8),
        ));
    }
    cases.push((
        format!("{file}: a bit flipped in the last record's last byte"),
        flip(file, records_end - 1, 3),
    ));
    for at in [0, 5, 20, 35] {
        cases.push((
            format!("{file}: a bit flipped in the seal at byte {at}"),
            flip(file, at, 1),
        ));
    }
    let middle = (records_end + wal::RECORDS_START) / 2;
    for at in [
        0,
        16,
        wal::RECORDS_START,
        wal::RECORDS_START + 40,
        middle,
        records_end - 1,
        records_end,
        records_end + 100,
        records_end + wal::ZEROS_AFTER / 2,
    ] {
        cases.push((format!("{file}: cut at byte {at}"), truncate(file, at)));
    }
    for (from, size) in [
        (0, 100 * 1024),
        (0, wal::RECORDS_START),
        (wal::RECORDS_START, 100 * 1024),
        (middle, 100 * 1024),
        (middle, 64),
        (records_end - 300, 300),
        (records_end - 4096, 8192),
        (wal::RECORDS_START + 4, 12),
        // The seal and every record.
        (0, records_end),
    ] {
        cases.push((
            format!("{file}: {size} bytes zeroed from byte {from}"),
            zero(file, from, size),
        ));
    }
    for name in wal::FILES {
        cases.push((format!("{name}: deleted"), delete(name)));
        cases.push((format!("{name}: cut to nothing"), truncate(name, 0)));
    }
    cases.push(("the write-ahead files swapped".into(), swap()));
    // sled's own files: the database file flipped at many offsets, cut and zeroed; its
    // configuration and snapshot damaged or removed; an unfinished snapshot left beside them.
    for step in 0..24 {
        let at = db_length * step / 24 + 13 * step;
        cases.push((
            format!("db: a bit flipped at byte {at}"),
            flip("db", at, (step % 8) as u8),
        ));
    }
    for at in [0, db_length / 3, db_length / 2, db_length - 100] {
        cases.push((format!("db: cut at byte {at}"), truncate("db", at)));
    }
    cases.push((
        "db: 4096 bytes zeroed at its middle".into(),
        zero("db", db_length / 2, 4096),
    ));
    cases.push(("conf: deleted".into(), delete("conf")));
    cases.push(("conf: a bit flipped".into(), flip("conf", 10, 2)));
    if let Some(snapshot) = snapshot {
        let snapshot: &'static str = Box::leak(snapshot.into_boxed_str());
        cases.push((format!("{snapshot}: a bit flipped"), flip(snapshot, 3, 0)));
        cases.push((format!("{snapshot}: deleted"), delete(snapshot)));
    }
    cases.push((
        "an unfinished sled snapshot (snap.*.generating, empty) beside the files".into(),
        Box::new(|data: &Path| {
            std::fs::write(data.join("snap.FFFFFFFFFFFFFFF0.generating"), b"").unwrap()
        }),
    ));

    let mut refused = 0;
    let mut harmless = 0;
    let mut failures = Vec::new();
    for (number, (name, damage)) in cases.iter().enumerate() {
        let mut codes = Vec::new();
        for (index, command) in COMMANDS.iter().enumerate() {
            let copy = dir.path().join(format!("case-{number}-{index}"));
            copy_dir(&pristine, &copy);
            damage(&copy);
            let run = run(&copy, command);
            let said = format!("{}{}", run.stdout, run.stderr);
            let command = command.join(" ");
            if run.code != 0 && run.code != 2 {
                failures.push(format!("{name}: `{command}` exited {}:\n{said}", run.code));
            } else if said.contains("panicked") {
                failures.push(format!("{name}: `{command}` panicked:\n{said}"));
            } else if run.code == 2 && !(said.contains("damaged") || said.contains("missing")) {
                failures.push(format!(
                    "{name}: `{command}` refused without naming the damage:\n{said}"
                ));
            } else if run.code == 0 && whole(&copy).as_ref() != Some(&baseline) {
                // Opened: then it must hold everything that was acknowledged.
                failures.push(format!(
                    "{name}: `{command}` went on with less than was acknowledged: {:?} of {baseline:?}",
                    whole(&copy)
                ));
            }
            codes.push(run.code);
            std::fs::remove_dir_all(&copy).unwrap();
        }
        if codes.iter().any(|code| *code != codes[0]) {
            failures.push(format!("{name}: the commands disagree: {codes:?}"));
        }
        if codes[0] == 0 {
            harmless += 1;
        } else {
            refused += 1;
        }
    }
    println!(
        "damage corpus: {} cases, {refused} refused naming the damage, {harmless} harmless (opened whole)",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(refused >= cases.len() / 2, "{refused} of {}", cases.len());
}

#[test]
fn store_check_while_a_daemon_holds_the_store_says_so_and_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
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
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    );
    daemon.wait_for("other terminals reach this daemon");
    let check = run(&dir.join("data"), &["store", "check"]);
    daemon.terminate();
    assert_eq!(check.code, 2, "{}{}", check.stdout, check.stderr);
    assert!(check.stderr.contains("in use"), "{}", check.stderr);
    assert!(
        !format!("{}{}", check.stdout, check.stderr).contains("damaged"),
        "{}{}",
        check.stdout,
        check.stderr
    );
}
