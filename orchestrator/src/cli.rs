//! The commands. Each returns the exit code for what the user asked (0 or 2); an `Err` is an
//! internal failure (exit 1).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::event::StoreError;
use battleplan_core::plan::{self, diagnostic, parse, Checked, Diagnostic};
use clap::{Parser, Subcommand};
use serde::Serialize;

/// Exit code for a user error: a bad plan, bad input, a rejected command.
const USER_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "battleplan",
    version,
    about = "Runs big-sale promotion campaigns from a battle plan, and keeps every decision as an event.",
    long_about = None
)]
pub struct Arguments {
    /// The data directory (the event store and its projections).
    #[arg(
        long,
        global = true,
        env = "BATTLEPLAN_DATA",
        default_value = "./battleplan-data"
    )]
    pub data: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the example plan: the September procurement festival, every section commented.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "battleplan.toml")]
        out: PathBuf,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check a plan: every problem with its location and code, or "ok" and a summary.
    Validate {
        /// The plan file, or `-` for standard input.
        plan: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The auditor's tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that the log is intact: positions without gaps, the hash chain, stream versions.
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(arguments: Arguments) -> anyhow::Result<ExitCode> {
    match arguments.command {
        Command::Init { out, force } => init(&out, force),
        Command::Validate { plan, json } => validate(&plan, json),
        Command::Audit {
            command: AuditCommand::Verify { json },
        } => audit_verify(&arguments.data, json),
    }
}

fn user_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("battleplan: {message}");
    ExitCode::from(USER_ERROR)
}

fn init(out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if out.is_dir() {
        return Ok(user_error(format_args!(
            "{} is a directory; give the plan file's path, e.g. --out {}",
            out.display(),
            out.join("battleplan.toml").display()
        )));
    }
    if !force && out.exists() {
        return Ok(user_error(format_args!(
            "{} already exists; use --force to overwrite it",
            out.display()
        )));
    }
    let directory = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Ok(user_error(format_args!(
            "cannot write {}: the directory {} does not exist",
            out.display(),
            directory.display()
        )));
    }
    // Written beside the target and moved into place, so the file is either whole or absent.
    let mut temporary = tempfile::Builder::new()
        .prefix(".battleplan-init-")
        .tempfile_in(directory)
        .with_context(|| format!("creating a temporary file in {}", directory.display()))?;
    // A temporary file is private (0600); a plan is an ordinary document.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .context("setting the plan's permissions")?;
    }
    temporary
        .write_all(plan::EXAMPLE_PLAN.as_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .context("writing the example plan")?;
    let persisted = if force {
        temporary.persist(out).map(|_| ())
    } else {
        temporary.persist_noclobber(out).map(|_| ())
    };
    match persisted {
        Ok(()) => {}
        Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(user_error(format_args!(
                "{} already exists; use --force to overwrite it",
                out.display()
            )));
        }
        Err(error) => {
            return Err(error.error).with_context(|| format!("writing {}", out.display()));
        }
    }
    println!(
        "wrote {}: the September procurement festival, every section commented",
        out.display()
    );
    println!("next: battleplan validate {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads at most one byte more than a plan may hold, so a huge file is refused unread.
fn read_plan(path: &Path) -> Result<Vec<u8>, String> {
    let describe = |error: io::Error| format!("cannot read the plan {}: {error}", path.display());
    let mut bytes = Vec::new();
    let limit = parse::MAX_PLAN_BYTES as u64 + 1;
    if path.as_os_str() == "-" {
        io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(describe)?;
        return Ok(bytes);
    }
    let file = File::open(path).map_err(describe)?;
    let metadata = file.metadata().map_err(describe)?;
    if metadata.is_dir() {
        return Err(format!(
            "{} is a directory, not a plan file",
            path.display()
        ));
    }
    file.take(limit).read_to_end(&mut bytes).map_err(describe)?;
    Ok(bytes)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    file: String,
    ok: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'static str,
    severity: String,
    path: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
}

fn validate(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = match read_plan(path) {
        Ok(bytes) => bytes,
        Err(message) => return Ok(user_error(message)),
    };
    let file_name = path.display().to_string();
    let checked = if bytes.len() > parse::MAX_PLAN_BYTES {
        let length = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        Checked {
            plan: None,
            diagnostics: vec![parse::too_large(length)],
            line_index: diagnostic::LineIndex::new(""),
        }
    } else {
        plan::check(&bytes)
    };
    let summary = checked.plan.as_ref().map(plan::validate::summary);
    if json {
        let report = JsonReport {
            file: file_name,
            ok: !checked.has_errors(),
            errors: checked.error_count(),
            warnings: checked.warning_count(),
            diagnostics: checked
                .diagnostics
                .iter()
                .map(|d| json_diagnostic(&checked, d))
                .collect(),
            summary,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = io::stdout().lock();
        for diagnostic in &checked.diagnostics {
            writeln!(
                out,
                "{}",
                diagnostic::render(&file_name, Some(&checked.line_index), diagnostic)
            )?;
        }
        if let Some(summary) = summary {
            let warnings = match checked.warning_count() {
                0 => String::new(),
                1 => " (1 warning above)".to_string(),
                count => format!(" ({count} warnings above)"),
            };
            writeln!(out, "ok{warnings}: {summary}")?;
        } else {
            writeln!(
                out,
                "{file_name}: {}; the plan is rejected",
                count_words(checked.error_count(), checked.warning_count())
            )?;
        }
    }
    Ok(if checked.has_errors() {
        ExitCode::from(USER_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn json_diagnostic<'a>(checked: &Checked, diagnostic: &'a Diagnostic) -> JsonDiagnostic<'a> {
    let position = diagnostic
        .span
        .as_ref()
        .map(|span| checked.line_index.line_column(span.start));
    JsonDiagnostic {
        code: diagnostic.code.as_str(),
        severity: diagnostic.severity.to_string(),
        path: &diagnostic.path,
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        message: &diagnostic.message,
        help: diagnostic.help.as_deref(),
    }
}

/// Opens the store in `data` for reading, or says why not in words a user can act on.
fn open_existing_store(data: &Path) -> Result<SledEventLog, String> {
    if !data.join("db").is_file() {
        return Err(format!(
            "there is no battleplan store in {} (set --data or BATTLEPLAN_DATA to the data directory)",
            data.display()
        ));
    }
    SledEventLog::open(data, StoreOptions::default()).map_err(|error| match error {
        StoreError::Locked(_) => format!(
            "the store in {} is in use by another battleplan process; stop it and try again",
            data.display()
        ),
        other => format!("cannot open the store in {}: {other}", data.display()),
    })
}

#[derive(Serialize)]
struct JsonVerify {
    intact: bool,
    events: u64,
    head_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem_position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

fn audit_verify(data: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = match open_existing_store(data) {
        Ok(store) => store,
        Err(message) => return Ok(user_error(message)),
    };
    let report = match store.verify() {
        Ok(report) => report,
        Err(error) => return Ok(user_error(format_args!("cannot read the store: {error}"))),
    };
    if json {
        let output = JsonVerify {
            intact: report.problem.is_none(),
            events: report.checked,
            head_hash: report.head_hash.clone(),
            problem_position: report.problem.as_ref().map(|p| p.position.0),
            problem: report.problem.as_ref().map(ToString::to_string),
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        match &report.problem {
            None => println!(
                "intact: {} events, positions 1 to {} without gaps, every hash and stream version checks out; head hash {}",
                report.checked, report.checked, report.head_hash
            ),
            Some(problem) => {
                println!("damaged: {problem}");
                println!(
                    "the {} events before it check out (head hash {})",
                    report.checked, report.head_hash
                );
            }
        }
    }
    Ok(if report.problem.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(USER_ERROR)
    })
}

fn count_words(errors: usize, warnings: usize) -> String {
    let plural = |count: usize, word: &str| {
        if count == 1 {
            format!("1 {word}")
        } else {
            format!("{count} {word}s")
        }
    };
    if warnings == 0 {
        plural(errors, "error")
    } else {
        format!(
            "{}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}
