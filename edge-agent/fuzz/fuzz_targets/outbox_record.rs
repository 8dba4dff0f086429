//! The outbox record decoder (`outbox::open_record`), given records from the fuzz input. The
//! first 8 bytes are the row's sequence, the rest the plaintext an agent would have sealed.
//! A sealed record opens exactly when its plaintext decodes as an event at that sequence; the
//! same record at another sequence, in another stream, with any byte changed or cut short,
//! never opens; the raw input taken as a record (unsealed) never opens; and a record that opens
//! converts to a domain event or is refused with a field named, never a panic.
#![no_main]

use edge_agent::outbox::{OutboxKey, open_record};
use libfuzzer_sys::fuzz_target;
use onshi_domain::events::FleetEvent;
use prost::Message;
use proto::fleet::v1 as pb;
use uuid::Uuid;

const STREAM: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const OTHER_STREAM: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);

fuzz_target!(|data: &[u8]| {
    let Some((head, plain)) = data.split_first_chunk::<8>() else {
        return;
    };
    let sequence = u64::from_be_bytes(*head);
    let key = OutboxKey::from_bytes(&[0x42; 32]);
    let record = key.seal(STREAM, sequence, plain);

    let expected = pb::Event::decode(plain)
        .ok()
        .filter(|event| event.sequence == sequence);
    let opened = open_record(&key, STREAM, sequence, &record);
    assert_eq!(opened, expected);

    assert_eq!(
        open_record(&key, STREAM, sequence.wrapping_add(1), &record),
        None
    );
    assert_eq!(open_record(&key, OTHER_STREAM, sequence, &record), None);
    let other_key = OutboxKey::from_bytes(&[0x43; 32]);
    assert_eq!(open_record(&other_key, STREAM, sequence, &record), None);
    let mut damaged = record.clone();
    let at = usize::from(head[7]) % damaged.len();
    damaged[at] ^= 0x01;
    assert_eq!(open_record(&key, STREAM, sequence, &damaged), None);
    assert_eq!(
        open_record(&key, STREAM, sequence, &record[..record.len() - 1]),
        None
    );
    assert_eq!(open_record(&key, STREAM, sequence, data), None);

    if let Some(event) = opened {
        match FleetEvent::try_from(event) {
            Ok(domain) => assert_eq!(domain.sequence, sequence),
            Err(error) => assert!(!error.field.is_empty()),
        }
    }
});
