//! The event log on PostgreSQL through the real binary (issue 24, "Choosing the store"): the
//! demo's sled store copied into a PostgreSQL tenant (`store copy --to URL`) and back into a
//! new sled directory gives the same head hash, the same `export` bytes, and the same `status`
//! and `report weekly` answers; `audit verify` and `store check` on the tenant are intact; a
//! copy into a tenant that holds events is refused and leaves it as it was; a URL holding a
//! password is refused without repeating it; a wrong password, a missing one and a server that
//! does not answer are clean refusals (exit 2, 2 and 1); the password from a file works; and
//! the password appears in no output of any of these runs.
//!
//! One test function on purpose: the demo takes a while, and every step reads its store.
//! Needs PostgreSQL (tests/src/postgres.rs): skipped loudly without it, failed under CI.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use battleplan_tests::{binary, postgres, Run, TESTER};

const CAMPAIGN: &str = "sept-festival-2026";
/// After the demo's last event: questions asked at one instant, so the answers compare.
const LATER: &str = "2026-10-13T00:00:00+08:00";

/// Every variable that chooses a store or gives a password, cleared for each run.
const STORE_VARIABLES: [&str; 6] = [
    "BATTLEPLAN_STORE",
    "BATTLEPLAN_STORE_PASSWORD",
    "BATTLEPLAN_STORE_PASSWORD_FILE",
    "BATTLEPLAN_TARGET_PASSWORD",
    "BATTLEPLAN_TARGET_PASSWORD_FILE",
    "BATTLEPLAN_DATA",
];

/// Runs `battleplan ARGUMENTS` in `dir` with these variables set (all others that choose a
/// store cleared), and keeps the run for the final check that no output holds the password.
fn battleplan(
    runs: &mut Vec<Run>,
    dir: &Path,
    environment: &[(&str, &str)],
    arguments: &[&str],
) -> usize {
    let mut command = Command::new(binary());
    command
        .args(arguments)
        .current_dir(dir)
        .env("USER", TESTER)
        .env_remove("RUST_LOG");
    for variable in STORE_VARIABLES {
        command.env_remove(variable);
    }
    command.envs(environment.iter().copied());
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot start battleplan: {error}"));
    runs.push(Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    });
    runs.len() - 1
}

/// The run at `index`, which must have succeeded.
fn ok(runs: &[Run], index: usize) -> &Run {
    let run = &runs[index];
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}):\n{}", run.stdout))
}

#[test]
fn the_demo_moves_to_postgresql_and_back_as_the_same_log() {
    let Some(database) = postgres::database("store_copy_round_trip") else {
        return;
    };
    let password = database.password.as_str();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let mut runs = Vec::new();
    let with_password = [("BATTLEPLAN_STORE_PASSWORD", password)];
    let shop = format!("{}?tenant=shop", database.url);

    // The demo's store: sled, in demo/data.
    let demo = battleplan(&mut runs, dir, &[], &["demo", "--out", "demo"]);
    ok(&runs, demo);

    // Into PostgreSQL, and back into a new sled directory.
    let there = battleplan(
        &mut runs,
        dir,
        &with_password,
        &[
            "--data",
            "demo/data",
            "store",
            "copy",
            "--to",
            &shop,
            "--json",
        ],
    );
    let there = json(ok(&runs, there));
    let head_hash = there["source_head_hash"].as_str().unwrap().to_string();
    let events = there["events"].as_u64().unwrap();
    assert!(events > 10_000, "{there}");
    assert_eq!(
        there["target_head_hash"], there["source_head_hash"],
        "{there}"
    );
    assert_eq!(there["target_events"].as_u64(), Some(events), "{there}");
    assert_eq!(
        there["rehearsal"], true,
        "the demo's store is a rehearsal's"
    );
    let back = battleplan(
        &mut runs,
        dir,
        &with_password,
        &["--store", &shop, "store", "copy", "--to", "back", "--json"],
    );
    let back = json(ok(&runs, back));
    assert_eq!(back["source_head_hash"].as_str(), Some(head_hash.as_str()));
    assert_eq!(back["target_head_hash"].as_str(), Some(head_hash.as_str()));
    assert_eq!(back["events"].as_u64(), Some(events));
    assert!(dir.join("back/rehearsal").is_file(), "the mark went along");

    // The same export, byte for byte, from all three.
    let sled_export = battleplan(&mut runs, dir, &[], &["--data", "demo/data", "export"]);
    let pg_export = battleplan(
        &mut runs,
        dir,
        &with_password,
        &["--store", &shop, "export"],
    );
    let back_export = battleplan(&mut runs, dir, &[], &["--data", "back", "export"]);
    let exported = &ok(&runs, sled_export).stdout;
    assert!(exported.contains(&head_hash));
    assert!(
        ok(&runs, pg_export).stdout == *exported,
        "the export from PostgreSQL differs from the sled store's"
    );
    assert!(
        ok(&runs, back_export).stdout == *exported,
        "the export of the copy back differs from the sled store's"
    );

    // The same answers people read.
    let questions: [&[&str]; 4] = [
        &["status", "--clock-at", LATER],
        &["status", CAMPAIGN, "--clock-at", LATER],
        &[
            "report",
            "weekly",
            CAMPAIGN,
            "--week",
            "2026-W36",
            "--clock-at",
            LATER,
        ],
        &["funnel", CAMPAIGN, "--clock-at", LATER],
    ];
    for question in questions {
        let ask = |runs: &mut Vec<Run>, store: &[&str], environment: &[(&str, &str)]| {
            let mut arguments = store.to_vec();
            arguments.extend_from_slice(question);
            let index = battleplan(runs, dir, environment, &arguments);
            ok(runs, index).stdout.clone()
        };
        let sled = ask(&mut runs, &["--data", "demo/data"], &[]);
        let pg = ask(&mut runs, &["--store", &shop], &with_password);
        let copied = ask(&mut runs, &["--data", "back"], &[]);
        assert!(!sled.is_empty(), "{question:?}");
        assert_eq!(pg, sled, "{question:?} on PostgreSQL");
        assert_eq!(copied, sled, "{question:?} on the copy back");
    }

    // The auditor's checks on the tenant; the store chosen by the environment this time.
    let by_environment = [
        ("BATTLEPLAN_STORE", shop.as_str()),
        ("BATTLEPLAN_STORE_PASSWORD", password),
    ];
    let verified = battleplan(
        &mut runs,
        dir,
        &by_environment,
        &["audit", "verify", "--json"],
    );
    let verified = json(ok(&runs, verified));
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["head_hash"].as_str(), Some(head_hash.as_str()));
    let checked = battleplan(&mut runs, dir, &by_environment, &["store", "check"]);
    let checked = ok(&runs, checked);
    assert!(
        checked.stdout.contains(&format!("intact: {events} events"))
            && checked.stdout.contains(&head_hash),
        "{}",
        checked.stdout
    );

    // A copy into a tenant that holds events is refused, and the tenant is left as it was.
    let again = battleplan(
        &mut runs,
        dir,
        &with_password,
        &["--data", "back", "store", "copy", "--to", &shop],
    );
    assert_eq!(runs[again].code, 2, "{}", runs[again].stderr);
    assert!(
        runs[again].stderr.contains("holds"),
        "{}",
        runs[again].stderr
    );
    let still = battleplan(
        &mut runs,
        dir,
        &by_environment,
        &["store", "check", "--json"],
    );
    let still = json(ok(&runs, still));
    assert_eq!(still["events"].as_u64(), Some(events));
    assert_eq!(still["head_hash"].as_str(), Some(head_hash.as_str()));

    // The password from a file of the user's own.
    let file = dir.join("password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let from_file = battleplan(
        &mut runs,
        dir,
        &[("BATTLEPLAN_STORE_PASSWORD_FILE", file.to_str().unwrap())],
        &["--store", &shop, "status", "--clock-at", LATER],
    );
    let from_file = ok(&runs, from_file);
    assert!(from_file.stdout.contains(CAMPAIGN));
    assert!(
        !from_file.stderr.contains("warning"),
        "{}",
        from_file.stderr
    );

    // A URL holding the password is refused, without a word of it, for --store and --to.
    let (scheme, rest) = database.url.split_once("://").unwrap();
    let (user, place) = rest.split_once('@').unwrap();
    let with_secret = format!("{scheme}://{user}:{password}@{place}?tenant=shop");
    let in_url = battleplan(&mut runs, dir, &[], &["--store", &with_secret, "status"]);
    assert_eq!(runs[in_url].code, 2, "{}", runs[in_url].stderr);
    assert!(
        runs[in_url].stderr.contains("BATTLEPLAN_STORE_PASSWORD"),
        "{}",
        runs[in_url].stderr
    );
    let in_target = battleplan(
        &mut runs,
        dir,
        &[],
        &["--data", "back", "store", "copy", "--to", &with_secret],
    );
    assert_eq!(runs[in_target].code, 2, "{}", runs[in_target].stderr);

    // A wrong password and a missing one are the user's to put right (2); a server that does
    // not answer is the machine's (1). Neither repeats what was given.
    let wrong = "not-the-password-7f3a";
    let refused = battleplan(
        &mut runs,
        dir,
        &[("BATTLEPLAN_STORE_PASSWORD", wrong)],
        &["--store", &shop, "status"],
    );
    let refused = &runs[refused];
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cannot log in"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(wrong) && !refused.stdout.contains(wrong));
    let missing = battleplan(&mut runs, dir, &[], &["--store", &shop, "status"]);
    assert_eq!(runs[missing].code, 2, "{}", runs[missing].stderr);
    let down = battleplan(
        &mut runs,
        dir,
        &with_password,
        &[
            "--store",
            "postgres://battleplan@127.0.0.1:1/nowhere",
            "status",
        ],
    );
    assert_eq!(runs[down].code, 1, "{}", runs[down].stderr);
    assert!(
        runs[down]
            .stderr
            .contains("postgres://battleplan@127.0.0.1:1/nowhere (tenant default)"),
        "{}",
        runs[down].stderr
    );

    // Never a word of the password, in any output of any run.
    for run in &runs {
        assert!(
            !run.stdout.contains(password) && !run.stderr.contains(password),
            "the password was printed:\nstdout:\n{}\nstderr:\n{}",
            &run.stdout[..run.stdout.len().min(2_000)],
            run.stderr
        );
    }
}
