//! Every shipped scenario (`scenarios/*.toml`) run with the real orchestrator under a virtual
//! clock, twice: the two logs are the same byte for byte (same head hash, same outbox files,
//! same report), and the report (what the scenario demonstrates, the timeline, the captures
//! and the summary) is an insta snapshot, reviewed by a person.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use battleplan_orchestrator::hosts::scenario::{self, Finished, Output};
use battleplan_scenarios::scenario::{load, SHIPPED};

fn scenario_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"))
}

async fn run_into(name: &str, dir: &Path) -> Finished {
    let loaded = load(&scenario_file(name)).unwrap_or_else(|message| panic!("{message}"));
    let output = Output {
        dir: dir.to_path_buf(),
    };
    scenario::run(&loaded, &output, &|_| {})
        .await
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((name, std::fs::read(&path).unwrap()));
    }
    files.sort();
    files
}

async fn check(name: &str) {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = run_into(name, &first.path().join("run")).await;
    let b = run_into(name, &second.path().join("run")).await;
    assert_eq!(a.head_hash, b.head_hash, "{name}: the two logs differ");
    assert_eq!(a.events, b.events);
    assert_eq!(a.report, b.report, "{name}: the two reports differ");
    let outbox = |dir: &Path| files_under(&dir.join("run/data/outbox"));
    assert_eq!(
        outbox(first.path()),
        outbox(second.path()),
        "{name}: the outbox files differ"
    );
    assert!(!outbox(first.path()).is_empty(), "{name}: nothing was sent");
    insta::assert_snapshot!(name, a.report);
}

macro_rules! scenarios {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "current_thread")]
            async fn $test() {
                check($name).await;
            }
        )*

        #[test]
        fn every_shipped_scenario_has_a_test() {
            let tested = [$($name),*];
            for (file, _) in SHIPPED {
                let name = file.trim_end_matches(".toml");
                assert!(tested.contains(&name), "{file} is shipped but not tested");
            }
            let mut on_disk: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"))
                .unwrap()
                .filter_map(|entry| {
                    let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".toml").map(str::to_string)
                })
                .filter(|name| name != "Cargo")
                .collect();
            on_disk.sort();
            let mut tested: Vec<String> = tested.iter().map(|s| s.to_string()).collect();
            tested.sort();
            assert_eq!(on_disk, tested, "every scenario file is shipped and tested");
        }
    };
}

scenarios! {
    september_festival => "september-festival",
    downtime_across_burst => "downtime-across-burst",
    quota_overflow => "quota-overflow",
    pause_during_burst => "pause-during-burst",
    revision_mid_flight => "revision-mid-flight",
    daylight_saving => "daylight-saving",
    bounce_storm => "bounce-storm",
    unsubscribes_in_follow_ups => "unsubscribes-in-follow-ups",
}

/// A scenario whose customers come from a file runs exactly as the same customers generated:
/// the file is imported as a user would import it.
#[tokio::test(flavor = "current_thread")]
async fn customers_from_a_file_run_as_the_same_customers_generated() {
    use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let import_at = "2026-08-18T00:00:00+08:00";
    let scenario = |customers: &str| {
        format!(
            "name = \"from-a-file\"\ndemonstrates = \"customers read from a file\"\nseed = 7\n\
             [plan]\nfile = \"example\"\napply_at = \"2026-08-01T00:00:00+08:00\"\n\
             [customers]\n{customers}\nimport_at = \"{import_at}\"\n\
             [run]\nfrom = \"2026-08-18T00:00:00+08:00\"\nuntil = \"2026-08-28T00:00:00+08:00\"\n"
        )
    };
    let mut bytes = Vec::new();
    write_customers(
        &mut bytes,
        Options {
            count: 400,
            seed: 7,
            as_of: chrono::DateTime::parse_from_rfc3339(import_at)
                .unwrap()
                .with_timezone(&chrono::Utc),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    std::fs::write(dir.join("customers.csv"), bytes).unwrap();
    std::fs::write(dir.join("file.toml"), scenario("file = \"customers.csv\"")).unwrap();
    std::fs::write(dir.join("generated.toml"), scenario("generate = 400")).unwrap();
    async fn run(dir: &Path, file: &str, out: &str) -> Finished {
        let loaded = load(&dir.join(file)).unwrap_or_else(|message| panic!("{message}"));
        let output = Output { dir: dir.join(out) };
        scenario::run(&loaded, &output, &|_| {})
            .await
            .unwrap_or_else(|error| panic!("{file}: {error}"))
    }
    let from_file = run(dir, "file.toml", "from-file").await;
    let generated = run(dir, "generated.toml", "generated").await;
    assert!(
        from_file.report.contains("customers from customers.csv"),
        "{}",
        from_file.report
    );
    assert!(
        from_file
            .report
            .contains("reach-out warm-up-recall planned"),
        "{}",
        from_file.report
    );
    assert_eq!(from_file.report, generated.report);
    assert_eq!(from_file.head_hash, generated.head_hash);
}
