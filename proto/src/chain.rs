//! The canonical encoding of an event for its stream's hash chain (`onshi_domain::chain`).
//!
//! It is the event's own `onshi.fleet.v1.Event` encoding with `traceparent` and `chain_hash`
//! absent and `occurred_at` cut to whole microseconds. Microseconds because that is what
//! PostgreSQL keeps: central rebuilds the encoding from a stored row (the domain event read back
//! from its columns and JSON body) and must get the agent's bytes. Protobuf because proto3
//! leaves out fields at their default value: a field added to an event later does not change the
//! encoding of events recorded before it (so central must be upgraded before the agents that
//! fill a new field, as it must anyway to store it). Prost writes fields in field-number order,
//! so the encoding is a function of the event alone.

use onshi_domain::chain::{self, ChainHash};
use onshi_domain::events::FleetEvent;
use prost::Message;

use crate::fleet::v1 as pb;

/// The bytes the chain hashes for `event`.
pub fn canonical(event: &FleetEvent) -> Vec<u8> {
    let mut wire = pb::Event::from(event);
    wire.chain_hash.clear();
    wire.traceparent = None;
    if let Some(t) = wire.occurred_at.as_mut() {
        t.nanos -= t.nanos % 1_000;
    }
    wire.encode_to_vec()
}

/// `event`'s link after `previous`.
pub fn link(previous: &ChainHash, event: &FleetEvent) -> ChainHash {
    chain::link(previous, &canonical(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::events::{EventBody, EventId, Loss};
    use onshi_domain::site::{SiteCode, TerminalId};
    use time::macros::datetime;

    fn event() -> FleetEvent {
        FleetEvent {
            id: EventId::from_uuid(uuid::Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0000_0001,
            ))
            .unwrap(),
            site: SiteCode::parse("1340123455").unwrap(),
            terminal: TerminalId::parse("T1").unwrap(),
            occurred_at: datetime!(2026-12-01 10:00:00.123456789 UTC),
            sequence: 7,
            body: EventBody::Loss(Loss {
                first_sequence: 7,
                last_sequence: 7,
                reason: "test".into(),
            }),
            chain_hash: None,
        }
    }

    #[test]
    fn the_encoding_ignores_the_hash_the_trace_and_sub_microsecond_time() {
        let plain = event();
        let mut other = plain.clone();
        other.chain_hash = Some(ChainHash::GENESIS);
        other.occurred_at = datetime!(2026-12-01 10:00:00.123456 UTC);
        assert_eq!(canonical(&plain), canonical(&other));
    }

    #[test]
    fn every_field_of_the_event_changes_its_link() {
        let base = event();
        let h = link(&ChainHash::GENESIS, &base);
        let mut changed = base.clone();
        changed.sequence = 8;
        assert_ne!(link(&ChainHash::GENESIS, &changed), h);
        let mut changed = base.clone();
        changed.terminal = TerminalId::parse("T2").unwrap();
        assert_ne!(link(&ChainHash::GENESIS, &changed), h);
        let mut changed = base.clone();
        changed.occurred_at += time::Duration::MICROSECOND;
        assert_ne!(link(&ChainHash::GENESIS, &changed), h);
        let mut changed = base.clone();
        if let EventBody::Loss(l) = &mut changed.body {
            l.reason.push('!');
        }
        assert_ne!(link(&ChainHash::GENESIS, &changed), h);
        // And the previous link.
        assert_ne!(link(&h, &base), h);
    }

    #[test]
    fn the_encoding_survives_the_domain_event_going_through_json() {
        // Central stores the body as JSON and rebuilds the event from it.
        let e = event();
        let json = serde_json::to_string(&e.body).unwrap();
        let mut back = e.clone();
        back.body = serde_json::from_str(&json).unwrap();
        assert_eq!(canonical(&e), canonical(&back));
    }
}
