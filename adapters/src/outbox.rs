//! The file outbox: one JSON line per message, one file per channel (`<dir>/<channel>.jsonl`),
//! for a test or a person to read. It remembers every key it holds (read back when a file is
//! first used), so a message handed over again after a crash is answered `AlreadySent` and
//! written once: the file has exactly one line per idempotency key. A line cut short by a crash
//! mid-write is removed when the file is opened again (it was never answered as sent).
//!
//! Exactly once across IO errors: a batch is written whole or not at all. When a write or its
//! `fdatasync` fails (a full disk fails part way through, perhaps mid-line), every file the
//! batch touched is cut back to the length it had before the batch and synced, the keys of the
//! batch are not remembered, and the error is returned: nothing of the batch counts as sent and
//! nothing of it is in the file, so the batch handed over again is written once. If even the undo
//! fails, the outbox no longer knows the file's tail: it forgets the file (poisoned), and the
//! next delivery opens it again and reads it back, a torn last line removed and the keys of the
//! whole lines learned, so that what did reach the file is answered `AlreadySent` and not written
//! a second time.
//!
//! The directory is created `0700` and the files `0600` (`crate::private`): they hold customer
//! names, addresses and messages.
//!
//! The console: messages of a plan channel of kind `console` are also printed, one JSON line
//! each, once they are in the file (`FileOutbox::with_console`). The file's keys decide what is
//! printed, so a message handed over again is not printed again; a crash between the file and
//! the print leaves the message in the file only, and so does a failed print (a warning: the
//! delivery, which is the file, happened).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message};
use battleplan_core::plan::model::ChannelKind;

use crate::{fault, private};

/// The failpoints of the file outbox (`crate::fault`): each piece of a batch written, each
/// truncation (an undo, a torn line removed), each `fdatasync`, each channel file opened.
const WRITE: &str = "outbox.write";
const SYNC: &str = "outbox.sync";
const CREATE: &str = "outbox.create";

/// A batch goes to its file in pieces of at most this many bytes, each one a `write` that asks
/// the fault switch first: an injected fault then leaves part of the batch in the file, perhaps a
/// line cut in two, as a disk filling mid-batch does.
const WRITE_PIECE: usize = 64 * 1024;

/// Asked before each write, sync and creation: `fault::check` in production, a scripted source
/// in unit tests.
type Faults = dyn Fn(&str) -> std::io::Result<()> + Send + Sync;

struct ChannelFile {
    file: File,
    /// The file's length as the outbox knows it: whole lines, each key in `keys`.
    len: u64,
    keys: HashSet<String>,
}

/// One JSON-lines file per channel under a directory.
pub struct FileOutbox {
    dir: PathBuf,
    /// The files in use. A file missing here is opened (and read back) at its next delivery;
    /// one whose failed batch could not be undone is removed, to be read back the same way.
    files: Mutex<HashMap<String, ChannelFile>>,
    /// `fdatasync` after each batch, so what was answered `Sent` survives a power cut too.
    sync: bool,
    /// Where messages of `console` channels are printed, if anywhere.
    console: Option<Mutex<Box<dyn Write + Send>>>,
    faults: Box<Faults>,
    piece: usize,
}

#[derive(serde::Deserialize)]
struct KeyOnly {
    key: String,
}

impl FileOutbox {
    pub fn new(dir: impl Into<PathBuf>) -> FileOutbox {
        FileOutbox {
            dir: dir.into(),
            files: Mutex::new(HashMap::new()),
            sync: true,
            console: None,
            faults: Box::new(fault::check),
            piece: WRITE_PIECE,
        }
    }

    /// Also prints each new message of a `console` channel to `out` (the daemon: standard
    /// output), after it is in the file.
    pub fn with_console(mut self, out: Box<dyn Write + Send>) -> FileOutbox {
        self.console = Some(Mutex::new(out));
        self
    }

    /// Without `fdatasync` after each batch (benchmarks of what the log adds, tests). An undo
    /// is synced all the same.
    pub fn without_sync(mut self) -> FileOutbox {
        self.sync = false;
        self
    }

    /// A scripted fault source and a small write piece, so that a unit test can fail any write,
    /// sync or creation of a batch.
    #[cfg(test)]
    fn with_faults(mut self, faults: Box<Faults>, piece: usize) -> FileOutbox {
        self.faults = faults;
        self.piece = piece;
        self
    }

    pub fn path_of(dir: &Path, channel: &str) -> PathBuf {
        dir.join(format!("{channel}.jsonl"))
    }

    /// Opens a channel's file (created `0600` in a `0700` directory) and reads back its keys;
    /// a torn last line is cut off.
    fn open(&self, channel: &str) -> std::io::Result<ChannelFile> {
        (self.faults)(CREATE)?;
        private::directory(&self.dir)?;
        let path = Self::path_of(&self.dir, channel);
        let mut file = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .mode(private::FILE_MODE)
            .open(&path)?;
        private::file(&file, &path)?;
        let mut keys = HashSet::new();
        let mut whole = 0u64;
        {
            let mut reader = BufReader::new(&file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line)?;
                if read == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                whole += read as u64;
                if let Ok(KeyOnly { key }) = serde_json::from_slice::<KeyOnly>(&line) {
                    keys.insert(key);
                }
            }
        }
        if file.metadata()?.len() > whole {
            // A line cut short by a crash or a failed write: never answered as sent; removed.
            self.cut_back(&file, whole)?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok(ChannelFile {
            file,
            len: whole,
            keys,
        })
    }

    /// Truncates `file` to `len` and makes that durable.
    fn cut_back(&self, file: &File, len: u64) -> std::io::Result<()> {
        (self.faults)(WRITE)?;
        file.set_len(len)?;
        (self.faults)(SYNC)?;
        file.sync_data()
    }

    /// Appends a batch's lines, in pieces, and syncs them.
    fn append(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        for piece in bytes.chunks(self.piece.max(1)) {
            (self.faults)(WRITE)?;
            file.write_all(piece)?;
        }
        if self.sync {
            (self.faults)(SYNC)?;
            file.sync_data()?;
        }
        Ok(())
    }

    fn deliver_now(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let error = |channel: &str, error: std::io::Error| ChannelError {
            channel: channel.to_string(),
            detail: error.to_string(),
            pause: false,
        };
        let mut files = self.files.lock().map_err(|_| ChannelError {
            channel: "outbox".into(),
            detail: "the outbox lock was poisoned".into(),
            pause: false,
        })?;
        let mut answers = Vec::with_capacity(messages.len());
        // Each channel's new lines and their keys, channels in order of first appearance.
        let mut buffers: Vec<(&str, Vec<u8>, HashSet<&str>)> = Vec::new();
        for message in messages {
            if !files.contains_key(&message.channel) {
                let opened = self
                    .open(&message.channel)
                    .map_err(|e| error(&message.channel, e))?;
                files.insert(message.channel.clone(), opened);
            }
            let known = files
                .get(&message.channel)
                .is_some_and(|file| file.keys.contains(&message.key));
            let index = match buffers
                .iter()
                .position(|(channel, _, _)| *channel == message.channel)
            {
                Some(index) => index,
                None => {
                    buffers.push((message.channel.as_str(), Vec::new(), HashSet::new()));
                    buffers.len() - 1
                }
            };
            let (_, buffer, keys) = &mut buffers[index];
            if known || keys.contains(message.key.as_str()) {
                answers.push(Delivery::AlreadySent);
                continue;
            }
            serde_json::to_writer(&mut *buffer, message).map_err(|e| ChannelError {
                channel: message.channel.clone(),
                detail: e.to_string(),
                pause: false,
            })?;
            buffer.push(b'\n');
            keys.insert(message.key.as_str());
            answers.push(Delivery::Sent);
        }
        // Written channel by channel; on the first failure every file touched is cut back.
        let mut touched: Vec<&str> = Vec::new();
        let mut failed = None;
        for (channel, buffer, _) in &buffers {
            if buffer.is_empty() {
                continue;
            }
            let Some(file) = files.get_mut(*channel) else {
                continue;
            };
            touched.push(channel);
            if let Err(e) = self.append(&mut file.file, buffer) {
                failed = Some(error(channel, e));
                break;
            }
        }
        if let Some(failed) = failed {
            for channel in touched {
                let undone = match files.get(channel) {
                    Some(file) => self.cut_back(&file.file, file.len),
                    None => Ok(()),
                };
                if let Err(undo) = undone {
                    // The file's tail is unknown: forget the file; the next delivery reads it
                    // back and learns which of these messages it holds.
                    tracing::error!(
                        "outbox: channel {channel}: a failed batch could not be undone ({undo}); the file will be read back before the next delivery"
                    );
                    files.remove(channel);
                }
            }
            return Err(failed);
        }
        for (channel, buffer, keys) in buffers {
            if let Some(file) = files.get_mut(channel) {
                file.len += buffer.len() as u64;
                file.keys.extend(keys.into_iter().map(str::to_string));
            }
        }
        drop(files);
        if let Err(error) = self.print_console(messages, &answers) {
            // The messages are in the file, which is the delivery; the print is a courtesy.
            tracing::warn!("outbox: {error}; the messages are in the file");
        }
        Ok(answers)
    }

    fn print_console(
        &self,
        messages: &[Message],
        answers: &[Delivery],
    ) -> Result<(), ChannelError> {
        let Some(console) = &self.console else {
            return Ok(());
        };
        let mut lines = Vec::new();
        let mut channel = None;
        for (message, answer) in messages.iter().zip(answers) {
            if message.kind == ChannelKind::Console
                && message.channel != STAFF_CHANNEL
                && *answer == Delivery::Sent
            {
                serde_json::to_writer(&mut lines, message).map_err(|e| ChannelError {
                    channel: message.channel.clone(),
                    detail: e.to_string(),
                    pause: false,
                })?;
                lines.push(b'\n');
                channel.get_or_insert(message.channel.as_str());
            }
        }
        let Some(channel) = channel else {
            return Ok(());
        };
        let failed = |detail: String| ChannelError {
            channel: channel.to_string(),
            detail,
            pause: false,
        };
        let mut out = console
            .lock()
            .map_err(|_| failed("the console lock was poisoned".into()))?;
        out.write_all(&lines)
            .and_then(|()| out.flush())
            .map_err(|e| failed(e.to_string()))
    }
}

/// The channel name of messages to the campaign's staff (reminders, notices): in the file
/// outbox, never printed as a customer message.
const STAFF_CHANNEL: &str = "staff";

#[async_trait::async_trait]
impl Channel for FileOutbox {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        // Small appends to a local file: done in place rather than on a blocking thread.
        self.deliver_now(messages)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use battleplan_core::outreach::port::{Delivery, Message};
    use battleplan_core::plan::model::ChannelKind;
    use chrono::{DateTime, Utc};

    use super::FileOutbox;

    fn message(channel: &str, kind: ChannelKind, key: &str) -> Message {
        Message {
            key: key.to_string(),
            campaign: "c".into(),
            channel: channel.into(),
            kind,
            to: "c-1".into(),
            address: vec!["c-1@example.com".into()],
            from: None,
            subject: Some("Hello".into()),
            body: "Body".into(),
            template: None,
            template_version: None,
            reach_out: None,
            attempt: Some(1),
            at: DateTime::<Utc>::from_timestamp(1_788_000_000, 0).unwrap(),
            document: None,
        }
    }

    fn lines(dir: &std::path::Path, channel: &str) -> Vec<String> {
        std::fs::read_to_string(FileOutbox::path_of(dir, channel))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_key_handed_over_again_is_answered_already_sent_and_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::new(dir.path()).without_sync();
        let first = [message("mail", ChannelKind::Mail, "k/1")];
        assert_eq!(block_on(&outbox, &first), vec![Delivery::Sent]);
        // Twice in one batch, and once more in the next: one line.
        let again = [
            message("mail", ChannelKind::Mail, "k/1"),
            message("mail", ChannelKind::Mail, "k/2"),
            message("mail", ChannelKind::Mail, "k/2"),
        ];
        assert_eq!(
            block_on(&outbox, &again),
            vec![Delivery::AlreadySent, Delivery::Sent, Delivery::AlreadySent]
        );
        // A new outbox on the same directory (a restart) reads the keys back.
        let restarted = FileOutbox::new(dir.path()).without_sync();
        assert_eq!(block_on(&restarted, &first), vec![Delivery::AlreadySent]);
        assert_eq!(lines(dir.path(), "mail").len(), 2);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_removed_and_its_message_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::new(dir.path()).without_sync();
        block_on(&outbox, &[message("mail", ChannelKind::Mail, "k/1")]);
        drop(outbox);
        let whole = serde_json::to_string(&message("mail", ChannelKind::Mail, "k/2")).unwrap();
        let path = FileOutbox::path_of(dir.path(), "mail");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&whole[..whole.len() / 2]);
        std::fs::write(&path, text).unwrap();
        let restarted = FileOutbox::new(dir.path()).without_sync();
        assert_eq!(
            block_on(&restarted, &[message("mail", ChannelKind::Mail, "k/2")]),
            vec![Delivery::Sent]
        );
        let written = lines(dir.path(), "mail");
        assert_eq!(written.len(), 2);
        assert_eq!(written[1], whole);
    }

    #[test]
    fn console_channels_are_printed_once_each_and_kept_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let printed = Shared::default();
        let outbox = FileOutbox::new(dir.path())
            .without_sync()
            .with_console(Box::new(printed.clone()));
        let batch = [
            message("desk", ChannelKind::Console, "k/1"),
            message("mail", ChannelKind::Mail, "k/2"),
            message("staff", ChannelKind::Console, "k/3"),
        ];
        block_on(&outbox, &batch);
        block_on(&outbox, &batch[..1]);
        let printed = String::from_utf8(printed.0.lock().unwrap().clone()).unwrap();
        let printed: Vec<&str> = printed.lines().collect();
        assert_eq!(printed.len(), 1, "{printed:?}");
        assert_eq!(printed[0], lines(dir.path(), "desk")[0]);
        assert_eq!(lines(dir.path(), "staff").len(), 1);
    }

    fn block_on(outbox: &FileOutbox, messages: &[Message]) -> Vec<Delivery> {
        outbox.deliver_now(messages).unwrap()
    }

    /// Injected faults without the environment: the calls to fail, per site, counted from when
    /// each was armed.
    #[derive(Clone, Default)]
    struct Script(Arc<Mutex<Vec<(String, u64, u64)>>>);

    impl Script {
        /// Fails the `n`th call at `site` from now on (and only that one); `n = 0` only counts.
        fn fail(&self, site: &str, n: u64) {
            self.0.lock().unwrap().push((site.to_string(), n, 0));
        }

        fn source(&self) -> Box<super::Faults> {
            let script = self.clone();
            Box::new(move |site: &str| {
                let mut fail = false;
                for (armed, at, calls) in script.0.lock().unwrap().iter_mut() {
                    if armed == site {
                        *calls += 1;
                        fail |= *calls == *at;
                    }
                }
                if fail {
                    Err(crate::fault::disk_full())
                } else {
                    Ok(())
                }
            })
        }
    }

    /// Pieces of 100 bytes: a message of ~300 bytes takes several writes, so a fault lands
    /// between lines and inside them.
    fn scripted(dir: &std::path::Path, script: &Script) -> FileOutbox {
        FileOutbox::new(dir).with_faults(script.source(), 100)
    }

    fn batch(channel: &str, keys: std::ops::Range<u32>) -> Vec<Message> {
        keys.map(|k| message(channel, ChannelKind::Mail, &format!("k/{k}")))
            .collect()
    }

    /// Each key's number of lines, over every channel file given.
    fn keys_in(
        dir: &std::path::Path,
        channels: &[&str],
    ) -> std::collections::BTreeMap<String, usize> {
        let mut keys = std::collections::BTreeMap::new();
        for channel in channels {
            for line in lines(dir, channel) {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                *keys
                    .entry(value["key"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
        keys
    }

    #[test]
    fn a_batch_whose_write_fails_at_any_point_is_undone_and_then_written_once() {
        // The nth write of the batch fails, for every n until one beyond the batch's writes.
        let mut n = 0;
        loop {
            n += 1;
            let dir = tempfile::tempdir().unwrap();
            let script = Script::default();
            let outbox = scripted(dir.path(), &script);
            block_on(&outbox, &batch("mail", 0..1));
            let before = std::fs::read(FileOutbox::path_of(dir.path(), "mail")).unwrap();
            script.fail("outbox.write", n);
            if outbox.deliver_now(&batch("mail", 0..7)).is_ok() {
                break;
            }
            assert_eq!(
                std::fs::read(FileOutbox::path_of(dir.path(), "mail")).unwrap(),
                before,
                "write {n}: the file is not as it was before the batch"
            );
            // The same outbox, handed the batch again: the keys of the undone lines are not
            // remembered, so each is written now, once.
            let again = block_on(&outbox, &batch("mail", 0..7));
            assert_eq!(again[0], Delivery::AlreadySent);
            assert!(
                again[1..].iter().all(|d| *d == Delivery::Sent),
                "write {n}: {again:?}"
            );
            let keys = keys_in(dir.path(), &["mail"]);
            assert_eq!(keys.len(), 7, "write {n}");
            assert!(
                keys.values().all(|lines| *lines == 1),
                "write {n}: {keys:?}"
            );
        }
        assert!(n > 10, "the batch took only {} writes", n - 1);
    }

    #[test]
    fn a_failed_sync_is_undone_too() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::default();
        let outbox = scripted(dir.path(), &script);
        block_on(&outbox, &batch("mail", 0..2));
        script.fail("outbox.sync", 1);
        assert!(outbox.deliver_now(&batch("mail", 2..5)).is_err());
        assert_eq!(lines(dir.path(), "mail").len(), 2);
        assert_eq!(
            block_on(&outbox, &batch("mail", 2..5)),
            vec![Delivery::Sent; 3]
        );
        assert_eq!(keys_in(dir.path(), &["mail"]).len(), 5);
        assert_eq!(lines(dir.path(), "mail").len(), 5);
    }

    #[test]
    fn a_failure_on_one_channel_undoes_the_batch_on_every_channel() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::default();
        let outbox = scripted(dir.path(), &script);
        let mut mixed = batch("mail", 0..3);
        mixed.extend(batch("desk", 3..6));
        // Mail's pieces are written first, then desk's: desk's first write fails.
        let mail_writes = {
            let counted = Script::default();
            counted.fail("outbox.write", 0);
            let scratch = tempfile::tempdir().unwrap();
            block_on(&scripted(scratch.path(), &counted), &mixed[..3]);
            let calls = counted.0.lock().unwrap()[0].2;
            calls
        };
        script.fail("outbox.write", mail_writes + 1);
        assert!(outbox.deliver_now(&mixed).is_err());
        assert!(keys_in(dir.path(), &["mail", "desk"]).is_empty());
        assert_eq!(block_on(&outbox, &mixed), vec![Delivery::Sent; 6]);
        let keys = keys_in(dir.path(), &["mail", "desk"]);
        assert_eq!(keys.len(), 6);
        assert!(keys.values().all(|lines| *lines == 1), "{keys:?}");
    }

    #[test]
    fn when_the_undo_fails_too_the_file_is_read_back_and_what_it_holds_is_not_written_again() {
        let total = serde_json::to_vec(&batch("mail", 0..6)).unwrap().len() as u64;
        let mut torn = 0;
        for n in 2..=total.div_ceil(100) {
            let dir = tempfile::tempdir().unwrap();
            let script = Script::default();
            let outbox = scripted(dir.path(), &script);
            // The nth write of the batch fails, and so does the truncation that would undo it.
            script.fail("outbox.write", n);
            script.fail("outbox.write", n + 1);
            assert!(outbox.deliver_now(&batch("mail", 0..6)).is_err());
            // Part of the batch is left in the file, perhaps with a torn last line.
            let text = std::fs::read_to_string(FileOutbox::path_of(dir.path(), "mail")).unwrap();
            torn += usize::from(!text.ends_with('\n'));
            let left: Vec<Delivery> = (0..6)
                .map(|k| {
                    let line = serde_json::to_string(&batch("mail", k..k + 1)[0]).unwrap() + "\n";
                    if text.contains(&line) {
                        Delivery::AlreadySent
                    } else {
                        Delivery::Sent
                    }
                })
                .collect();
            // Handed over again: the file is read back, its torn line cut off, and exactly the
            // messages whose whole line is there are answered as already sent.
            assert_eq!(block_on(&outbox, &batch("mail", 0..6)), left, "write {n}");
            let keys = keys_in(dir.path(), &["mail"]);
            assert_eq!(keys.len(), 6, "write {n}");
            assert!(
                keys.values().all(|lines| *lines == 1),
                "write {n}: {keys:?}"
            );
        }
        assert!(torn > 0, "no fault tore a line");
    }

    #[test]
    fn a_file_that_cannot_be_created_fails_the_batch_and_nothing_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::default();
        let outbox = scripted(dir.path(), &script);
        script.fail("outbox.create", 1);
        assert!(outbox.deliver_now(&batch("mail", 0..3)).is_err());
        assert!(lines(dir.path(), "mail").is_empty());
        assert_eq!(
            block_on(&outbox, &batch("mail", 0..3)),
            vec![Delivery::Sent; 3]
        );
        assert_eq!(lines(dir.path(), "mail").len(), 3);
    }

    #[test]
    fn the_directory_and_files_are_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("outbox");
        let outbox = FileOutbox::new(&dir).without_sync();
        block_on(&outbox, &batch("mail", 0..1));
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&FileOutbox::path_of(&dir, "mail")), 0o600);
    }
}
