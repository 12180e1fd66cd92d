//! The Wing & Gong / Lowe linearizability search over one partition (key).
//!
//! Calls and returns sit in one doubly-linked list in real-time order. The
//! search repeatedly picks a call that precedes every remaining return,
//! applies it to the model, and lifts it (with its return) out of the list; a
//! return reached first means nothing more can be linearized here, so it
//! backtracks. Configurations (linearized set, state) are memoized (Lowe).
//!
//! Optional ops (`info` or never completed) have no return: they can be
//! linearized any time after their call, or never. The search succeeds as soon
//! as every required op is linearized. Three prunings keep optional ops cheap:
//! an optional op that would not change the state is never linearized (leaving
//! it out is always at least as good), nor is an optional register write (or
//! cas) whose value no remaining op reads (see `Search::unobserved`; ops whose
//! value nothing reads at all are dropped before the search by
//! `compile::drop_unobserved_optional`), and a configuration is pruned when a
//! configuration with the same required set and state, and a subset of its
//! optional ops, already failed (having fewer optional ops used dominates).
//! The search is resumable: [`Search::run`] takes a step budget.

use crate::model::{CasObs, MOp, Machine};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;
/// Search steps before a part the zone check found impossible is declared
/// Invalid (see [`Search::zones_conflict`]).
const ZONE_GRACE: u64 = 50_000;

/// One op of a partition, ready for the search.
#[derive(Debug, Clone)]
pub(crate) struct SOp {
    /// Real-time rank of the call.
    pub call: usize,
    /// Real-time rank of the return; `None` for optional ops.
    pub ret: Option<usize>,
    /// The model op.
    pub op: MOp,
    /// Index into the checked history's ops (for witnesses).
    pub src: usize,
}

/// What a slice of search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Every required op was linearized.
    Valid,
    /// No linearization exists.
    Invalid,
    /// The step budget ran out; call `run` again.
    Continue,
    /// The memo budget ran out.
    OutOfMemory,
}

/// Memo of visited configurations, with exact bitsets (no false prunes).
struct Memo {
    heads: FxHashMap<u64, u32>,
    /// Per entry: state, failed flag, next in chain.
    meta: Vec<(u32, bool, u32)>,
    /// Per entry: `wr` words of required bits then `wo` words of optional bits.
    words: Vec<u64>,
    wr: usize,
    wo: usize,
}

impl Memo {
    fn bytes_per_entry(&self) -> usize {
        // words + meta + an amortised hash-map slot.
        (self.wr + self.wo) * 8 + 12 + 24
    }

    /// Records (req, opt, state) unless it is already known or dominated by a
    /// failed configuration; returns the new entry's id, or `None` to prune.
    fn visit(&mut self, h: u64, req: &[u64], opt: &[u64], state: u32) -> Option<u32> {
        let stride = self.wr + self.wo;
        let mut cur = self.heads.get(&h).copied().unwrap_or(NIL);
        let head = cur;
        while cur != NIL {
            let (s, failed, next) = self.meta[cur as usize];
            if s == state {
                let base = cur as usize * stride;
                let w = &self.words[base..base + stride];
                if w[..self.wr] == *req {
                    let o = &w[self.wr..];
                    if o == opt {
                        return None;
                    }
                    if failed && o.iter().zip(opt).all(|(a, b)| a & !b == 0) {
                        return None;
                    }
                }
            }
            cur = next;
        }
        let id = self.meta.len() as u32;
        self.meta.push((state, false, head));
        self.words.extend_from_slice(req);
        self.words.extend_from_slice(opt);
        self.heads.insert(h, id);
        Some(id)
    }
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    op: u32,
    prev_state: u32,
    memo: u32,
}

/// A resumable search over one partition.
pub(crate) struct Search {
    pub ops: Vec<SOp>,
    /// Per op: its bit index within its class (required or optional).
    bit: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    pub machine: Machine,
    state: u32,
    req: Vec<u64>,
    opt: Vec<u64>,
    zob: Vec<u64>,
    hash_req: u64,
    remaining: usize,
    stack: Vec<Frame>,
    cursor: u32,
    memo: Memo,
    memo_bytes: Arc<AtomicUsize>,
    memo_limit: usize,
    /// The longest linearized sequence seen (op indices).
    best: Vec<u32>,
    stable: usize,
    pub steps: u64,
    done: Option<Progress>,
    /// Pass 1 tries required calls, pass 2 optional ones (only when pass 1 is stuck).
    pass2: bool,
    /// Optional ops not linearized.
    opt_left: usize,
    /// Whether the partition's states are sequences that only puts can shrink
    /// (enables the read-prefix lookahead).
    seq: bool,
    /// Register partitions: per op, the local index of the value it produces
    /// (write v, cas to v) and of the value it needs the register to hold
    /// (required read v, required successful cas from v), or NIL.
    op_prod: Vec<u32>,
    op_need: Vec<u32>,
    /// Per local value: unlinearized producers and unlinearized required readers.
    producers: Vec<u32>,
    readers: Vec<u32>,
    /// Register partitions: per op, the local index of the value it observes
    /// (read v, successful cas from v; required or optional), or NIL; per
    /// local value, the unlinearized ops that observe it.
    op_obs: Vec<u32>,
    observers: Vec<u32>,
    /// Whether an optional producer whose value no remaining op observes may
    /// be skipped (registers without failed-CAS observations).
    skip_unobserved: bool,
    /// Local index of each register value (by value id).
    local: FxHashMap<u32, u32>,
    /// A local value some required op reads but that nothing can produce any more,
    /// seen at the deepest configuration that died of it.
    pub dead_value: Option<u32>,
    /// The read to blame when the zone check decided the part at the root.
    pub blame_op: Option<u32>,
    /// What the zone check found at the root: the search still runs for
    /// [`ZONE_GRACE`] steps so small cases get a full witness (prefix and
    /// state), then the part is Invalid without exhausting every order.
    zone_blame: Option<(u32, u32)>,
    /// The value id of each local index.
    pub local_values: Vec<u32>,
    /// Bytes of model states charged to the shared budget.
    charged: usize,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Search {
    /// Builds the search; `memo_bytes` is shared by every search of one check.
    pub fn new(
        ops: Vec<SOp>,
        machine: Machine,
        init: u32,
        memo_bytes: Arc<AtomicUsize>,
        memo_limit: usize,
    ) -> Search {
        let n = ops.len();
        let mut bit = vec![0u32; n];
        let (mut nr, mut no) = (0u32, 0u32);
        for (i, o) in ops.iter().enumerate() {
            if o.ret.is_some() {
                bit[i] = nr;
                nr += 1;
            } else {
                bit[i] = no;
                no += 1;
            }
        }
        // Entries: HEAD = 0, call of op i = 1 + 2i, return of op i = 2 + 2i.
        let mut order: Vec<(usize, u32)> = Vec::with_capacity(2 * n);
        for (i, o) in ops.iter().enumerate() {
            order.push((o.call, 1 + 2 * i as u32));
            if let Some(r) = o.ret {
                order.push((r, 2 + 2 * i as u32));
            }
        }
        order.sort_unstable();
        let mut next = vec![NIL; 2 * n + 1];
        let mut prev = vec![NIL; 2 * n + 1];
        let mut last = HEAD;
        for &(_, e) in &order {
            next[last as usize] = e;
            prev[e as usize] = last;
            last = e;
        }
        let wr = (nr as usize).div_ceil(64);
        let wo = (no as usize).div_ceil(64);
        let zob = (0..n as u64).map(|i| splitmix(i ^ 0x5EED)).collect();
        // Value bookkeeping for register partitions (stale-read pruning).
        let mut local: FxHashMap<u32, u32> = FxHashMap::default();
        let mut local_values = Vec::new();
        let mut op_prod = vec![NIL; n];
        let mut op_need = vec![NIL; n];
        let mut op_obs = vec![NIL; n];
        let mut intern = |v: u32| {
            let next = local.len() as u32;
            *local.entry(v).or_insert_with(|| {
                local_values.push(v);
                next
            })
        };
        for (i, o) in ops.iter().enumerate() {
            let required = o.ret.is_some();
            match o.op {
                MOp::Write(v) => op_prod[i] = intern(v),
                MOp::Cas {
                    from,
                    to,
                    obs: CasObs::Succeeded,
                } => {
                    op_prod[i] = intern(to);
                    op_obs[i] = intern(from);
                    if required {
                        op_need[i] = op_obs[i];
                    }
                }
                MOp::Read(Some(v)) => {
                    op_obs[i] = intern(v);
                    if required {
                        op_need[i] = op_obs[i];
                    }
                }
                _ => {}
            }
        }
        let mut producers = vec![0u32; local.len()];
        let mut readers = vec![0u32; local.len()];
        let mut observers = vec![0u32; local.len()];
        for i in 0..n {
            if op_obs[i] != NIL {
                observers[op_obs[i] as usize] += 1;
            }
            if op_prod[i] != NIL {
                producers[op_prod[i] as usize] += 1;
            }
            if op_need[i] != NIL {
                readers[op_need[i] as usize] += 1;
            }
        }
        Search {
            bit,
            next,
            prev,
            machine,
            state: init,
            req: vec![0; wr],
            opt: vec![0; wo],
            zob,
            hash_req: 0,
            remaining: nr as usize,
            stack: Vec::new(),
            cursor: NIL,
            memo: Memo {
                heads: FxHashMap::default(),
                meta: Vec::new(),
                words: Vec::new(),
                wr,
                wo,
            },
            memo_bytes,
            memo_limit,
            best: Vec::new(),
            stable: 0,
            steps: 0,
            done: None,
            pass2: false,
            opt_left: no as usize,
            op_prod,
            op_need,
            producers,
            readers,
            op_obs,
            observers,
            skip_unobserved: !ops.iter().any(|o| {
                matches!(
                    o.op,
                    MOp::Cas {
                        obs: CasObs::Failed,
                        ..
                    }
                )
            }),
            local,
            dead_value: None,
            blame_op: None,
            zone_blame: None,
            local_values,
            charged: 0,
            seq: ops
                .iter()
                .any(|o| matches!(o.op, MOp::SeqAppend(_) | MOp::StrAppend(_))),
            ops,
        }
    }

    /// The longest linearized sequence found so far (indices into `ops`).
    pub fn best(&self) -> &[u32] {
        &self.best
    }

    /// The final result, if the search has finished.
    pub fn finished(&self) -> Option<&Progress> {
        self.done.as_ref()
    }

    fn lift(&mut self, i: usize) {
        for e in [1 + 2 * i, 2 + 2 * i] {
            if e == 2 + 2 * i && self.ops[i].ret.is_none() {
                continue;
            }
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p as usize] = n;
            if n != NIL {
                self.prev[n as usize] = p;
            }
        }
    }

    fn unlift(&mut self, i: usize) {
        // Reinsert in reverse order of removal so neighbours are restored.
        for e in [2 + 2 * i, 1 + 2 * i] {
            if e == 2 + 2 * i && self.ops[i].ret.is_none() {
                continue;
            }
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p as usize] = e as u32;
            if n != NIL {
                self.prev[n as usize] = e as u32;
            }
        }
    }

    fn flip(&mut self, i: usize) {
        let b = self.bit[i] as usize;
        if self.ops[i].ret.is_some() {
            self.req[b / 64] ^= 1 << (b % 64);
            self.hash_req ^= self.zob[i];
        } else {
            self.opt[b / 64] ^= 1 << (b % 64);
        }
    }

    fn key(&self, state: u32) -> u64 {
        self.hash_req ^ splitmix(state as u64 ^ 0xA5A5_0000_0000)
    }

    /// Whether the state can no longer match the next read: walking the list
    /// from the front, the first required sequence read whose return comes
    /// before any put's call must see a value that extends the current state
    /// (only appends can happen before it).
    fn read_ahead_dead(&self) -> bool {
        let mut e = self.next[HEAD as usize];
        while e != NIL {
            let i = ((e - 1) / 2) as usize;
            match (&self.ops[i].op, e % 2 == 1) {
                (MOp::StrPut(_), true) => return false,
                (MOp::SeqRead(Some(v)), false) => return !self.machine.is_prefix(self.state, *v),
                (MOp::StrRead(Some(v)), false) => {
                    return !self.machine.str_is_prefix(self.state, *v);
                }
                _ => {}
            }
            e = self.next[e as usize];
        }
        false
    }

    /// A value some remaining required op needs the register to hold, that no
    /// remaining op can produce, and that the register does not hold now.
    fn value_dead(&self, v: u32) -> Option<u32> {
        let &l = self.local.get(&v)?;
        (self.readers[l as usize] > 0 && self.producers[l as usize] == 0 && self.state != v)
            .then_some(l)
    }

    /// Gibbons & Korach's zones, a necessary condition for registers (reads,
    /// writes, successful cas; no failed-cas observations) where every value
    /// is produced at most once. A cas from `a` to `b` produces `b` and
    /// observes `a` (an optional one only when it certainly happened: a
    /// required op observes `b`). Each value's cluster (its producer and its
    /// observers, "reads" below) has `f`, the earliest
    /// return, and `s`, the latest call. The write takes effect before `f`
    /// (before every read of it) and the last read after `s`, and with unique
    /// values the register never returns to a value, so when `f < s` (a
    /// forward zone) it holds the value throughout `[f, s]`; when `s < f` (a
    /// backward zone) it holds it at some instant of `[s, f]`. So two
    /// overlapping forward zones, or a backward zone inside another value's
    /// forward zone, make the part impossible. The initial value's cluster
    /// has its write before everything. Optional writes kept here are read,
    /// so they happened (no return: `f` comes from the reads); unread ones
    /// were dropped. Returns the local value whose forward zone is violated
    /// and its read to blame (the latest-invoked one, which saw the value
    /// after another value certainly held the register).
    fn zones_conflict(&self) -> Option<(u32, u32)> {
        let nv = self.local_values.len();
        // Positions shifted by one so the initial value's write sits at 0.
        let (mut f, mut s) = (vec![usize::MAX; nv], vec![0usize; nv]);
        let mut writes = vec![0u32; nv];
        let mut last_read = vec![NIL; nv];
        // Values some required op observes: an optional cas to one of them
        // certainly happened (its value has one producer), so it observed its `from`.
        let mut required_seen = vec![false; nv];
        for (i, o) in self.ops.iter().enumerate() {
            if o.ret.is_some() && self.op_obs[i] != NIL {
                required_seen[self.op_obs[i] as usize] = true;
            }
        }
        let mut note = |l: usize, i: usize, o: &SOp, producer: bool| {
            if producer {
                writes[l] += 1;
            } else if last_read[l] == NIL || self.ops[last_read[l] as usize].call < o.call {
                last_read[l] = i as u32;
            }
            f[l] = f[l].min(o.ret.map_or(usize::MAX, |r| r.saturating_add(1)));
            s[l] = s[l].max(o.call + 1);
        };
        for (i, o) in self.ops.iter().enumerate() {
            match o.op {
                MOp::Write(v) => note(*self.local.get(&v)? as usize, i, o, true),
                MOp::Read(Some(v)) => note(*self.local.get(&v)? as usize, i, o, false),
                MOp::Read(None) => {}
                MOp::Cas {
                    from,
                    to,
                    obs: CasObs::Succeeded,
                } => {
                    let lt = *self.local.get(&to)? as usize;
                    note(lt, i, o, true);
                    if o.ret.is_some() || required_seen[lt] {
                        note(*self.local.get(&from)? as usize, i, o, false);
                    }
                }
                _ => return None,
            }
        }
        if let Some(&l) = self.local.get(&self.state) {
            let l = l as usize;
            writes[l] += 1;
            f[l] = 0;
        }
        let mut forward: Vec<(usize, usize, usize)> = Vec::new();
        let mut backward: Vec<(usize, usize)> = Vec::new();
        for l in 0..nv {
            if writes[l] > 1 {
                return None;
            }
            if writes[l] == 0 || last_read[l] == NIL {
                // Unwritten reads are the dead-value check's; a lone write
                // is a backward zone.
                if writes[l] == 1 && last_read[l] == NIL && f[l] != 0 {
                    backward.push((s[l], f[l]));
                }
                continue;
            }
            if f[l] < s[l] {
                forward.push((f[l], s[l], l));
            } else {
                backward.push((s[l], f[l]));
            }
        }
        forward.sort_unstable();
        // Prefix maxima of `s` over forward zones sorted by `f`.
        let mut best: Vec<(usize, usize)> = Vec::with_capacity(forward.len());
        for &(zf, zs, l) in &forward {
            if let Some(&(ms, ml)) = best.last() {
                if zf <= ms {
                    // Overlap: blame the zone that ends later.
                    let blame = if zs > ms { l } else { ml };
                    return Some((blame as u32, last_read[blame]));
                }
                best.push(if zs > ms { (zs, l) } else { (ms, ml) });
            } else {
                best.push((zs, l));
            }
        }
        for (bs, bf) in backward {
            // The last forward zone starting at or before `bs`.
            let k = forward.partition_point(|z| z.0 <= bs);
            if k > 0 && best[k - 1].0 >= bf {
                let l = best[k - 1].1;
                return Some((l as u32, last_read[l]));
            }
        }
        None
    }

    /// Whether optional op `i` produces a register value that no remaining op
    /// observes. Then it is never linearized from here: by the argument of
    /// `compile::drop_unobserved_optional` applied to the remaining ops, any
    /// way to finish that uses it also works without it. (A completion with
    /// the fewest optional ops never uses a skipped move, so the search and
    /// the failed-configuration memo stay exact.)
    #[inline]
    fn unobserved(&self, i: usize) -> bool {
        let p = self.op_prod[i];
        self.skip_unobserved && p != NIL && self.observers[p as usize] == 0
    }

    fn count(&mut self, i: usize, delta: i32) {
        let (p, r, o) = (self.op_prod[i], self.op_need[i], self.op_obs[i]);
        if o != NIL {
            self.observers[o as usize] = self.observers[o as usize].wrapping_add_signed(delta);
        }
        if p != NIL {
            self.producers[p as usize] = self.producers[p as usize].wrapping_add_signed(delta);
        }
        if r != NIL {
            self.readers[r as usize] = self.readers[r as usize].wrapping_add_signed(delta);
        }
    }

    /// Runs up to `budget` steps, returning early (Continue) once `stop` is set.
    pub fn run_until(&mut self, budget: u64, stop: &AtomicBool) -> Progress {
        let mut left = budget;
        while left > 0 {
            let chunk = left.min(1024);
            left -= chunk;
            let p = self.run(chunk);
            if p != Progress::Continue || stop.load(Ordering::Relaxed) {
                return p;
            }
        }
        Progress::Continue
    }

    /// Runs up to `budget` steps.
    pub fn run(&mut self, budget: u64) -> Progress {
        if let Some(d) = &self.done {
            return d.clone();
        }
        if self.cursor == NIL && self.stack.is_empty() && self.steps == 0 {
            self.cursor = self.next[HEAD as usize];
            // A value that is read but that nothing writes (and is not the
            // initial value) makes the whole partition impossible.
            for l in 0..self.local_values.len() {
                if self.value_dead(self.local_values[l]).is_some() {
                    self.dead_value = Some(l as u32);
                    self.done = Some(Progress::Invalid);
                    return Progress::Invalid;
                }
            }
            self.zone_blame = self.zones_conflict();
        }
        let per_entry = self.memo.bytes_per_entry();
        let mut left = budget;
        while left > 0 {
            left -= 1;
            self.steps += 1;
            if self.remaining == 0 {
                debug_assert!(self.zone_blame.is_none(), "zone check contradicts search");
                self.done = Some(Progress::Valid);
                return Progress::Valid;
            }
            if let Some((l, op)) = self.zone_blame
                && self.steps > ZONE_GRACE
            {
                self.dead_value = Some(l);
                self.blame_op = Some(op);
                self.done = Some(Progress::Invalid);
                return Progress::Invalid;
            }
            let e = self.cursor;
            if e != NIL && e % 2 == 1 {
                let i = ((e - 1) / 2) as usize;
                let optional = self.ops[i].ret.is_none();
                if optional != self.pass2 || (optional && self.unobserved(i)) {
                    self.cursor = self.next[e as usize];
                    continue;
                }
                let next_state = self.machine.step(self.state, &self.ops[i].op);
                if self.machine.grown > 0 {
                    let g = std::mem::take(&mut self.machine.grown);
                    self.charged += g;
                    if self.memo_bytes.fetch_add(g, Ordering::Relaxed) + g > self.memo_limit {
                        self.done = Some(Progress::OutOfMemory);
                        return Progress::OutOfMemory;
                    }
                }
                if let Some(s2) = next_state
                    && !(optional && s2 == self.state)
                {
                    self.flip(i);
                    let h = self.key(s2);
                    if let Some(slot) = self.memo.visit(h, &self.req, &self.opt, s2) {
                        let total =
                            self.memo_bytes.fetch_add(per_entry, Ordering::Relaxed) + per_entry;
                        if total > self.memo_limit {
                            self.done = Some(Progress::OutOfMemory);
                            return Progress::OutOfMemory;
                        }
                        self.stack.push(Frame {
                            op: i as u32,
                            prev_state: self.state,
                            memo: slot,
                        });
                        self.lift(i);
                        let old = self.state;
                        self.state = s2;
                        self.count(i, -1);
                        if optional {
                            self.opt_left -= 1;
                        } else {
                            self.remaining -= 1;
                        }
                        self.pass2 = false;
                        if self.stack.len() > self.best.len() {
                            self.best.truncate(self.stable);
                            self.best
                                .extend(self.stack[self.stable..].iter().map(|f| f.op));
                            self.stable = self.stack.len();
                        }
                        self.cursor = self.next[HEAD as usize];
                        // A stale read ahead: the value the register just
                        // left is still needed but can never come back.
                        let stale = if old != s2 {
                            self.value_dead(old)
                        } else {
                            None
                        };
                        if let Some(l) = stale
                            && self.stack.len() >= self.best.len()
                        {
                            self.dead_value = Some(l);
                        }
                        if stale.is_some() || (self.seq && self.read_ahead_dead()) {
                            // Backtrack at the next step.
                            self.cursor = NIL;
                            self.pass2 = true;
                        }
                        continue;
                    }
                    self.flip(i);
                }
                self.cursor = self.next[e as usize];
            } else {
                // A return (or the end): nothing left can go next here.
                if !self.pass2 && self.opt_left > 0 {
                    self.pass2 = true;
                    self.cursor = self.next[HEAD as usize];
                    continue;
                }
                let Some(f) = self.stack.pop() else {
                    self.done = Some(Progress::Invalid);
                    return Progress::Invalid;
                };
                self.stable = self.stable.min(self.stack.len());
                self.memo.meta[f.memo as usize].1 = true;
                let i = f.op as usize;
                self.unlift(i);
                self.count(i, 1);
                self.flip(i);
                if self.ops[i].ret.is_some() {
                    self.remaining += 1;
                    self.pass2 = false;
                } else {
                    self.opt_left += 1;
                    self.pass2 = true;
                }
                self.state = f.prev_state;
                self.cursor = self.next[1 + 2 * i];
            }
        }
        Progress::Continue
    }
}

impl Drop for Search {
    fn drop(&mut self) {
        // Give the shared memo budget back so later searches (shrinking) can use it.
        let used = self.memo.meta.len() * self.memo.bytes_per_entry() + self.charged;
        self.memo_bytes.fetch_sub(used, Ordering::Relaxed);
    }
}
