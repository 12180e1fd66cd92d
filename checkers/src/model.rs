//! Sequential models for the linearizability search, compiled to compact ops.
//!
//! Every model state is a `u32`: register values are interned once per
//! history, and states that grow during the search (strings, lists, register
//! vectors) are interned on the fly by the [`Machine`] of one search. That keeps
//! the memo key small and the step cheap.

use rustc_hash::FxHashMap;

/// The sequential specifications the linearizability checker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One register (per key): `read`, `write`.
    Register,
    /// One register (per key) with compare-and-set: `read`, `write`, `cas [from to]`.
    CasRegister,
    /// Independent keys: `read`/`get`, `write`/`put`, `cas`, and `append`
    /// (string concatenation, as Porcupine's kv tests).
    Kv,
    /// Per-key lists: `append v` adds one element, `read` returns the whole list.
    Append,
    /// Named registers changed by transactions: `txn [[read x v] [write y v] ...]`.
    MultiRegister,
    /// A lock: `acquire`, `release`; initially unlocked.
    Mutex,
}

impl ModelKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
            ModelKind::Append => "append",
            ModelKind::MultiRegister => "multi-register",
            ModelKind::Mutex => "mutex",
        }
    }
}

/// What a compare-and-set tells us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CasObs {
    /// It succeeded: the value was `from`.
    Succeeded,
    /// It failed, observed: the value was not `from` (Porcupine's etcd semantics).
    Failed,
}

/// One operation of a model, with interned values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MOp {
    /// Register read; `None` matches any value.
    Read(Option<u32>),
    /// Register write.
    Write(u32),
    /// Register compare-and-set.
    Cas { from: u32, to: u32, obs: CasObs },
    /// Sequence read (string or list); `None` matches anything. The id is a trie node.
    SeqRead(Option<u32>),
    /// Sequence append of these symbols (one list element).
    SeqAppend(Box<[u32]>),
    /// String read; `None` matches anything. The id is an interned string.
    StrRead(Option<u32>),
    /// String overwrite with an interned string.
    StrPut(u32),
    /// String append (concatenation) of an interned string.
    StrAppend(u32),
    /// Transaction over registers: `(register, None)` = read any, `(register, Some(Read v))`…
    Txn(Box<[TxnStep]>),
    /// Mutex acquire.
    Acquire,
    /// Mutex release.
    Release,
}

/// One micro-op of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnStep {
    /// Read register `.0`; `None` matches any value.
    Read(u16, Option<u32>),
    /// Write register `.0`.
    Write(u16, u32),
}

/// The mutable part of a model during one search: interners for states that
/// are built as the search goes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Machine {
    /// Trie of sequences: (node, symbol) → child node. Node 0 is the empty sequence.
    trie: FxHashMap<(u32, u32), u32>,
    /// Parent and symbol of each trie node (for describing states).
    nodes: Vec<(u32, u32)>,
    /// Length of each trie node's sequence.
    depth: Vec<u32>,
    /// Interned register vectors for transactions.
    vecs: Vec<Box<[u32]>>,
    vec_ids: FxHashMap<Box<[u32]>, u32>,
    /// Interned strings; id 0 is "".
    strs: Vec<Box<[u8]>>,
    str_ids: FxHashMap<Box<[u8]>, u32>,
    /// (string, appended string) → concatenation.
    concat: FxHashMap<(u32, u32), u32>,
    /// Bytes allocated for new states since the searcher last took the count
    /// (charged to the memory budget).
    pub(crate) grown: usize,
}

impl Machine {
    /// A machine whose trie holds only the empty sequence.
    pub(crate) fn new() -> Machine {
        Machine {
            nodes: vec![(u32::MAX, 0)],
            depth: vec![0],
            strs: vec![Box::from(&b""[..])],
            str_ids: std::iter::once((Box::from(&b""[..]), 0)).collect(),
            ..Machine::default()
        }
    }

    /// The id of an interned string, interning it.
    pub(crate) fn str_id(&mut self, s: &[u8]) -> u32 {
        if let Some(&id) = self.str_ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        self.grown += 2 * (s.len() + 16) + 32;
        self.strs.push(s.into());
        self.str_ids.insert(s.into(), id);
        id
    }

    /// The bytes of an interned string.
    pub(crate) fn str_of(&self, id: u32) -> &[u8] {
        self.strs.get(id as usize).map(|s| &s[..]).unwrap_or(b"")
    }

    /// Whether interned string `a` is a prefix of interned string `b`.
    pub(crate) fn str_is_prefix(&self, a: u32, b: u32) -> bool {
        self.str_of(b).starts_with(self.str_of(a))
    }

    fn concat(&mut self, a: u32, b: u32) -> u32 {
        if let Some(&c) = self.concat.get(&(a, b)) {
            return c;
        }
        let mut v = self.str_of(a).to_vec();
        v.extend_from_slice(self.str_of(b));
        let c = self.str_id(&v);
        self.grown += 24;
        self.concat.insert((a, b), c);
        c
    }

    /// The trie node of a sequence, creating it.
    pub(crate) fn seq_node(&mut self, syms: &[u32]) -> u32 {
        let mut n = 0u32;
        for &s in syms {
            n = self.child(n, s);
        }
        n
    }

    fn child(&mut self, node: u32, sym: u32) -> u32 {
        let next = self.nodes.len() as u32;
        let nodes = &mut self.nodes;
        let depth = &mut self.depth;
        let grown = &mut self.grown;
        *self.trie.entry((node, sym)).or_insert_with(|| {
            *grown += 48;
            nodes.push((node, sym));
            depth.push(depth[node as usize] + 1);
            next
        })
    }

    /// Whether the sequence of trie node `a` is a prefix of that of node `b`.
    pub(crate) fn is_prefix(&self, a: u32, b: u32) -> bool {
        let (da, mut db) = (self.depth[a as usize], self.depth[b as usize]);
        let mut n = b;
        while db > da {
            n = self.nodes[n as usize].0;
            db -= 1;
        }
        n == a
    }

    /// The state id of a register vector, interning it.
    pub(crate) fn vec_id(&mut self, v: &[u32]) -> u32 {
        if let Some(&id) = self.vec_ids.get(v) {
            return id;
        }
        let id = self.vecs.len() as u32;
        self.grown += 2 * (v.len() * 4 + 16) + 32;
        self.vecs.push(v.into());
        self.vec_ids.insert(v.into(), id);
        id
    }

    /// The symbols of a trie node, root first.
    pub(crate) fn seq_of(&self, mut node: u32) -> Vec<u32> {
        let mut out = Vec::new();
        while node != 0 && (node as usize) < self.nodes.len() {
            let (parent, sym) = self.nodes[node as usize];
            out.push(sym);
            node = parent;
        }
        out.reverse();
        out
    }

    /// The register vector of a state id.
    pub(crate) fn vec_of(&self, id: u32) -> &[u32] {
        self.vecs.get(id as usize).map(|v| &v[..]).unwrap_or(&[])
    }

    /// Applies `op` in `state`: the new state, or `None` if the op is impossible there.
    #[inline]
    pub(crate) fn step(&mut self, state: u32, op: &MOp) -> Option<u32> {
        match op {
            MOp::Read(None) | MOp::SeqRead(None) | MOp::StrRead(None) => Some(state),
            MOp::Read(Some(v)) | MOp::SeqRead(Some(v)) | MOp::StrRead(Some(v)) => {
                (*v == state).then_some(state)
            }
            MOp::Write(v) | MOp::StrPut(v) => Some(*v),
            MOp::StrAppend(v) => Some(self.concat(state, *v)),
            MOp::Cas { from, to, obs } => match obs {
                CasObs::Succeeded => (*from == state).then_some(*to),
                CasObs::Failed => (*from != state).then_some(state),
            },
            MOp::SeqAppend(syms) => {
                let mut n = state;
                for &s in syms.iter() {
                    n = self.child(n, s);
                }
                Some(n)
            }
            MOp::Txn(steps) => {
                let mut regs: Vec<u32> = self.vec_of(state).to_vec();
                for s in steps.iter() {
                    match *s {
                        TxnStep::Read(r, Some(v)) => {
                            if regs.get(r as usize) != Some(&v) {
                                return None;
                            }
                        }
                        TxnStep::Read(_, None) => {}
                        TxnStep::Write(r, v) => {
                            if let Some(slot) = regs.get_mut(r as usize) {
                                *slot = v;
                            }
                        }
                    }
                }
                Some(self.vec_id(&regs))
            }
            MOp::Acquire => (state == 0).then_some(1),
            MOp::Release => (state == 1).then_some(0),
        }
    }
}
