//! Which channel a message goes through: the mail server its plan's channel names
//! (`[channels.ID.smtp]`, `adapters::smtp`), or else the file outbox (and the console). The
//! dispatcher hands over one plan channel's messages at a time, so a batch has one route.
//!
//! A mail server's connection is made from the plan in force when its first batch comes, the
//! password read then from the variable or file the plan names (never from the plan, never
//! printed), and kept while that part of the plan stays the same. What stops a channel from
//! being made (no password where the plan says, no public address for the unsubscribe links)
//! is a failure that needs a person: the dispatcher pauses the channel and tells ops.

use std::collections::HashMap;
use std::sync::Arc;

use battleplan_adapters::smtp::{SmtpChannel, SmtpSettings, SmtpTls, UnsubscribeLinks};
use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message};
use battleplan_core::plan::model::{PasswordSource, Smtp, SmtpTlsMode};
use tokio::sync::Mutex;

use crate::kernel::runtime::Runtime;

/// See the module's documentation.
pub struct Routes {
    runtime: Runtime,
    fallback: Arc<dyn Channel>,
    /// The daemon's public address with `/api/v1`, for the unsubscribe links.
    public_url: Option<String>,
    /// Mail servers made, by campaign and channel, with the settings they were made from.
    made: Mutex<HashMap<(String, String), MailServer>>,
}

/// A mail server made, with the plan's settings it was made from.
type MailServer = (Smtp, Arc<SmtpChannel>);

impl Routes {
    pub fn new(runtime: Runtime, fallback: Arc<dyn Channel>, public_url: Option<String>) -> Routes {
        Routes {
            runtime,
            fallback,
            public_url,
            made: Mutex::new(HashMap::new()),
        }
    }

    /// The mail server of a campaign's channel, made (or kept) from the plan in force; `None`
    /// when the channel has none.
    async fn mail_server(
        &self,
        campaign: &str,
        channel: &str,
    ) -> Result<Option<Arc<SmtpChannel>>, String> {
        let plan = crate::kernel::plans::plan_in_force(&self.runtime, campaign)
            .await
            .map_err(|error| format!("the plan of {campaign}: {error}"))?;
        let Some(smtp) = plan
            .as_ref()
            .and_then(|plan| plan.channel(channel))
            .and_then(|channel| channel.smtp.clone())
        else {
            return Ok(None);
        };
        let mut made = self.made.lock().await;
        let key = (campaign.to_string(), channel.to_string());
        if let Some((settings, server)) = made.get(&key) {
            if *settings == smtp {
                return Ok(Some(server.clone()));
            }
        }
        let server = Arc::new(self.make(&smtp)?);
        made.insert(key, (smtp, server.clone()));
        Ok(Some(server))
    }

    fn make(&self, smtp: &Smtp) -> Result<SmtpChannel, String> {
        let password = match &smtp.password {
            None => None,
            Some(PasswordSource::Env(variable)) => Some(std::env::var(variable).map_err(|_| {
                format!(
                    "the mail server's password: the variable {variable} is not set for the daemon"
                )
            })?),
            Some(PasswordSource::File(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|error| {
                        format!("the mail server's password: cannot read {path}: {error}")
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
        };
        let Some(key) = self.runtime.link_key else {
            return Err("no key for the unsubscribe links".to_string());
        };
        let Some(base) = self.public_url.clone() else {
            return Err(
                "mail needs the daemon's public address for its unsubscribe links: run with --public-url URL"
                    .to_string(),
            );
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
            unsubscribe: Some(UnsubscribeLinks { base, key }),
        })
        .map_err(|error| error.to_string())
    }
}

#[async_trait::async_trait]
impl Channel for Routes {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let Some(first) = messages.first() else {
            return Ok(Vec::new());
        };
        if first.reach_out.is_none() {
            // Messages to staff: the staff outbox.
            return self.fallback.deliver(messages).await;
        }
        match self.mail_server(&first.campaign, &first.channel).await {
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
