//! `customers import` of a generated file, run as a user runs it (the release binary, a fresh
//! store): rows a second and the process's peak memory, at 100,000 and 1,000,000 rows so that
//! memory can be seen not to grow with the file. Baseline, measured in the same run: the csv
//! crate reading the same file and doing nothing with the records, the floor of any import.
//!
//! `cargo bench -p battleplan-orchestrator --bench import` (`BENCH_ROWS`, default 1,000,000).

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{battleplan, env_number, own_peak_kib};

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use chrono::{DateTime, Utc};

/// In a child process of its own (so that its peak memory is the import's alone): imports the
/// file into the store, in process, as `battleplan customers import` does without a daemon.
fn child(file: &str, data: &str) {
    use battleplan_adapters::system::{RandomIds, SystemClock};
    use battleplan_adapters::SledEventLog;
    use battleplan_core::customer::ImportKind;
    use battleplan_orchestrator::app::import::{self, ImportRequest};
    use battleplan_orchestrator::kernel::runtime::Runtime;
    use std::sync::Arc;

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    // The store as `customers import` opens it: a small cache, frequent checkpoints.
    let store = SledEventLog::open(Path::new(data), import::store_options()).expect("store");
    let runtime = Runtime::new(Arc::new(store), Arc::new(SystemClock), Arc::new(RandomIds));
    let request = ImportRequest {
        kind: ImportKind::Customers,
        path: Path::new(file).to_path_buf(),
        file_name: file.to_string(),
        format: battleplan_adapters::import::Format::Csv,
        skip_bad_rows: false,
        actor: "bench".into(),
    };
    let started = Instant::now();
    let view = tokio.block_on(import::run(
        &battleplan_orchestrator::app::Ctx::new(&runtime),
        request,
    ));
    assert!(
        matches!(&view, Ok(view) if !view.refused()),
        "the import failed: {view:?}"
    );
    println!("{} {}", started.elapsed().as_millis(), own_peak_kib());
}

fn main() {
    if let Ok(arguments) = std::env::var("BENCH_IMPORT_CHILD") {
        let (file, data) = arguments.split_once('|').expect("file|data");
        child(file, data);
        return;
    }
    let rows = env_number("BENCH_ROWS", 1_000_000);
    let scratch = tempfile::Builder::new()
        .prefix("battleplan-bench-import-")
        .tempdir()
        .expect("a temporary directory");
    let dir = scratch.path();
    let as_of: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-09-01T00:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc);
    battleplan(dir, &["init", "--out", "plan.toml"]);
    for count in [rows / 10, rows] {
        let file = dir.join(format!("customers-{count}.csv"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        write_customers(
            &mut out,
            Options {
                count,
                seed: 1,
                as_of,
                format: FileFormat::Csv,
            },
        )
        .unwrap();
        drop(out);
        let bytes = std::fs::metadata(&file).unwrap().len();

        let started = Instant::now();
        let mut reader = csv::Reader::from_path(&file).unwrap();
        let mut record = csv::ByteRecord::new();
        let mut read = 0u64;
        while reader.read_byte_record(&mut record).unwrap() {
            read += 1;
        }
        let baseline = started.elapsed();

        let data = format!("data-{count}");
        battleplan(
            dir,
            &[
                "--data",
                &data,
                "plan",
                "apply",
                "plan.toml",
                "--clock-at",
                "2026-08-01T00:00:00Z",
            ],
        );
        let output = Command::new(std::env::current_exe().expect("the bench's own path"))
            .env(
                "BENCH_IMPORT_CHILD",
                format!("{}|{}", file.display(), dir.join(&data).display()),
            )
            .output()
            .expect("the import child runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let said = String::from_utf8_lossy(&output.stdout);
        let mut figures = said
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(0.0));
        let (millis, peak_kib) = (figures.next().unwrap_or(0.0), figures.next().unwrap_or(0.0));
        let import = std::time::Duration::from_secs_f64(millis / 1000.0);
        println!(
            "{count} rows ({:.0} MiB): import {:.2?} = {:.0} rows/s, peak RSS {:.0} MiB; baseline csv read {:.2?} = {:.0} rows/s (the import takes {:.0} x as long)",
            bytes as f64 / 1_048_576.0,
            import,
            count as f64 / import.as_secs_f64(),
            peak_kib / 1024.0,
            baseline,
            read as f64 / baseline.as_secs_f64(),
            import.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}
