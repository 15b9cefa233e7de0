//! The orchestrator's layers keep their rules (ARCHITECTURE.md, "Layers"): each is checked
//! here by reading its source, every `crate::` path a file names and a few words no file of a
//! layer may hold. A change that breaks a rule fails this test with the file and the line.

use std::path::{Path, PathBuf};

/// A layer: its folder, the layers its files may name, and what may never appear in them.
struct Layer {
    name: &'static str,
    may_use: &'static [&'static str],
    /// `crate::` paths allowed although their layer is not in `may_use`.
    except: &'static [&'static str],
    /// Words no file of the layer may hold, each with the rule it would break.
    never: &'static [(&'static str, &'static str)],
}

const LAYERS: &[Layer] = &[
    Layer {
        name: "kernel",
        may_use: &["kernel"],
        except: &[],
        never: &[
            ("ExitCode", "the kernel names no exit code"),
            ("println!", "the kernel prints nothing"),
            ("eprintln!", "the kernel prints nothing"),
        ],
    },
    Layer {
        name: "app",
        may_use: &["app", "kernel"],
        except: &[],
        never: &[
            ("ExitCode", "the application layer names no exit code"),
            ("USER_ERROR", "the application layer names no exit code"),
            ("INTERNAL_ERROR", "the application layer names no exit code"),
            ("println!", "the application layer prints nothing"),
            ("eprintln!", "the application layer prints nothing"),
            ("std::io::stdout", "the application layer knows no terminal"),
            ("IsTerminal", "the application layer knows no terminal"),
            (
                "std::env::var",
                "the application layer reads no environment variable",
            ),
            (
                "writeln!",
                "the application layer formats no text (present does)",
            ),
        ],
    },
    Layer {
        name: "present",
        may_use: &["present", "app"],
        except: &[],
        never: &[
            ("Runtime", "renderers never read the store"),
            ("EventReader", "renderers never read the store"),
            (".store", "renderers never read the store"),
            ("sled", "renderers never read the store"),
        ],
    },
    Layer {
        name: "fronts",
        may_use: &["fronts", "app", "present", "hosts"],
        // A front hands the runtime it was given to the application layer, and names nothing
        // else of the kernel.
        except: &["crate::kernel::runtime::Runtime"],
        never: &[
            ("SledEventLog", "fronts never open a store"),
            ("open_store", "fronts never open a store"),
            ("::decide(", "fronts never decide"),
            ("decide::", "fronts never decide"),
            ("runtime.handle(", "fronts never decide"),
            ("runtime.record(", "fronts never decide"),
        ],
    },
];

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The code of a file without its comments and its tests (a test may build anything).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start() == "#[cfg(test)]" {
            break;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        lines.push((number + 1, code.to_string()));
    }
    lines
}

/// Every `crate::a::b` path a line names, with `use crate::{a, b}` groups opened.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let path = tail[..end].trim_end_matches(':');
        if tail[end..].starts_with('{') {
            // `use crate::{a, b::c}` or `use crate::a::{self, B}`: each member of the group.
            let inside = tail[end + 1..].split('}').next().unwrap_or("");
            for member in inside.split(',') {
                let member = member.trim().split(" as ").next().unwrap_or("").trim();
                if !member.is_empty() {
                    paths.push(format!("{path}::{member}"));
                }
            }
            if path != "crate" {
                paths.push(path.to_string());
            }
        } else {
            paths.push(path.to_string());
        }
        rest = &tail[end.max(1)..];
    }
    paths
}

#[test]
fn every_layer_names_only_what_its_rules_allow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for layer in LAYERS {
        let files = sources(&root.join(layer.name));
        assert!(
            !files.is_empty(),
            "no source in {}/{}",
            root.display(),
            layer.name
        );
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let shown = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            for (number, code) in code_lines(&text) {
                for path in crate_paths(&code) {
                    let Some(named) = path.strip_prefix("crate::") else {
                        continue;
                    };
                    let first = named.split("::").next().unwrap_or("");
                    let allowed = layer.may_use.contains(&first)
                        || layer.except.iter().any(|e| path.starts_with(e));
                    if !allowed {
                        broken.push(format!(
                            "{shown}:{number}: {} names {path}; it may name only {}",
                            layer.name,
                            layer.may_use.join(", ")
                        ));
                    }
                }
                for (word, rule) in layer.never {
                    if code.contains(word) {
                        broken.push(format!("{shown}:{number}: `{word}`: {rule}"));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_reader_of_paths_sees_groups_and_plain_paths() {
    assert_eq!(
        crate_paths("use crate::app::{self, Action};"),
        vec!["crate::app::self", "crate::app::Action", "crate::app"]
    );
    assert_eq!(
        crate_paths("let x = crate::kernel::plans::plan_in_force(r);"),
        vec!["crate::kernel::plans::plan_in_force"]
    );
    assert_eq!(
        crate_paths("use crate::{kernel::runtime::Runtime, present};"),
        vec!["crate::kernel::runtime::Runtime", "crate::present"]
    );
}
