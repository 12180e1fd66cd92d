//! The written-but-unsynced data of one file: non-overlapping byte ranges
//! kept in memory until an fsync writes them to the backing file, as a page
//! cache's dirty pages would be, plus what the torn-write fault needs (the
//! file's last write and when it happened).

use std::collections::BTreeMap;

/// The last write a file received while unsynced: the torn-write fault keeps
/// a prefix of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LastWrite {
    /// Position in the mount-wide order of writes (larger is later).
    pub seq: u64,
    /// Byte offset of the write.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Non-overlapping dirty byte ranges of one file, by start offset.
#[derive(Debug, Default)]
pub(crate) struct Extents {
    ranges: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

impl Extents {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// One past the last byte held (0 when empty).
    pub fn end(&self) -> u64 {
        self.ranges
            .last_key_value()
            .map_or(0, |(off, data)| off + data.len() as u64)
    }

    /// The held ranges in offset order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.ranges.iter().map(|(off, d)| (*off, d.as_slice()))
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.bytes = 0;
    }

    /// Stores `data` at `offset`, replacing whatever overlapped it. A write
    /// that continues the range before it is appended to that range, so an
    /// append-only log stays one range.
    pub fn insert(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.remove_range(offset, end);
        if let Some((&prev_off, prev)) = self.ranges.range_mut(..offset).next_back()
            && prev_off + prev.len() as u64 == offset
        {
            prev.extend_from_slice(data);
        } else {
            self.ranges.insert(offset, data.to_vec());
        }
        self.bytes += data.len() as u64;
    }

    /// Forgets every byte at or after `size` (a truncation).
    pub fn truncate(&mut self, size: u64) {
        let end = self.end();
        if end > size {
            self.remove_range(size, end);
        }
    }

    /// Copies the held bytes that fall into `[offset, offset + buf.len())`
    /// over `buf`.
    pub fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        // The range starting at or before `offset` may reach into the window.
        let start = self
            .ranges
            .range(..=offset)
            .next_back()
            .map_or(offset, |(o, _)| *o);
        for (&off, data) in self.ranges.range(start..end) {
            let d_end = off + data.len() as u64;
            let lo = off.max(offset);
            let hi = d_end.min(end);
            if lo >= hi {
                continue;
            }
            buf[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&data[(lo - off) as usize..(hi - off) as usize]);
        }
    }

    /// The held bytes of `[offset, offset + len)`, which must be held whole
    /// (the torn-write fault reads its last write back with this).
    pub fn slice(&self, offset: u64, len: u64) -> Vec<u8> {
        let mut out = vec![0; len as usize];
        self.overlay(offset, &mut out);
        out
    }

    /// Removes every held byte in `[lo, hi)`, splitting ranges that straddle
    /// either end.
    fn remove_range(&mut self, lo: u64, hi: u64) {
        // A range starting before `lo` that reaches past it is cut at `lo`
        // (and its part after `hi`, if any, is kept as a new range).
        if let Some((&off, data)) = self.ranges.range_mut(..lo).next_back() {
            let d_end = off + data.len() as u64;
            if d_end > lo {
                let tail = (d_end > hi).then(|| data[(hi - off) as usize..].to_vec());
                let cut = d_end - lo;
                data.truncate((lo - off) as usize);
                self.bytes -= cut;
                if let Some(tail) = tail {
                    self.bytes += tail.len() as u64;
                    self.ranges.insert(hi, tail);
                    return;
                }
            }
        }
        let inside: Vec<u64> = self.ranges.range(lo..hi).map(|(o, _)| *o).collect();
        for off in inside {
            let data = self.ranges.remove(&off).expect("listed just now");
            let d_end = off + data.len() as u64;
            self.bytes -= data.len() as u64;
            if d_end > hi {
                let tail = data[(hi - off) as usize..].to_vec();
                self.bytes += tail.len() as u64;
                self.ranges.insert(hi, tail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference model: the file as a plain byte vector plus a mask of
    /// which bytes are held.
    fn model_check(ext: &Extents, model: &[Option<u8>]) {
        let mut buf = vec![0xEE; model.len() + 8];
        ext.overlay(0, &mut buf);
        for (i, m) in model.iter().enumerate() {
            if let Some(b) = m {
                assert_eq!(buf[i], *b, "byte {i}");
            } else {
                assert_eq!(buf[i], 0xEE, "byte {i} should not be held");
            }
        }
        let held = model.iter().filter(|m| m.is_some()).count() as u64;
        assert_eq!(ext.bytes(), held);
        let end = model.iter().rposition(|m| m.is_some()).map_or(0, |i| i + 1);
        assert_eq!(ext.end(), end as u64);
        // Ranges never overlap and are never empty.
        let mut last_end = 0;
        for (off, data) in ext.iter() {
            assert!(!data.is_empty());
            assert!(off >= last_end);
            last_end = off + data.len() as u64;
        }
    }

    #[test]
    fn inserts_overwrites_and_truncates_agree_with_a_byte_model() {
        // A small deterministic pseudo-random sequence (no RNG dependency
        // needed for a unit test of this size).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut ext = Extents::default();
        let mut model: Vec<Option<u8>> = vec![None; 200];
        for step in 0..2000u32 {
            if next(10) == 0 {
                let size = next(200);
                ext.truncate(size);
                for m in model.iter_mut().skip(size as usize) {
                    *m = None;
                }
            } else {
                let off = next(180);
                let len = 1 + next(20);
                let data: Vec<u8> = (0..len).map(|i| (step as u64 + i) as u8).collect();
                ext.insert(off, &data);
                for (i, b) in data.iter().enumerate() {
                    model[off as usize + i] = Some(*b);
                }
            }
            model_check(&ext, &model);
        }
    }

    #[test]
    fn appends_stay_one_range() {
        let mut ext = Extents::default();
        for i in 0..100u64 {
            ext.insert(i * 10, &[i as u8; 10]);
        }
        assert_eq!(ext.iter().count(), 1);
        assert_eq!(ext.bytes(), 1000);
        assert_eq!(ext.slice(990, 10), vec![99u8; 10]);
    }
}
