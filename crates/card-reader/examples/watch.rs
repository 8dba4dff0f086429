//! Prints every reader change pcscd reports (a debugging aid): `cargo run -p card-reader --example watch`.
use card_reader::CardReaders;
fn main() {
    let readers = card_reader::pcsc_readers::PcscReaders::new();
    let mut watch = readers.watch().expect("watch");
    let started = std::time::Instant::now();
    loop {
        let event = watch.next_change(Some(std::time::Duration::from_secs(60)));
        println!("{:>8.3}s {event:?}", started.elapsed().as_secs_f64());
    }
}
