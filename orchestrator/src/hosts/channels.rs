//! Which channel a message goes through: the mail server its plan's channel names
//! (`[channels.ID.smtp]`, `adapters::smtp`), the receiver it POSTs to (`[channels.ID.webhook]`,
//! `adapters::webhook`), or else the file outbox (and the console). The
//! dispatcher hands over one plan channel's messages at a time, so a batch has one route.
//!
//! A channel is made from the plan in force when its first batch comes, the password or
//! signing secret read then from the variable or file the plan names (never from the plan,
//! never printed), and kept while that part of the plan stays the same. Each channel keeps its
//! own connections and answers, so a failing webhook never holds up mail. What stops a channel
//! from being made (no secret where the plan says, no public address for the unsubscribe links)
//! is a failure that needs a person: the dispatcher pauses the channel and tells ops.

use std::collections::HashMap;
use std::sync::Arc;

use battleplan_adapters::robot::{RobotChannel, RobotKind, RobotSettings};
use battleplan_adapters::smtp::{SmtpChannel, SmtpSettings, SmtpTls, UnsubscribeLinks};
use battleplan_adapters::webhook::{parse_secret, WebhookChannel, WebhookSettings};
use battleplan_core::outreach::links;
use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message};
use battleplan_core::plan::model::{Robot, SecretSource, Smtp, SmtpTlsMode, Webhook};
use battleplan_core::plan::raw::RobotKindName;
use tokio::sync::Mutex;

use crate::kernel::runtime::Runtime;

/// See the module's documentation.
pub struct Routes {
    runtime: Runtime,
    fallback: Arc<dyn Channel>,
    /// The daemon's public address with `/api/v1`, for the unsubscribe links.
    public_url: Option<String>,
    /// Channels made, by campaign and channel, with the plan's settings they were made from.
    made: Mutex<HashMap<(String, String), Made>>,
    /// Whether mail must carry unsubscribe links (the daemon); a test message from a process
    /// without the daemon's public address goes without.
    links_required: bool,
    /// Group robots by their address: roles and campaigns that share a robot share its count
    /// of messages a minute.
    robots: Mutex<HashMap<String, Arc<RobotChannel>>>,
}

/// A channel made, with the plan's settings it was made from.
type Made = (Route, Arc<dyn Channel>);

/// What a plan's channel sends through, as the plan says it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Smtp(Smtp),
    Webhook(Webhook),
    Robot(Robot),
}

impl Routes {
    pub fn new(runtime: Runtime, fallback: Arc<dyn Channel>, public_url: Option<String>) -> Routes {
        Routes {
            runtime,
            fallback,
            public_url,
            made: Mutex::new(HashMap::new()),
            links_required: true,
            robots: Mutex::new(HashMap::new()),
        }
    }

    /// Routes for test messages only (`channel test` in a process without the daemon): mail
    /// goes without unsubscribe links when no public address is known.
    pub fn for_tests(runtime: Runtime, public_url: Option<String>) -> Routes {
        Routes {
            links_required: false,
            ..Routes::new(runtime, Arc::new(Nowhere), public_url)
        }
    }

    /// The channel a campaign's plan channel sends through, made (or kept) from the plan in
    /// force; `None` when the plan names none (the file outbox).
    async fn route(
        &self,
        campaign: &str,
        channel: &str,
    ) -> Result<Option<Arc<dyn Channel>>, String> {
        Ok(self
            .route_described(campaign, channel)
            .await?
            .map(|(_, sender)| sender))
    }

    /// [`Routes::route`], with where it sends in words.
    async fn route_described(
        &self,
        campaign: &str,
        channel: &str,
    ) -> Result<Option<(String, Arc<dyn Channel>)>, String> {
        let plan = crate::kernel::plans::plan_in_force(&self.runtime, campaign)
            .await
            .map_err(|error| format!("the plan of {campaign}: {error}"))?;
        let Some(route) = plan
            .as_ref()
            .and_then(|plan| plan.channel(channel))
            .and_then(|channel| match (&channel.smtp, &channel.webhook) {
                (Some(smtp), _) => Some(Route::Smtp(smtp.clone())),
                (None, Some(webhook)) => Some(Route::Webhook(webhook.clone())),
                (None, None) => None,
            })
        else {
            return Ok(None);
        };
        self.made_route(campaign, channel, route).await.map(Some)
    }

    /// The channel of a route, made or kept.
    async fn made_route(
        &self,
        campaign: &str,
        channel: &str,
        route: Route,
    ) -> Result<(String, Arc<dyn Channel>), String> {
        let words = match &route {
            Route::Smtp(smtp) => format!("SMTP {}:{}", smtp.host, smtp.port),
            Route::Webhook(webhook) => format!("webhook {}", webhook.url),
            Route::Robot(robot) => format!("{} robot", robot_name(robot.kind)),
        };
        let mut made = self.made.lock().await;
        let key = (campaign.to_string(), channel.to_string());
        if let Some((settings, sender)) = made.get(&key) {
            if *settings == route {
                return Ok((words, sender.clone()));
            }
        }
        let sender: Arc<dyn Channel> = match &route {
            Route::Smtp(smtp) => Arc::new(self.mail(smtp)?),
            Route::Webhook(webhook) => Arc::new(hook(webhook)?),
            Route::Robot(robot) => self.robot(robot).await?,
        };
        made.insert(key, (route, sender.clone()));
        Ok((words, sender))
    }

    /// The messages with their links made tracked links, when their plan channel says so
    /// (`track_links`); `None` when it does not.
    async fn tracked(&self, messages: &[Message]) -> Result<Option<Vec<Message>>, String> {
        let Some(first) = messages.first() else {
            return Ok(None);
        };
        let plan = crate::kernel::plans::plan_in_force(&self.runtime, &first.campaign)
            .await
            .map_err(|error| format!("the plan of {}: {error}", first.campaign))?;
        let tracks = plan
            .as_ref()
            .and_then(|plan| plan.channel(&first.channel))
            .is_some_and(|channel| channel.track_links);
        if !tracks {
            return Ok(None);
        }
        let (Some(key), Some(base)) = (self.runtime.link_key, self.public_url.as_deref()) else {
            return Err(
                "tracked links need the daemon's public address: run with --public-url URL"
                    .to_string(),
            );
        };
        Ok(Some(
            messages
                .iter()
                .map(|message| Message {
                    body: links::track_links(&message.body, |target| {
                        links::click_url(base, &key, &message.key, target)
                    }),
                    ..message.clone()
                })
                .collect(),
        ))
    }

    /// The group robot at the address the plan says, shared by whoever posts to it.
    async fn robot(&self, robot: &Robot) -> Result<Arc<dyn Channel>, String> {
        let what = robot_name(robot.kind);
        let url = read_secret(&robot.url, &format!("the {what} robot's address"))?;
        let mut robots = self.robots.lock().await;
        if let Some(made) = robots.get(&url) {
            return Ok(made.clone());
        }
        let made = Arc::new(robot_channel(robot, url.clone())?);
        robots.insert(url, made.clone());
        Ok(made)
    }

    /// Messages to staff: each role's reminders to its robot when the plan gives it one (one
    /// robot message per role and hand-over), the staff outbox otherwise. A group that cannot
    /// go is deferred, the others answered as they went.
    async fn staff(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let mut groups: Vec<((String, String), Vec<usize>)> = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let key = (message.campaign.clone(), message.to.clone());
            match groups.iter_mut().find(|(group, _)| *group == key) {
                Some((_, members)) => members.push(index),
                None => groups.push((key, vec![index])),
            }
        }
        let mut answers: Vec<Option<Delivery>> = vec![None; messages.len()];
        let mut to_outbox: Vec<usize> = Vec::new();
        for ((campaign, role), indices) in groups {
            let plan = match crate::kernel::plans::plan_in_force(&self.runtime, &campaign).await {
                Ok(plan) => plan,
                Err(error) => {
                    tracing::warn!("{campaign}: the plan: {error}");
                    None
                }
            };
            let known = plan
                .as_ref()
                .and_then(|plan| plan.roles.iter().find(|known| known.id == role).cloned());
            // The plan's mail server, for a role that takes its reminders by mail.
            let server = plan.as_ref().and_then(|plan| {
                plan.channels
                    .iter()
                    .find_map(|channel| channel.smtp.clone().map(|smtp| (channel.id.clone(), smtp)))
            });
            let (route, channel, group): (Route, String, Vec<Message>) = match (
                known.as_ref().and_then(|known| known.robot.clone()),
                known.and_then(|known| known.mail),
                server,
            ) {
                (Some(robot), _, _) => (
                    Route::Robot(robot),
                    format!("robot:{role}"),
                    indices.iter().map(|&i| messages[i].clone()).collect(),
                ),
                (None, Some(address), Some((channel, smtp))) => (
                    Route::Smtp(smtp),
                    channel,
                    indices
                        .iter()
                        .map(|&i| Message {
                            address: vec![address.clone()],
                            // Written as text: escaped, as the renderer gives a template
                            // written as text; a document (a weekly report) as its HTML.
                            body: match &messages[i].document {
                                Some(document) => document.html.clone(),
                                None => escaped(&messages[i].body),
                            },
                            ..messages[i].clone()
                        })
                        .collect(),
                ),
                _ => {
                    to_outbox.extend(indices);
                    continue;
                }
            };
            let delivered = match self.made_route(&campaign, &channel, route).await {
                Ok((_, sender)) => sender.deliver(&group).await.map_err(|error| error.detail),
                Err(detail) => Err(detail),
            };
            match delivered {
                Ok(delivered) => {
                    for (index, answer) in indices.into_iter().zip(delivered) {
                        if let Delivery::Refused { detail, .. } = &answer {
                            // Refused for good (a wrong token, a keyword the robot wants):
                            // the reminder is not lost, it goes to the staff outbox.
                            tracing::warn!(
                                "{campaign}: the reminder {} for {role} was refused ({detail}); it goes to the staff outbox",
                                messages[index].key
                            );
                            to_outbox.push(index);
                        } else {
                            answers[index] = Some(answer);
                        }
                    }
                }
                Err(detail) => {
                    tracing::warn!("{campaign}: the reminders of {role}: {detail}");
                    for index in indices {
                        answers[index] = Some(Delivery::Deferred {
                            detail: detail.clone(),
                            retry_after_ms: None,
                        });
                    }
                }
            }
        }
        if !to_outbox.is_empty() {
            let group: Vec<Message> = to_outbox.iter().map(|&i| messages[i].clone()).collect();
            match self.fallback.deliver(&group).await {
                Ok(delivered) => {
                    for (index, answer) in to_outbox.into_iter().zip(delivered) {
                        answers[index] = Some(answer);
                    }
                }
                // Nothing went anywhere: the batch fails as a whole, as the outbox's would.
                Err(error) if answers.iter().all(Option::is_none) => return Err(error),
                Err(error) => {
                    for index in to_outbox {
                        answers[index] = Some(Delivery::Deferred {
                            detail: error.detail.clone(),
                            retry_after_ms: None,
                        });
                    }
                }
            }
        }
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or(Delivery::Deferred {
                    detail: "not handed over".to_string(),
                    retry_after_ms: None,
                })
            })
            .collect())
    }

    fn mail(&self, smtp: &Smtp) -> Result<SmtpChannel, String> {
        let password = smtp
            .password
            .as_ref()
            .map(|source| read_secret(source, "the mail server's password"))
            .transpose()?;
        let links = match (self.runtime.link_key, self.public_url.clone()) {
            (Some(key), Some(base)) => Some(UnsubscribeLinks { base, key }),
            _ if !self.links_required => None,
            (None, _) => return Err("no key for the unsubscribe links".to_string()),
            (Some(_), None) => {
                return Err(
                    "mail needs the daemon's public address for its unsubscribe links: run with --public-url URL"
                        .to_string(),
                )
            }
        };
        let domain = smtp
            .from
            .rsplit_once('@')
            .map(|(_, domain)| domain.trim_end_matches('>').to_string())
            .filter(|domain| !domain.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        SmtpChannel::new(SmtpSettings {
            host: smtp.host.clone(),
            port: smtp.port,
            tls: match smtp.tls {
                SmtpTlsMode::Implicit => SmtpTls::Implicit,
                SmtpTlsMode::Starttls => SmtpTls::StartTls,
                SmtpTlsMode::None => SmtpTls::None,
            },
            credentials: smtp.user.clone().zip(password),
            from: smtp.from.clone(),
            reply_to: smtp.reply_to.clone(),
            connections: usize::try_from(smtp.connections).unwrap_or(1).max(1),
            per_second: smtp.per_second,
            timeout: std::time::Duration::from_secs(smtp.timeout_seconds),
            domain,
            unsubscribe: links,
        })
        .map_err(|error| error.to_string())
    }
}

/// Text escaped for HTML.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn robot_name(kind: RobotKindName) -> &'static str {
    match kind {
        RobotKindName::Dingtalk => "DingTalk",
        RobotKindName::Wecom => "WeCom",
    }
}

/// A group robot made from the plan's settings, at its address, its secret read where the
/// plan says.
fn robot_channel(robot: &Robot, url: String) -> Result<RobotChannel, String> {
    let what = robot_name(robot.kind);
    let secret = robot
        .secret
        .as_ref()
        .map(|source| read_secret(source, &format!("the {what} robot's signing secret")))
        .transpose()?;
    RobotChannel::new(RobotSettings {
        kind: match robot.kind {
            RobotKindName::Dingtalk => RobotKind::DingTalk,
            RobotKindName::Wecom => RobotKind::WeCom,
        },
        url,
        secret,
        timeout: std::time::Duration::from_secs(10),
        per_minute: usize::try_from(robot.per_minute).unwrap_or(20),
    })
    .map_err(|error| format!("the {what} robot: {error}"))
}

/// A webhook channel made from the plan's settings, its secret read where the plan says.
fn hook(webhook: &Webhook) -> Result<WebhookChannel, String> {
    let text = read_secret(&webhook.secret, "the webhook's signing secret")?;
    let secret =
        parse_secret(&text).map_err(|error| format!("the webhook's signing secret: {error}"))?;
    WebhookChannel::new(WebhookSettings {
        url: webhook.url.clone(),
        secret,
        timeout: std::time::Duration::from_secs(webhook.timeout_seconds),
        connections: usize::try_from(webhook.connections).unwrap_or(1).max(1),
    })
    .map_err(|error| error.to_string())
}

/// A secret read from the daemon's environment or a file (a final line break dropped). The
/// error says where it looked, never what it found.
fn read_secret(source: &SecretSource, what: &str) -> Result<String, String> {
    match source {
        SecretSource::Env(variable) => std::env::var(variable)
            .map_err(|_| format!("{what}: the variable {variable} is not set for the daemon")),
        SecretSource::File(path) => Ok(std::fs::read_to_string(path)
            .map_err(|error| format!("{what}: cannot read {path}: {error}"))?
            .trim_end_matches(['\r', '\n'])
            .to_string()),
    }
}

/// The fallback of routes made for test messages: nothing goes to the file outbox.
struct Nowhere;

#[async_trait::async_trait]
impl Channel for Nowhere {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        Err(ChannelError {
            channel: messages
                .first()
                .map(|message| message.channel.clone())
                .unwrap_or_default(),
            detail: "no real channel".to_string(),
            pause: false,
        })
    }
}

#[async_trait::async_trait]
impl crate::kernel::runtime::ChannelTest for Routes {
    async fn test(&self, message: Message) -> Result<(String, Delivery), String> {
        let Some((words, sender)) = self
            .route_described(&message.campaign, &message.channel)
            .await?
        else {
            return Err(format!(
                "channel {} of {} names no mail server or webhook in the plan: its messages go to the file outbox, and there is nothing to test",
                message.channel, message.campaign
            ));
        };
        let answer = sender
            .deliver(std::slice::from_ref(&message))
            .await
            .map_err(|error| format!("{words}: {}", error.detail))?;
        match answer.into_iter().next() {
            Some(delivery) => Ok((words, delivery)),
            None => Err(format!("{words}: no answer for the message")),
        }
    }
}

#[async_trait::async_trait]
impl Channel for Routes {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let Some(first) = messages.first() else {
            return Ok(Vec::new());
        };
        if first.reach_out.is_none() {
            // Messages to staff: their roles' robots, or the staff outbox.
            return self.staff(messages).await;
        }
        let tracked;
        let messages = match self.tracked(messages).await {
            Ok(Some(rewritten)) => {
                tracked = rewritten;
                &tracked[..]
            }
            Ok(None) => messages,
            Err(detail) => {
                return Err(ChannelError {
                    channel: first.channel.clone(),
                    detail,
                    pause: true,
                })
            }
        };
        match self.route(&first.campaign, &first.channel).await {
            Ok(Some(server)) => server.deliver(messages).await,
            Ok(None) => self.fallback.deliver(messages).await,
            Err(detail) => Err(ChannelError {
                channel: first.channel.clone(),
                detail,
                pause: true,
            }),
        }
    }
}
