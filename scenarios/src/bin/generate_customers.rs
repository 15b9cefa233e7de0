//! `generate-customers`: writes a deterministic customers file (and, with `--outcomes`, the
//! matching outcomes file) for the September festival example: the same options, the same
//! bytes.
//!
//! ```text
//! generate-customers --count 100000 --seed 1 --as-of 2026-08-20T00:00:00+08:00 --out customers.csv
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use battleplan_scenarios::customers::{write_customers, write_outcomes, FileFormat, Options};
use chrono::{DateTime, Utc};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "generate-customers",
    about = "Writes a deterministic customers file (and optionally outcomes) for the September festival example."
)]
struct Arguments {
    /// How many customers (c-000001 ...); c-000417 and c-002291 are always included.
    #[arg(long)]
    count: u64,
    /// The seed: the same seed gives the same file, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Activity lies in the 200 days before this instant (RFC 3339), outcomes in the 5 before.
    #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
    as_of: DateTime<Utc>,
    /// The customers file to write.
    #[arg(long)]
    out: PathBuf,
    /// Also write the matching outcomes to this file.
    #[arg(long)]
    outcomes: Option<PathBuf>,
    /// csv or jsonl; by default from --out's extension (csv when it does not say).
    #[arg(long)]
    format: Option<FileFormat>,
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|_| format!("`{text}` is not an instant; write e.g. 2026-08-20T00:00:00+08:00"))
}

fn format_of(path: &Path) -> FileFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson") => FileFormat::Jsonl,
        _ => FileFormat::Csv,
    }
}

type Writer = fn(&mut dyn Write, Options) -> std::io::Result<()>;

fn write(path: &Path, options: Options, writer: Writer) -> Result<(), String> {
    let describe = |error: std::io::Error| format!("cannot write {}: {error}", path.display());
    let file = File::create(path).map_err(describe)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writer(&mut out, options).map_err(describe)?;
    out.flush().map_err(describe)
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let options = Options {
        count: arguments.count,
        seed: arguments.seed,
        as_of: arguments.as_of,
        format: arguments
            .format
            .unwrap_or_else(|| format_of(&arguments.out)),
    };
    let mut result = write(&arguments.out, options, write_customers);
    if let (Ok(()), Some(path)) = (&result, &arguments.outcomes) {
        result = write(path, options, write_outcomes);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("generate-customers: {message}");
            ExitCode::from(2)
        }
    }
}
