//! Which items a file has named, compactly: a 64-bit hash of each (StoreCode, ItemNumber)
//! and the line it was first seen on, about 16 bytes an item (a million rows in some 30 MB
//! with the table's slack). Two different items whose hashes collide (about one chance in
//! 36 billion for a million rows) are reported as duplicates, errors for a person to look
//! at, never merged silently.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

/// The items seen so far in one file.
#[derive(Debug, Default)]
pub struct SeenItems {
    first_line: HashMap<u64, u64>,
    hasher: std::collections::hash_map::RandomState,
}

impl SeenItems {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the item at `line`: `None` the first time, the line it was first seen on
    /// when the file names it again.
    pub fn observe(&mut self, store_code: &str, item_number: &str, line: u64) -> Option<u64> {
        let key = self.key(store_code, item_number);
        match self.first_line.entry(key) {
            std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                None
            }
        }
    }

    /// Whether the file named the item.
    pub fn contains(&self, store_code: &str, item_number: &str) -> bool {
        self.first_line
            .contains_key(&self.key(store_code, item_number))
    }

    fn key(&self, store_code: &str, item_number: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        store_code.hash(&mut hasher);
        item_number.hash(&mut hasher);
        hasher.finish()
    }

    /// How many distinct items were seen.
    pub fn len(&self) -> usize {
        self.first_line.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.first_line.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_item_in_one_store_is_seen_twice_and_in_another_store_once() {
        let mut seen = SeenItems::new();
        assert_eq!(seen.observe("MAIN", "TEE-1", 2), None);
        assert_eq!(seen.observe("OUTLET", "TEE-1", 3), None);
        assert_eq!(seen.observe("MAIN", "TEE-2", 4), None);
        assert_eq!(seen.observe("MAIN", "TEE-1", 9), Some(2));
        // The store and the item are hashed apart: "AB"+"C" is not "A"+"BC".
        assert_eq!(seen.observe("A", "BC", 10), None);
        assert_eq!(seen.observe("AB", "C", 11), None);
        assert_eq!(seen.len(), 5);
    }
}
