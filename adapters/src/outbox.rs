//! The file outbox: one JSON line per message, one file per channel (`<dir>/<channel>.jsonl`),
//! for a test or a person to read. It remembers every key it holds (read back when a file is
//! first used), so a message handed over again after a crash is answered `AlreadySent` and
//! written once: the file has exactly one line per idempotency key. A line cut short by a crash
//! mid-write is removed when the file is opened again (it was never answered as sent).
//!
//! The console: messages of a plan channel of kind `console` are also printed, one JSON line
//! each, once they are in the file (`FileOutbox::with_console`). The file's keys decide what is
//! printed, so a message handed over again is not printed again; a crash between the file and
//! the print leaves the message in the file only.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message};
use battleplan_core::plan::model::ChannelKind;

struct ChannelFile {
    file: File,
    keys: HashSet<String>,
}

/// One JSON-lines file per channel under a directory.
pub struct FileOutbox {
    dir: PathBuf,
    files: Mutex<HashMap<String, ChannelFile>>,
    /// `fdatasync` after each batch, so what was answered `Sent` survives a power cut too.
    sync: bool,
    /// Where messages of `console` channels are printed, if anywhere.
    console: Option<Mutex<Box<dyn Write + Send>>>,
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
        }
    }

    /// Also prints each new message of a `console` channel to `out` (the daemon: standard
    /// output), after it is in the file.
    pub fn with_console(mut self, out: Box<dyn Write + Send>) -> FileOutbox {
        self.console = Some(Mutex::new(out));
        self
    }

    /// Without `fdatasync` (benchmarks of what the log adds, tests).
    pub fn without_sync(mut self) -> FileOutbox {
        self.sync = false;
        self
    }

    pub fn path_of(dir: &Path, channel: &str) -> PathBuf {
        dir.join(format!("{channel}.jsonl"))
    }

    fn open(&self, channel: &str) -> std::io::Result<ChannelFile> {
        std::fs::create_dir_all(&self.dir)?;
        let path = Self::path_of(&self.dir, channel);
        let mut file = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .open(&path)?;
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
            // A line cut short by a crash: never answered as sent; remove it.
            file.set_len(whole)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok(ChannelFile { file, keys })
    }

    fn deliver_now(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let error = |channel: &str, error: std::io::Error| ChannelError {
            channel: channel.to_string(),
            detail: error.to_string(),
        };
        let mut files = self.files.lock().map_err(|_| ChannelError {
            channel: "outbox".into(),
            detail: "the outbox lock was poisoned".into(),
        })?;
        let mut answers = Vec::with_capacity(messages.len());
        let mut buffers: HashMap<&str, (Vec<u8>, Vec<&str>)> = HashMap::new();
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
            let (buffer, keys) = buffers.entry(message.channel.as_str()).or_default();
            if known || keys.contains(&message.key.as_str()) {
                answers.push(Delivery::AlreadySent);
                continue;
            }
            serde_json::to_writer(&mut *buffer, message).map_err(|e| ChannelError {
                channel: message.channel.clone(),
                detail: e.to_string(),
            })?;
            buffer.push(b'\n');
            keys.push(message.key.as_str());
            answers.push(Delivery::Sent);
        }
        for (channel, (buffer, keys)) in buffers {
            let Some(file) = files.get_mut(channel) else {
                continue;
            };
            file.file
                .write_all(&buffer)
                .map_err(|e| error(channel, e))?;
            if self.sync {
                file.file.sync_data().map_err(|e| error(channel, e))?;
            }
            file.keys.extend(keys.into_iter().map(str::to_string));
        }
        drop(files);
        self.print_console(messages, &answers)?;
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
}
