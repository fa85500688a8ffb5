//! The key-value store with expiry behind the `kv` import: a sharded map
//! bounded in bytes. When full, expired entries go first, then the oldest
//! written. Snapshots (bincode) let the cache survive a restart.

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One stored value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    value: Vec<u8>,
    expires_at_ms: u64,
    seq: u64,
}

/// Sizes of the store.
#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    /// Total bytes of keys + values kept.
    pub max_bytes: usize,
    /// Largest single value accepted.
    pub max_entry_bytes: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_bytes: 256 * 1024 * 1024,
            max_entry_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The store.
#[derive(Debug)]
pub struct KvStore {
    map: DashMap<String, Entry>,
    bytes: AtomicUsize,
    seq: AtomicU64,
    limits: KvLimits,
    /// Entries removed to make room.
    pub evictions: AtomicU64,
}

fn cost(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + 64
}

impl KvStore {
    /// An empty store.
    pub fn new(limits: KvLimits) -> Self {
        KvStore {
            map: DashMap::new(),
            bytes: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            limits,
            evictions: AtomicU64::new(0),
        }
    }

    /// The value of `key` unless expired.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Vec<u8>> {
        {
            let entry = self.map.get(key)?;
            if entry.expires_at_ms > now_ms {
                return Some(entry.value.clone());
            }
        }
        self.delete_if_expired(key, now_ms);
        None
    }

    /// Stores `value` until `now_ms + ttl_ms`; false when it is too large.
    pub fn set(&self, key: &str, value: &[u8], ttl_ms: u64, now_ms: u64) -> bool {
        if value.len() > self.limits.max_entry_bytes || cost(key, value) > self.limits.max_bytes {
            return false;
        }
        let entry = Entry {
            value: value.to_vec(),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
        };
        let added = cost(key, value);
        if let Some(old) = self.map.insert(key.to_string(), entry) {
            self.bytes
                .fetch_sub(cost(key, &old.value), Ordering::Relaxed);
        }
        let total = self.bytes.fetch_add(added, Ordering::Relaxed) + added;
        if total > self.limits.max_bytes {
            self.make_room(now_ms);
        }
        true
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        if let Some((k, old)) = self.map.remove(key) {
            self.bytes
                .fetch_sub(cost(&k, &old.value), Ordering::Relaxed);
        }
    }

    /// Removes `key` only if it is (still) expired: a value another request
    /// just stored under the same key is kept.
    fn delete_if_expired(&self, key: &str, now_ms: u64) {
        if let Some((k, old)) = self.map.remove_if(key, |_, e| e.expires_at_ms <= now_ms) {
            self.bytes
                .fetch_sub(cost(&k, &old.value), Ordering::Relaxed);
        }
    }

    /// Bytes currently used.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops expired entries, then the oldest until under 90% of the budget.
    fn make_room(&self, now_ms: u64) {
        self.sweep(now_ms);
        let target = self.limits.max_bytes / 10 * 9;
        if self.bytes() <= target {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .map
            .iter()
            .map(|e| (e.value().seq, e.key().clone()))
            .collect();
        by_age.sort_unstable();
        for (_, key) in by_age {
            if self.bytes() <= target {
                break;
            }
            self.delete(&key);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes expired entries.
    pub fn sweep(&self, now_ms: u64) {
        let expired: Vec<String> = self
            .map
            .iter()
            .filter(|e| e.value().expires_at_ms <= now_ms)
            .map(|e| e.key().clone())
            .collect();
        for key in expired {
            self.delete_if_expired(&key, now_ms);
        }
    }

    /// Writes live entries to `path` (bincode), through a temp file and rename.
    pub fn save_snapshot(&self, path: &Path, now_ms: u64) -> std::io::Result<usize> {
        let entries: Vec<(String, Entry)> = self
            .map
            .iter()
            .filter(|e| e.value().expires_at_ms > now_ms)
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let bytes = bincode::serde::encode_to_vec(&entries, bincode::config::standard())
            .map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(entries.len())
    }

    /// Loads a snapshot written by `save_snapshot`; expired entries are skipped.
    pub fn load_snapshot(&self, path: &Path, now_ms: u64) -> Result<usize, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let (entries, _): (Vec<(String, Entry)>, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .map_err(|e| format!("{}: corrupt snapshot: {e}", path.display()))?;
        let mut loaded = 0;
        for (key, entry) in entries {
            if entry.expires_at_ms > now_ms {
                let ttl = entry.expires_at_ms - now_ms;
                if self.set(&key, &entry.value, ttl, now_ms) {
                    loaded += 1;
                }
            }
        }
        Ok(loaded)
    }
}

impl super::port::KvBackend for KvStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> super::port::StoreFuture<'a, Result<Option<Vec<u8>>, super::port::Unavailable>> {
        Box::pin(std::future::ready(Ok(KvStore::get(
            self,
            key,
            super::now_ms(),
        ))))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl_ms: u64,
    ) -> super::port::StoreFuture<'a, Result<bool, super::port::Unavailable>> {
        Box::pin(std::future::ready(Ok(KvStore::set(
            self,
            key,
            value,
            ttl_ms,
            super::now_ms(),
        ))))
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
    ) -> super::port::StoreFuture<'a, Result<(), super::port::Unavailable>> {
        KvStore::delete(self, key);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire() {
        let kv = KvStore::new(KvLimits::default());
        assert!(kv.set("a", b"1", 100, 1000));
        assert_eq!(kv.get("a", 1099), Some(b"1".to_vec()));
        assert_eq!(kv.get("a", 1100), None);
        assert_eq!(kv.bytes(), 0);
    }

    #[test]
    fn oldest_entries_are_evicted_when_full() {
        let kv = KvStore::new(KvLimits {
            max_bytes: 1000,
            max_entry_bytes: 500,
        });
        for i in 0..20 {
            assert!(kv.set(&format!("k{i}"), &[0u8; 100], 60_000, 0));
        }
        assert!(kv.bytes() <= 1000, "bytes {}", kv.bytes());
        assert_eq!(kv.get("k0", 1), None);
        assert!(kv.get("k19", 1).is_some());
        assert!(!kv.set("big", &[0u8; 501], 10, 0));
    }

    #[test]
    fn snapshot_round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.bin");
        let kv = KvStore::new(KvLimits::default());
        kv.set("live", b"yes", 10_000, 0);
        kv.set("dead", b"no", 10, 0);
        assert_eq!(kv.save_snapshot(&path, 100).unwrap(), 1);
        let restored = KvStore::new(KvLimits::default());
        assert_eq!(restored.load_snapshot(&path, 200).unwrap(), 1);
        assert_eq!(restored.get("live", 300), Some(b"yes".to_vec()));
        std::fs::write(&path, b"\xff\xff garbage").unwrap();
        assert!(
            restored
                .load_snapshot(&path, 200)
                .unwrap_err()
                .contains("corrupt")
        );
    }
}
