//! The allocator installed as a binary installs it: everything this test allocates goes
//! through it.

use std::collections::{BTreeMap, HashMap};

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

#[repr(align(64))]
#[derive(Debug, Clone, Copy, PartialEq)]
struct CacheLine([u8; 64]);

#[test]
fn collections_strings_and_over_aligned_values_work_across_threads() {
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut map = BTreeMap::new();
                let mut text = String::new();
                for i in 0..20_000u64 {
                    map.insert(i * 4 + t, format!("value {i} of thread {t}"));
                    text.push_str(&i.to_string());
                }
                let lines: Vec<CacheLine> = (0..1_000).map(|i| CacheLine([i as u8; 64])).collect();
                (map, text, lines)
            })
        })
        .collect();
    // Freed here, on another thread than the one that allocated them.
    let mut all = HashMap::new();
    for worker in workers {
        let (map, text, lines) = worker.join().unwrap();
        assert_eq!(map.len(), 20_000);
        assert!(text.ends_with("19999"));
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line as *const CacheLine as usize % 64, 0);
            assert_eq!(*line, CacheLine([i as u8; 64]));
        }
        all.extend(map);
    }
    assert_eq!(all.len(), 80_000);
    assert_eq!(all[&(7 * 4 + 3)], "value 7 of thread 3");
}
