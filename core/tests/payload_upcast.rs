//! Payload evolution: a payload written by an older build (a fixture kept as it was written)
//! still reads, through the type's upcast steps; a newer one is refused, never misread.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_core::event::upcast::{self, EventPayload, PayloadError};
use battleplan_core::event::{
    CommandId, EventId, Metadata, Position, RecordedEvent, StreamId, StreamVersion,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version 1 was `{ by, why }`; version 2 renamed `why` to `reason` and added `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TestPaused {
    by: String,
    reason: String,
    #[serde(default)]
    until: Option<String>,
}

impl EventPayload for TestPaused {
    const EVENT_TYPE: &'static str = "TestPaused";
    const SCHEMA_VERSION: u16 = 2;

    fn upcast(
        from_version: u16,
        mut value: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        match from_version {
            1 => {
                let object = value
                    .as_object_mut()
                    .ok_or("a TestPaused payload is a map")?;
                let why = object.remove("why").ok_or("version 1 has `why`")?;
                object.insert("reason".into(), why);
                Ok(value)
            }
            other => Err(format!("no upcast from version {other}")),
        }
    }
}

fn recorded(event_type: &str, schema_version: u16, payload: Vec<u8>) -> RecordedEvent {
    RecordedEvent {
        position: Position(1),
        stream: StreamId::new("campaign-x").unwrap(),
        version: StreamVersion(1),
        event_id: EventId(Uuid::from_u128(1)),
        recorded_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        event_type: event_type.into(),
        schema_version,
        payload,
        metadata: Metadata {
            actor: "alice".into(),
            command_id: CommandId(Uuid::from_u128(2)),
            causation_id: None,
            correlation_id: None,
            reason: None,
        },
        previous_hash: [0; 32],
        hash: [0; 32],
    }
}

#[test]
fn a_version_1_payload_from_an_older_build_reads_as_version_2() {
    let fixture = include_bytes!("fixtures/test_paused_v1.msgpack").to_vec();
    let event = recorded("TestPaused", 1, fixture);
    let payload: TestPaused = upcast::decode(&event).unwrap();
    assert_eq!(
        payload,
        TestPaused {
            by: "alice".into(),
            reason: "stock problem".into(),
            until: None
        }
    );
    // And as JSON, for exports, whatever the version.
    assert_eq!(upcast::to_json(&event).unwrap()["why"], "stock problem");
}

#[test]
fn the_current_version_round_trips() {
    let payload = TestPaused {
        by: "bob".into(),
        reason: "supplier late".into(),
        until: Some("2026-09-10".into()),
    };
    let new = upcast::encode(EventId(Uuid::from_u128(5)), &payload).unwrap();
    assert_eq!(new.event_type, "TestPaused");
    assert_eq!(new.schema_version, 2);
    let event = recorded("TestPaused", 2, new.payload);
    assert_eq!(upcast::decode::<TestPaused>(&event).unwrap(), payload);
}

#[test]
fn a_newer_version_or_another_type_is_refused() {
    let new = upcast::encode(
        EventId(Uuid::from_u128(5)),
        &TestPaused {
            by: "bob".into(),
            reason: "x".into(),
            until: None,
        },
    )
    .unwrap();
    let newer = recorded("TestPaused", 3, new.payload.clone());
    assert_eq!(
        upcast::decode::<TestPaused>(&newer).unwrap_err(),
        PayloadError::NewerSchema {
            event_type: "TestPaused".into(),
            found: 3,
            supported: 2
        }
    );
    let other = recorded("CampaignResumed", 2, new.payload);
    assert!(matches!(
        upcast::decode::<TestPaused>(&other),
        Err(PayloadError::WrongType { .. })
    ));
    let garbage = recorded("TestPaused", 2, vec![0xc1]);
    assert!(matches!(
        upcast::decode::<TestPaused>(&garbage),
        Err(PayloadError::Unreadable { .. })
    ));
}
