//! Payloads and their evolution. A payload is MessagePack with field names (self-describing, so
//! a new field can be added with a default and an old reader skips what it does not know) and
//! carries its schema version in the envelope. Reading an older version runs the type's upcast
//! steps, one version at a time, on a JSON-shaped value; reading a newer one is an error, never a
//! silent misread. Payloads are JSON-representable by design: exports are JSON lines.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::envelope::{NewEvent, RecordedEvent};
use super::ids::EventId;

/// A type that is stored as an event payload.
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The event type stored in the envelope: past tense, e.g. `CampaignPaused`.
    const EVENT_TYPE: &'static str;
    /// The current shape. Bump it when the shape changes and add a step to `upcast`.
    const SCHEMA_VERSION: u16;

    /// Turns a payload of `from_version` into the shape of `from_version + 1`.
    fn upcast(from_version: u16, value: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = value;
        Err(format!(
            "{} has no upcast from version {from_version}",
            Self::EVENT_TYPE
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("expected a {expected} event, found {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("{event_type} version {found} was written by a newer battleplan (this one reads up to {supported})")]
    NewerSchema {
        event_type: String,
        found: u16,
        supported: u16,
    },
    #[error("cannot read the {event_type} payload: {detail}")]
    Unreadable { event_type: String, detail: String },
    #[error("cannot encode the {event_type} payload: {detail}")]
    Unencodable { event_type: String, detail: String },
}

/// Encodes a payload as a new event with the given id.
pub fn encode<T: EventPayload>(event_id: EventId, payload: &T) -> Result<NewEvent, PayloadError> {
    let bytes = rmp_serde::to_vec_named(payload).map_err(|error| PayloadError::Unencodable {
        event_type: T::EVENT_TYPE.to_string(),
        detail: error.to_string(),
    })?;
    Ok(NewEvent {
        event_id,
        event_type: T::EVENT_TYPE.to_string(),
        schema_version: T::SCHEMA_VERSION,
        payload: bytes,
    })
}

/// Decodes a recorded event's payload as `T`, upcasting older shapes.
pub fn decode<T: EventPayload>(event: &RecordedEvent) -> Result<T, PayloadError> {
    if event.event_type != T::EVENT_TYPE {
        return Err(PayloadError::WrongType {
            expected: T::EVENT_TYPE,
            found: event.event_type.clone(),
        });
    }
    let unreadable = |detail: String| PayloadError::Unreadable {
        event_type: event.event_type.clone(),
        detail,
    };
    if event.schema_version == T::SCHEMA_VERSION {
        return rmp_serde::from_slice(&event.payload).map_err(|e| unreadable(e.to_string()));
    }
    if event.schema_version > T::SCHEMA_VERSION {
        return Err(PayloadError::NewerSchema {
            event_type: event.event_type.clone(),
            found: event.schema_version,
            supported: T::SCHEMA_VERSION,
        });
    }
    let mut value: serde_json::Value =
        rmp_serde::from_slice(&event.payload).map_err(|e| unreadable(e.to_string()))?;
    for version in event.schema_version..T::SCHEMA_VERSION {
        value = T::upcast(version, value).map_err(unreadable)?;
    }
    serde_json::from_value(value).map_err(|e| unreadable(e.to_string()))
}

/// The payload as JSON, for exports and for people; any schema version.
pub fn to_json(event: &RecordedEvent) -> Result<serde_json::Value, PayloadError> {
    rmp_serde::from_slice(&event.payload).map_err(|error| PayloadError::Unreadable {
        event_type: event.event_type.clone(),
        detail: error.to_string(),
    })
}

/// Declares the payloads of one kind of stream (schema version 1 each) and the enum of them, with
/// `event_type`, `encode`, `decode` (`None` for events of other kinds), `holds` (whether an event
/// type is one of these, without decoding) and `to_json`.
macro_rules! event_enum {
    ($(#[$meta:meta])* $enum:ident { $($name:ident),* $(,)? }) => {
        $(impl $crate::event::upcast::EventPayload for $name {
            const EVENT_TYPE: &'static str = stringify!($name);
            const SCHEMA_VERSION: u16 = 1;
        })*

        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $enum {
            $($name($name),)*
        }

        impl $enum {
            pub fn event_type(&self) -> &'static str {
                use $crate::event::upcast::EventPayload as _;
                match self {
                    $($enum::$name(_) => $name::EVENT_TYPE,)*
                }
            }

            pub fn encode(
                &self,
                event_id: $crate::event::EventId,
            ) -> Result<$crate::event::NewEvent, $crate::event::upcast::PayloadError> {
                match self {
                    $($enum::$name(payload) => $crate::event::upcast::encode(event_id, payload),)*
                }
            }

            /// The event a recorded event holds; `None` for other kinds of event.
            pub fn decode(
                event: &$crate::event::RecordedEvent,
            ) -> Result<Option<$enum>, $crate::event::upcast::PayloadError> {
                use $crate::event::upcast::EventPayload as _;
                $(if event.event_type == $name::EVENT_TYPE {
                    return $crate::event::upcast::decode::<$name>(event).map(|p| Some($enum::$name(p)));
                })*
                Ok(None)
            }

            /// Whether an event type is one of these, without decoding it.
            pub fn holds(event_type: &str) -> bool {
                use $crate::event::upcast::EventPayload as _;
                $(event_type == $name::EVENT_TYPE ||)* false
            }

            /// The payload as JSON, for people and exports.
            pub fn to_json(&self) -> serde_json::Value {
                match self {
                    $($enum::$name(payload) => serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),)*
                }
            }
        }
    };
}

pub(crate) use event_enum;
