//! Arbitrary bytes decoded as the uplink's protobuf messages and converted to domain types, as
//! central does with an agent's events and inventory and the agent with central's access rules.
//! The first byte picks the message. No panic; a refusal names its field; a value that converts
//! goes back to protobuf and converts again to the same value, through the wire bytes too; an
//! event's JSON form (what central stores) reads back the same, and its chain encoding does not
//! depend on sub-microsecond time (central rebuilds it from PostgreSQL's microseconds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::access::AccessRules;
use onshi_domain::events::{FleetEvent, Inventory};
use prost::Message;
use proto::convert::ConvertError;
use proto::fleet::v1 as pb;

fn refused(error: ConvertError) {
    assert!(!error.field.is_empty());
    let _ = error.to_string();
}

/// Domain → protobuf → wire → protobuf → domain gives the same value.
fn back_and_forth<P, D>(value: &D)
where
    P: Message + Default + for<'a> From<&'a D>,
    D: TryFrom<P, Error = ConvertError> + PartialEq + std::fmt::Debug,
{
    let wire = P::from(value).encode_to_vec();
    let decoded = P::decode(wire.as_slice()).expect("our own encoding decodes");
    match D::try_from(decoded) {
        Ok(again) => assert_eq!(&again, value),
        Err(error) => panic!("a converted value does not convert back: {error}"),
    }
}

fn event(bytes: &[u8]) {
    let Ok(wire) = pb::Event::decode(bytes) else {
        return;
    };
    match FleetEvent::try_from(wire) {
        Ok(event) => {
            back_and_forth::<pb::Event, FleetEvent>(&event);
            let json = serde_json::to_string(&event).expect("an event serialises");
            let stored: FleetEvent = serde_json::from_str(&json).expect("its JSON reads back");
            assert_eq!(stored, event);
            let mut micros = event.clone();
            micros.occurred_at = micros
                .occurred_at
                .replace_nanosecond(micros.occurred_at.nanosecond() / 1_000 * 1_000)
                .expect("whole microseconds are a valid time");
            assert_eq!(
                proto::chain::canonical(&micros),
                proto::chain::canonical(&event)
            );
        }
        Err(error) => refused(error),
    }
}

fn inventory(bytes: &[u8]) {
    let Ok(wire) = pb::InventorySnapshot::decode(bytes) else {
        return;
    };
    match Inventory::try_from(wire) {
        Ok(inventory) => back_and_forth::<pb::InventorySnapshot, Inventory>(&inventory),
        Err(error) => refused(error),
    }
}

fn access_rules(bytes: &[u8]) {
    let Ok(wire) = pb::AccessRules::decode(bytes) else {
        return;
    };
    match AccessRules::try_from(wire) {
        Ok(rules) => back_and_forth::<pb::AccessRules, AccessRules>(&rules),
        Err(error) => refused(error),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => event(bytes),
        1 => inventory(bytes),
        _ => access_rules(bytes),
    }
});
