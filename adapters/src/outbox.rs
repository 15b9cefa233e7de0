//! The file outbox: one JSON line per message, one file per channel (`<dir>/<channel>.jsonl`),
//! for a test or a person to read. It remembers every key it holds (read back when a file is
//! first used), so a message handed over again after a crash is answered `AlreadySent` and
//! written once: the file has exactly one line per idempotency key. A line cut short by a crash
//! mid-write is removed when the file is opened again (it was never answered as sent).
//!
//! The console channel prints each message; it keeps no keys, so a crash between printing and
//! recording can print a message twice (the window PRODUCT.md names).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message};

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
        }
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
        Ok(answers)
    }
}

#[async_trait::async_trait]
impl Channel for FileOutbox {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        // Small appends to a local file: done in place rather than on a blocking thread.
        self.deliver_now(messages)
    }
}

/// Prints each message to standard output, one line of JSON each.
#[derive(Debug, Default)]
pub struct ConsoleChannel;

#[async_trait::async_trait]
impl Channel for ConsoleChannel {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let mut out = std::io::stdout().lock();
        for message in messages {
            let line = serde_json::to_string(message).map_err(|e| ChannelError {
                channel: message.channel.clone(),
                detail: e.to_string(),
            })?;
            writeln!(out, "{line}").map_err(|e| ChannelError {
                channel: message.channel.clone(),
                detail: e.to_string(),
            })?;
        }
        Ok(vec![Delivery::Sent; messages.len()])
    }
}
