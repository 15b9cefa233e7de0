//! The command index: which append each command id made, so that a retry gets the first
//! outcome and writes nothing.
//!
//! One sled key per command cost about 8 µs to insert and 5 µs to look up (sled 0.34.7 copies
//! the leaf it changes; see BENCHMARKS.md), more than everything else an append costs. So the
//! ids are stored in sorted *runs*, written whole at checkpoints:
//! - `K` + run id (u64) + block number (u32) -> a block of up to `BLOCK_ENTRIES` entries, each
//!   a command id (16 bytes) and its outcome (32 bytes), sorted by id;
//! - `F` + run id -> the run's entry count, the first id of each block (its fences), and a
//!   blocked Bloom filter of its ids (about 10 bits per id, one cache line per lookup).
//!
//! The `F` values are kept in memory (about 1.3 bytes per command); a lookup probes each run's
//! filter, newest first, and reads one block only from a run whose filter says "maybe": a new
//! command id, the usual case, costs no read at all. A run's id is the first position of the
//! newest checkpoint it holds, so ids rise from the oldest run to the newest. Runs are merged as a binary counter (a new run swallows the
//! newest run while that one is no larger) up to `MAX_MERGED_ENTRIES`, so there are about
//! log2(commands / commands per checkpoint) runs, plus one per `MAX_MERGED_ENTRIES` beyond.
//! The commands since the last checkpoint are in the write-ahead log's in-memory tail.

use battleplan_core::event::append::{outcome_from_bytes, outcome_to_bytes};
use battleplan_core::event::{AppendOutcome, CommandId, Position, StoreError, StoreResult};

use super::{corrupt, layout, sled_error, u64_of};

pub const BLOCKS: u8 = b'K';
pub const FILTERS: u8 = b'F';

const ENTRY_BYTES: usize = 48;
/// 48 KiB blocks: well below sled's threshold for a value in a file of its own.
const BLOCK_ENTRIES: usize = 1024;
/// Runs stop merging at this size, so that a merge rewrites at most ~48 MiB.
const MAX_MERGED_ENTRIES: u64 = 1 << 20;
const FILTER_BITS_PER_ENTRY: u64 = 10;
const FILTER_BLOCK_WORDS: usize = 8;
const FILTER_PROBES: u32 = 7;

/// A command id and the outcome it recorded, as stored.
pub type Entry = ([u8; 16], [u8; 32]);

pub fn entry(command: &CommandId, outcome: &AppendOutcome) -> Entry {
    (*command.0.as_bytes(), outcome_to_bytes(outcome))
}

fn block_key(run: u64, block: u32) -> [u8; 13] {
    let mut key = [BLOCKS; 13];
    key[1..9].copy_from_slice(&run.to_be_bytes());
    key[9..].copy_from_slice(&block.to_be_bytes());
    key
}

fn filter_key(run: u64) -> [u8; 9] {
    let mut key = [FILTERS; 9];
    key[1..].copy_from_slice(&run.to_be_bytes());
    key
}

fn mix(mut value: u64) -> u64 {
    value ^= value >> 30;
    value = value.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value ^= value >> 27;
    value = value.wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Two independent 64-bit hashes of an id (the stored filters depend on them: never change).
fn hashes(id: &[u8; 16]) -> (u64, u64) {
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&id[..8]);
    low.copy_from_slice(&id[8..]);
    let first = mix(u64::from_le_bytes(low) ^ mix(u64::from_le_bytes(high)));
    let second = mix(first ^ 0x9e37_79b9_7f4a_7c15);
    (first, second)
}

/// A blocked Bloom filter: each id sets `FILTER_PROBES` bits in one 512-bit block.
struct Filter {
    words: Vec<u64>,
}

impl Filter {
    fn with_capacity(entries: u64) -> Filter {
        let blocks = (entries * FILTER_BITS_PER_ENTRY).div_ceil(512).max(1) as usize;
        Filter {
            words: vec![0; blocks * FILTER_BLOCK_WORDS],
        }
    }

    fn bits(&self, id: &[u8; 16]) -> (usize, impl Iterator<Item = usize>) {
        let (first, second) = hashes(id);
        let blocks = (self.words.len() / FILTER_BLOCK_WORDS) as u128;
        let block = ((u128::from(first) * blocks) >> 64) as usize;
        let bits = (0..FILTER_PROBES).map(move |probe| ((second >> (probe * 9)) & 511) as usize);
        (block * FILTER_BLOCK_WORDS, bits)
    }

    fn insert(&mut self, id: &[u8; 16]) {
        let (base, bits) = self.bits(id);
        for bit in bits {
            self.words[base + bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, id: &[u8; 16]) -> bool {
        let (base, mut bits) = self.bits(id);
        bits.all(|bit| {
            self.words
                .get(base + bit / 64)
                .is_some_and(|word| word & (1 << (bit % 64)) != 0)
        })
    }
}

/// One run, as kept in memory.
pub struct Run {
    id: u64,
    entries: u64,
    fences: Vec<[u8; 16]>,
    filter: Filter,
}

impl Run {
    fn build(id: u64, entries: &[Entry]) -> Run {
        let mut filter = Filter::with_capacity(entries.len() as u64);
        for (command, _) in entries {
            filter.insert(command);
        }
        Run {
            id,
            entries: entries.len() as u64,
            fences: entries
                .chunks(BLOCK_ENTRIES)
                .map(|block| block[0].0)
                .collect(),
            filter,
        }
    }

    /// `entries u64 | fence count u32 | fences | filter words (u64 each)`, big-endian.
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes =
            Vec::with_capacity(12 + self.fences.len() * 16 + self.filter.words.len() * 8);
        bytes.extend_from_slice(&self.entries.to_be_bytes());
        bytes.extend_from_slice(&(self.fences.len() as u32).to_be_bytes());
        for fence in &self.fences {
            bytes.extend_from_slice(fence);
        }
        for word in &self.filter.words {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    fn from_bytes(id: u64, bytes: &[u8]) -> Option<Run> {
        let entries = u64_of(bytes.get(..8)?)?;
        let fence_count = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
        let fences_end = 12usize.checked_add(fence_count.checked_mul(16)?)?;
        let fences = bytes
            .get(12..fences_end)?
            .chunks_exact(16)
            .map(|fence| fence.try_into().ok())
            .collect::<Option<Vec<[u8; 16]>>>()?;
        let words_bytes = bytes.get(fences_end..)?;
        if words_bytes.is_empty() || words_bytes.len() % (FILTER_BLOCK_WORDS * 8) != 0 {
            return None;
        }
        let words = words_bytes
            .chunks_exact(8)
            .map(u64_of)
            .collect::<Option<Vec<u64>>>()?;
        let expected_fences = (entries as usize).div_ceil(BLOCK_ENTRIES);
        (fences.len() == expected_fences).then_some(Run {
            id,
            entries,
            fences,
            filter: Filter { words },
        })
    }
}

fn damaged_run(run: &Run) -> StoreError {
    corrupt(
        Position::START,
        format!("the command index's run {} is damaged", run.id),
    )
}

/// One of a run's blocks, whole entries only.
fn read_block(log: &sled::Tree, run: &Run, block: usize) -> StoreResult<sled::IVec> {
    let stored = log
        .get(block_key(run.id, block as u32))
        .map_err(sled_error)?
        .ok_or_else(|| damaged_run(run))?;
    if stored.len().is_multiple_of(ENTRY_BYTES) {
        Ok(stored)
    } else {
        Err(damaged_run(run))
    }
}

/// The runs of the command index, oldest first.
#[derive(Default)]
pub struct CommandIndex {
    runs: Vec<Run>,
}

/// The entries of a block read by `read_block` (whole entries only).
fn entries_of(block: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    block.chunks_exact(ENTRY_BYTES).map(|raw| {
        let mut id = [0u8; 16];
        let mut outcome = [0u8; 32];
        id.copy_from_slice(&raw[..16]);
        outcome.copy_from_slice(&raw[16..]);
        (id, outcome)
    })
}

/// What a checkpoint changes in the index: written into sled by the checkpoint's batch, then
/// made the index in memory with [`CommandIndex::install`]; the blocks of the runs it merged
/// are removed after that ([`remove_merged`]), once no lookup can read them.
pub struct Change {
    runs: Vec<Run>,
    /// The merged runs: their ids and block counts.
    merged: Vec<(u64, usize)>,
}

impl Change {
    /// The ids of the runs merged away.
    pub fn merged_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.merged.iter().map(|(id, _)| *id)
    }
}

impl CommandIndex {
    /// Reads the runs' filters and fences from the store.
    /// Blocks of runs that were merged away before a crash let them be removed are removed.
    /// `merged`: the runs the last checkpoint merged away (its marker names them), whose
    /// removal a crash may have cut short.
    pub fn load(log: &sled::Tree, merged: &[u64]) -> StoreResult<CommandIndex> {
        let mut runs = Vec::new();
        let mut orphans = sled::Batch::default();
        let mut any = false;
        for item in log.scan_prefix([FILTERS]) {
            let (key, value) = item.map_err(sled_error)?;
            let damaged = || corrupt(Position::START, "the command index is damaged");
            let id = key.get(1..).and_then(u64_of).ok_or_else(damaged)?;
            if merged.contains(&id) {
                orphans.remove(key);
                any = true;
                continue;
            }
            runs.push(Run::from_bytes(id, &value).ok_or_else(damaged)?);
        }
        for key in log.scan_prefix([BLOCKS]).keys() {
            let key = key.map_err(sled_error)?;
            let run = key.get(1..9).and_then(u64_of);
            if !run.is_some_and(|id| runs.iter().any(|known| known.id == id)) {
                orphans.remove(key);
                any = true;
            }
        }
        if any {
            log.apply_batch(orphans).map_err(sled_error)?;
        }
        Ok(CommandIndex { runs })
    }

    /// How many runs the index has.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The outcome the command recorded, if it is in a run.
    pub fn lookup(
        &self,
        log: &sled::Tree,
        command: &CommandId,
    ) -> StoreResult<Option<AppendOutcome>> {
        let id = command.0.as_bytes();
        for run in self.runs.iter().rev() {
            if !run.filter.may_contain(id) {
                continue;
            }
            let Some(block) = run
                .fences
                .partition_point(|fence| fence <= id)
                .checked_sub(1)
            else {
                continue;
            };
            let damaged = || damaged_run(run);
            let stored = read_block(log, run, block)?;
            let count = stored.len() / ENTRY_BYTES;
            let id_at = |index: usize| &stored[index * ENTRY_BYTES..index * ENTRY_BYTES + 16];
            let mut low = 0;
            let mut high = count;
            while low < high {
                let middle = (low + high) / 2;
                match id_at(middle).cmp(id.as_slice()) {
                    std::cmp::Ordering::Less => low = middle + 1,
                    std::cmp::Ordering::Greater => high = middle,
                    std::cmp::Ordering::Equal => {
                        let outcome =
                            &stored[middle * ENTRY_BYTES + 16..(middle + 1) * ENTRY_BYTES];
                        return outcome_from_bytes(outcome).map(Some).ok_or_else(damaged);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Every entry of a run, sorted, read block by block.
    fn read_run(&self, log: &sled::Tree, run: &Run) -> StoreResult<Vec<Entry>> {
        let mut entries = Vec::with_capacity(run.entries as usize);
        for block in 0..run.fences.len() {
            let stored = read_block(log, run, block)?;
            entries.extend(entries_of(&stored));
        }
        if entries.len() as u64 != run.entries {
            return Err(damaged_run(run));
        }
        Ok(entries)
    }

    /// Adds a run of `entries` (any order; ids distinct, and new to the index) under `id` (new
    /// to the index, and above every run's), merging the newest runs into it while they are no
    /// larger: the new run and the removal of the merged runs' filters go into `batch`, and the
    /// index to install once the batch is applied is returned.
    pub fn add(
        &self,
        log: &sled::Tree,
        id: u64,
        mut entries: Vec<Entry>,
        batch: &mut sled::Batch,
    ) -> StoreResult<Change> {
        entries.sort_unstable_by_key(|entry| entry.0);
        let mut kept = self.runs.len();
        let mut merged_runs = Vec::new();
        while let Some(newest) = kept.checked_sub(1).and_then(|index| self.runs.get(index)) {
            let size = entries.len() as u64;
            if newest.entries > size || newest.entries + size > MAX_MERGED_ENTRIES {
                break;
            }
            let older = self.read_run(log, newest)?;
            // It goes (filter and blocks) once the marker naming it is durable.
            merged_runs.push((newest.id, newest.fences.len()));
            let mut merged = Vec::with_capacity(older.len() + entries.len());
            let (mut left, mut right) =
                (older.into_iter().peekable(), entries.into_iter().peekable());
            loop {
                let take_left = match (left.peek(), right.peek()) {
                    (Some(a), Some(b)) => a.0 <= b.0,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                let next = if take_left { left.next() } else { right.next() };
                merged.extend(next);
            }
            entries = merged;
            kept -= 1;
        }
        let mut runs: Vec<Run> = Vec::with_capacity(kept + 1);
        for run in &self.runs[..kept] {
            runs.push(Run {
                id: run.id,
                entries: run.entries,
                fences: run.fences.clone(),
                filter: Filter {
                    words: run.filter.words.clone(),
                },
            });
        }
        if !entries.is_empty() {
            write_run(batch, id, &entries, &mut runs);
        }
        Ok(Change {
            runs,
            merged: merged_runs,
        })
    }

    /// Makes the change the index; returns the merged runs, for [`remove_merged`].
    pub fn install(&mut self, change: Change) -> Vec<(u64, usize)> {
        self.runs = change.runs;
        change.merged
    }
}

/// Removes merged runs (filter, then blocks), once the marker that names them is durable and
/// the index that no longer names them is installed.
pub fn remove_merged(log: &sled::Tree, merged: &[(u64, usize)]) -> StoreResult<()> {
    if merged.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for (run, blocks) in merged {
        batch.remove(&filter_key(*run));
        for block in 0..*blocks {
            batch.remove(&block_key(*run, block as u32));
        }
    }
    log.apply_batch(batch).map_err(sled_error)
}

/// Writes `entries` (sorted) as run `id` into `batch`, and its in-memory form into `runs`.
pub fn write_run(batch: &mut sled::Batch, id: u64, entries: &[Entry], runs: &mut Vec<Run>) {
    for (number, block) in entries.chunks(BLOCK_ENTRIES).enumerate() {
        let mut value = Vec::with_capacity(block.len() * ENTRY_BYTES);
        for (command, outcome) in block {
            value.extend_from_slice(command);
            value.extend_from_slice(outcome);
        }
        batch.insert(&block_key(id, number as u32), value);
    }
    let run = Run::build(id, entries);
    batch.insert(&filter_key(id), run.to_bytes());
    runs.push(run);
}

/// Moves the command keys of a store of format 3 or 4 (one `C` + id key each) into one run,
/// in `batch`; returns how many there were.
pub fn migrate(log: &sled::Tree, batch: &mut sled::Batch) -> StoreResult<usize> {
    let mut entries: Vec<Entry> = Vec::new();
    for item in log.scan_prefix([layout::COMMANDS]) {
        let (key, value) = item.map_err(sled_error)?;
        let damaged = || {
            corrupt(
                Position::START,
                "a command key of the older format is damaged",
            )
        };
        let id: [u8; 16] = key
            .get(1..)
            .and_then(|id| id.try_into().ok())
            .ok_or_else(damaged)?;
        let outcome: [u8; 32] = value.as_ref().try_into().map_err(|_| damaged())?;
        entries.push((id, outcome));
        batch.remove(key);
    }
    let count = entries.len();
    if count > 0 {
        // Before any run this build writes: those start at a position, at least 1.
        let mut runs = Vec::new();
        write_run(batch, 0, &entries, &mut runs);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use battleplan_core::event::StreamVersion;
    use uuid::Uuid;

    fn outcome(position: u64) -> AppendOutcome {
        AppendOutcome {
            first_position: Position(position),
            last_position: Position(position),
            first_version: StreamVersion(1),
            last_version: StreamVersion(1),
            deduplicated: false,
        }
    }

    fn command(n: u64) -> CommandId {
        CommandId(Uuid::from_u128(u128::from(mix(n)) << 64 | u128::from(n)))
    }

    #[test]
    fn runs_merge_as_a_binary_counter_and_every_command_is_found() {
        let directory = tempfile::tempdir().unwrap();
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let mut index = CommandIndex::default();
        let mut next = 1u64;
        let mut sizes = Vec::new();
        let mut cut_short = Vec::new();
        for checkpoint in 0..8u64 {
            let entries: Vec<Entry> = (0..1500)
                .map(|_| {
                    next += 1;
                    entry(&command(next), &outcome(next))
                })
                .collect();
            let mut batch = sled::Batch::default();
            let change = index
                .add(&log, checkpoint * 1500 + 1, entries, &mut batch)
                .unwrap();
            log.apply_batch(batch).unwrap();
            let merged = index.install(change);
            // The last checkpoint (which merges all) is cut short before the merged runs go;
            // its marker names them.
            if checkpoint != 7 {
                remove_merged(&log, &merged).unwrap();
            } else {
                assert!(!merged.is_empty());
                cut_short = merged.iter().map(|(id, _)| *id).collect();
            }
            sizes.push(index.runs());
        }
        // 1, 2, 3 ... checkpoints: 1 run, 1 (merged), 2, 1, 2, 2, 3, 1.
        assert_eq!(sizes, vec![1, 1, 2, 1, 2, 2, 3, 1]);
        for n in 2..=next {
            let found = index.lookup(&log, &command(n)).unwrap().unwrap();
            assert_eq!(found.first_position, Position(n));
            assert!(found.deduplicated);
        }
        let mut false_hits = 0;
        for n in next + 1..next + 10_001 {
            assert_eq!(index.lookup(&log, &command(n)).unwrap(), None);
            if index
                .runs
                .iter()
                .any(|run| run.filter.may_contain(command(n).0.as_bytes()))
            {
                false_hits += 1;
            }
        }
        assert!(false_hits < 300, "{false_hits} false positives in 10,000");
        // Reloaded from the store, it answers the same, and the runs left behind are gone.
        let reloaded = CommandIndex::load(&log, &cut_short).unwrap();
        assert_eq!(reloaded.runs(), 1);
        assert_eq!(
            reloaded
                .lookup(&log, &command(7))
                .unwrap()
                .map(|o| o.first_position),
            Some(Position(7))
        );
        let keys = log.scan_prefix([BLOCKS]).count();
        assert_eq!(keys, (12_000usize).div_ceil(BLOCK_ENTRIES));
    }

    #[test]
    fn a_damaged_filter_or_block_is_an_error_not_a_panic() {
        let directory = tempfile::tempdir().unwrap();
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let mut index = CommandIndex::default();
        let entries = vec![entry(&command(5), &outcome(5))];
        let mut batch = sled::Batch::default();
        let change = index.add(&log, 1, entries, &mut batch).unwrap();
        log.apply_batch(batch).unwrap();
        let _ = index.install(change);
        log.insert(block_key(1, 0), &[1u8, 2, 3][..]).unwrap();
        assert!(index.lookup(&log, &command(5)).is_err());
        log.insert(filter_key(1), &[9u8; 5][..]).unwrap();
        assert!(CommandIndex::load(&log, &[]).is_err());
    }
}
