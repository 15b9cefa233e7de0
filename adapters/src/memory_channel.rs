//! The in-memory twin of a real channel: it takes messages as a receiving side that dedups by
//! key would (an inbox that shows one message per Message-ID, a webhook receiver that drops a
//! repeated `webhook-id`), keeps what arrived in order, and answers as it is scripted to: a
//! recipient deferred a few times, refused, or left without an answer, and whole batches that
//! fail. Tests of the dispatcher use it where a real server would make them slow; the channel
//! contract suite (`tests/channel_contract.rs`) holds it to the same promises as the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message};

/// What the twin answers for one hand-over of a message to a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// Not taken this time (a 4xx, a 5xx of a webhook, a 429).
    Defer { retry_after_ms: Option<u64> },
    /// Refused for good (a 5xx of a mail server, a 4xx of a webhook).
    Refuse(battleplan_core::outreach::port::Refusal),
    /// Taken, and no answer given (a stall after the data): it did arrive.
    NoAnswer,
}

#[derive(Debug, Default)]
struct Inner {
    /// What arrived, in order, once per key.
    arrived: Vec<Message>,
    keys: HashSet<String>,
    /// Every key handed over, at every try, in order.
    handed: Vec<String>,
    /// Answers still to give, by recipient (`Message::to`), in order.
    script: HashMap<String, VecDeque<Scripted>>,
    /// Whole batches still to fail, in order: a batch holding a message of the channel (the
    /// plan's channel id) fails with the detail, needing a person or not.
    failures: VecDeque<(String, String, bool)>,
}

/// See the module's documentation.
#[derive(Debug, Default)]
pub struct MemoryChannel {
    inner: Mutex<Inner>,
}

impl MemoryChannel {
    pub fn new() -> MemoryChannel {
        MemoryChannel::default()
    }

    /// The next hand-overs of messages to `to` are answered so, in turn; then they are taken.
    pub fn script(&self, to: &str, answers: impl IntoIterator<Item = Scripted>) {
        self.with(|inner| {
            inner
                .script
                .entry(to.to_string())
                .or_default()
                .extend(answers)
        });
    }

    /// The next batch holding a message of `channel` (the plan's channel id) fails as a whole,
    /// nothing of it taken (`pause`: a failure that needs a person, as a refused connection or
    /// refused credentials).
    pub fn fail_next_batch(&self, channel: &str, detail: &str, pause: bool) {
        self.with(|inner| {
            inner
                .failures
                .push_back((channel.to_string(), detail.to_string(), pause))
        });
    }

    /// What arrived, in order, once per key.
    pub fn arrived(&self) -> Vec<Message> {
        self.with(|inner| inner.arrived.clone())
    }

    /// Every key handed over, at every try, in order.
    pub fn handed(&self) -> Vec<String> {
        self.with(|inner| inner.handed.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A test that panicked while holding the lock left whole values behind: go on.
        let mut inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut inner)
    }
}

#[async_trait::async_trait]
impl Channel for MemoryChannel {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        self.with(|inner| {
            let fails = inner.failures.front().is_some_and(|(channel, _, _)| {
                messages.iter().any(|message| message.channel == *channel)
            });
            if let Some((channel, detail, pause)) =
                fails.then(|| inner.failures.pop_front()).flatten()
            {
                return Err(ChannelError {
                    channel,
                    detail,
                    pause,
                });
            }
            let mut answers = Vec::with_capacity(messages.len());
            for message in messages {
                inner.handed.push(message.key.clone());
                if inner.keys.contains(&message.key) {
                    answers.push(Delivery::AlreadySent);
                    continue;
                }
                let scripted = inner
                    .script
                    .get_mut(&message.to)
                    .and_then(VecDeque::pop_front);
                let answer = match scripted {
                    Some(Scripted::Defer { retry_after_ms }) => Delivery::Deferred {
                        detail: "451 4.3.0 try again later".to_string(),
                        retry_after_ms,
                    },
                    Some(Scripted::Refuse(refusal)) => Delivery::Refused {
                        refusal,
                        detail: "550 5.1.1 no such mailbox".to_string(),
                    },
                    Some(Scripted::NoAnswer) => {
                        inner.keys.insert(message.key.clone());
                        inner.arrived.push(message.clone());
                        Delivery::Unknown {
                            detail: "no answer after the data".to_string(),
                        }
                    }
                    None => {
                        inner.keys.insert(message.key.clone());
                        inner.arrived.push(message.clone());
                        Delivery::Sent
                    }
                };
                answers.push(answer);
            }
            Ok(answers)
        })
    }
}
