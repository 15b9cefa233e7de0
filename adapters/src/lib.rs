//! Implementations of the core's ports: the embedded sled event store (the default), channels
//! (file and console outboxes first), customer and outcome imports, the system clock.
//!
//! Empty until the event log lands; the crate exists now so that the workspace has its final
//! shape and `core` can never grow a dependency on storage by accident.
