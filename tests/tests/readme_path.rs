//! The README's first steps, run as a new user runs them on a fresh clone: every command of its
//! "write the plan and check it" and "rehearse the campaign" blocks, exactly as written (with
//! this build's binary for `cargo run -q --bin battleplan --`), in an empty directory. They must
//! end in sends and a funnel, and leave the default data directory untouched, with `USER`
//! unset as in many containers.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use battleplan_tests::run_as;

const CARGO_RUN: &str = "cargo run -q --bin battleplan -- ";

/// The command lines of the README's `sh` blocks from "Write the plan and check it" up to "Run
/// all the tests", each split at `&&`.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("Write the plan and check it")
        .expect("the README's first steps");
    let end = readme[start..]
        .find("Run all the tests")
        .map(|end| start + end)
        .expect("the README's test section");
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block || line.trim().is_empty() {
            continue;
        }
        for command in line.split(" && ") {
            let arguments = command
                .trim()
                .strip_prefix(CARGO_RUN)
                .unwrap_or_else(|| panic!("a README command that is not battleplan's: {command}"));
            commands.push(arguments.split_whitespace().map(str::to_string).collect());
        }
    }
    commands
}

#[test]
fn the_readme_path_on_a_fresh_clone_ends_in_sends_and_a_funnel() {
    let directory = tempfile::tempdir().unwrap();
    let commands = readme_commands();
    assert!(commands.len() >= 6, "{commands:?}");
    let mut outputs = Vec::new();
    for arguments in &commands {
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        // As a new user on a machine that may not set `USER`: the README names its actors.
        let run = run_as(directory.path(), &arguments, None);
        assert_eq!(run.code, 0, "battleplan {arguments:?}: {}", run.stderr);
        outputs.push((arguments.join(" "), run.stdout));
    }
    let output_of = |command: &str| -> &str {
        outputs
            .iter()
            .rev()
            .find(|(arguments, _)| arguments.contains(command))
            .map(|(_, stdout)| stdout.as_str())
            .unwrap_or_else(|| panic!("the README runs no `{command}`"))
    };
    // Customers came in: every reach-out of the history has an audience and sends.
    let history = output_of(" history");
    let planned: Vec<&str> = history
        .lines()
        .filter(|line| line.contains("reach-out") && line.contains("planned"))
        .collect();
    assert!(!planned.is_empty(), "{history}");
    assert!(
        !planned
            .iter()
            .any(|line| line.contains("segment 0, 0 to send")),
        "{history}"
    );
    assert!(history.contains("completed"), "{history}");
    // Messages went out through the file outbox of the rehearsal's directory.
    let outbox = directory.path().join("rehearsal").join("outbox");
    let lines: usize = std::fs::read_dir(&outbox)
        .unwrap_or_else(|error| panic!("{}: {error}", outbox.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            std::fs::read_to_string(&path).unwrap().lines().count()
        })
        .sum();
    assert!(lines > 100, "{lines} message(s) in {}", outbox.display());
    // The funnel shows customers reached.
    let funnel = output_of(" funnel");
    let reached = funnel
        .lines()
        .filter(|line| line.trim_start().starts_with("reached") || line.contains(" reached "))
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|word| word.replace(',', "").parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0);
    assert!(reached > 0, "{funnel}");
    // The rehearsal left the default data directory, where the real campaign will run, alone.
    assert!(!directory.path().join("battleplan-data").exists());
}
