//! The storage's own latency, measured beside the ack latency run: every commit central
//! acknowledges waits for PostgreSQL's WAL flush, so a second in which the disk stalls is a
//! second of slow acks whatever central does. A thread writes 8 KiB and `fdatasync`s it every
//! 20 ms in a file on the file system of PostgreSQL's data directory, and the run reports how
//! long those took (README, "Ingest", fifth session: on the development machine the runs whose
//! ack p99 missed were those with such stalls).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pages::percentile;

const WRITE: [u8; 8192] = [0x5a; 8192];
const EVERY: Duration = Duration::from_millis(20);
/// The probe file cycles over this many blocks (8 MiB), so it stays small however long it runs.
const BLOCKS: u64 = 1024;
/// A flush slower than this in a second marks the second as a stall.
const STALL: Duration = Duration::from_millis(50);

/// A running probe; [`StorageProbe::finish`] stops it and summarises.
pub(crate) struct StorageProbe {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<Vec<(Duration, Duration)>>>,
}

impl StorageProbe {
    /// Starts probing in `dir` (a file of its own, removed by [`StorageProbe::finish`]).
    pub(crate) fn start(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(format!("fleet-bench-fsync-probe-{}", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("storage-probe".into())
            .spawn({
                let stop = stop.clone();
                move || probe(file, &stop)
            })?;
        Ok(Self { path, stop, thread })
    }

    /// Stops the probe, removes its file and returns what it saw.
    pub(crate) fn finish(self) -> serde_json::Value {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join();
        let _ = std::fs::remove_file(&self.path);
        match samples {
            Ok(Ok(samples)) if !samples.is_empty() => summarise(&samples),
            Ok(Ok(_)) => serde_json::json!({ "not_run": "no sample taken" }),
            Ok(Err(error)) => serde_json::json!({ "not_run": error.to_string() }),
            Err(_) => serde_json::json!({ "not_run": "the probe's thread panicked" }),
        }
    }
}

/// (when, since the start; how long the flush took) for each write until `stop`, at least one.
fn probe(mut file: File, stop: &AtomicBool) -> std::io::Result<Vec<(Duration, Duration)>> {
    let began = Instant::now();
    let mut samples = Vec::new();
    let mut block = 0;
    loop {
        let at = began.elapsed();
        file.seek(SeekFrom::Start(block * WRITE.len() as u64))?;
        file.write_all(&WRITE)?;
        file.sync_data()?;
        samples.push((at, began.elapsed() - at));
        if stop.load(Ordering::Relaxed) {
            return Ok(samples);
        }
        block = (block + 1) % BLOCKS;
        std::thread::sleep(EVERY);
    }
}

fn summarise(samples: &[(Duration, Duration)]) -> serde_json::Value {
    let mut took: Vec<Duration> = samples.iter().map(|(_, took)| *took).collect();
    took.sort();
    let mut stalled: Vec<u64> = samples
        .iter()
        .filter(|(_, took)| *took > STALL)
        .map(|(at, _)| at.as_secs())
        .collect();
    stalled.dedup();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    serde_json::json!({
        "flushes": took.len(),
        "p50_ms": ms(percentile(&took, 0.50)),
        "p99_ms": ms(percentile(&took, 0.99)),
        "max_ms": ms(*took.last().expect("not empty")),
        "seconds_with_a_flush_over_50_ms": stalled.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_counts_once_however_many_slow_flushes_it_holds() {
        let ms = Duration::from_millis;
        let samples = [
            (ms(100), ms(2)),
            (ms(1_100), ms(60)),
            (ms(1_500), ms(70)),
            (ms(2_100), ms(3)),
            (ms(3_900), ms(51)),
        ];
        let summary = summarise(&samples);
        assert_eq!(summary["seconds_with_a_flush_over_50_ms"], 2);
        assert_eq!(summary["max_ms"], 70.0);
        assert_eq!(summary["flushes"], 5);
    }

    #[test]
    fn the_probe_flushes_in_the_directory_and_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let summary = StorageProbe::start(&dir).unwrap().finish();
        assert!(summary["flushes"].as_u64().unwrap() >= 1, "{summary}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
