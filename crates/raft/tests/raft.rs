//! The Raft core's tests: the paper's rules on hand-built logs (Figures 7
//! and 8, stale terms, the vote restriction, snapshots, reads across a
//! leader change, batching), the simulator over many seeds, and one test
//! per deliberate mistake proving the simulator catches it.

use faultline_raft::sim::{self, Profile, SimOptions, SoakTotals};
use faultline_raft::{
    Bug, Config, Entry, EntryKind, Error, HardState, Message, MessageBody, NodeId, Persisted, Raft,
    ReadMode, Ready, Role, Snapshot,
};

// ---------------------------------------------------------------------------
// A tiny in-test driver: every node in memory, a network we control by hand.

struct Cluster {
    nodes: Vec<Option<Raft>>,
    /// Entries each node applied, in order, as (index, term).
    applied: Vec<Vec<(u64, u64)>>,
    readies: Vec<Vec<Ready>>,
    net: Vec<Message>,
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: format!("{index}@{term}").into_bytes(),
    }
}

fn log_of(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| entry(i as u64 + 1, t))
        .collect()
}

fn config(id: NodeId, n: u64, f: impl Fn(&mut Config)) -> Config {
    let mut c = Config::new(id, (1..=n).collect());
    c.seed = id * 7919;
    f(&mut c);
    c
}

impl Cluster {
    /// A cluster of `logs.len()` nodes, node `i + 1` starting from
    /// `logs[i]` (entries) with hard-state term `terms[i]`.
    fn with_logs(logs: &[Vec<Entry>], terms: &[u64], f: impl Fn(&mut Config) + Copy) -> Cluster {
        let n = logs.len() as u64;
        let nodes = logs
            .iter()
            .zip(terms)
            .enumerate()
            .map(|(i, (log, &term))| {
                let p = Persisted {
                    hard_state: HardState {
                        term,
                        vote: None,
                        commit: 0,
                    },
                    snapshot: None,
                    entries: log.clone(),
                };
                Some(Raft::new(config(i as u64 + 1, n, f), p).expect("valid node"))
            })
            .collect();
        Cluster {
            nodes,
            applied: vec![Vec::new(); logs.len()],
            readies: (0..logs.len()).map(|_| Vec::new()).collect(),
            net: Vec::new(),
        }
    }

    fn new(n: usize, f: impl Fn(&mut Config) + Copy) -> Cluster {
        Cluster::with_logs(&vec![Vec::new(); n], &vec![0; n], f)
    }

    fn node(&mut self, id: NodeId) -> &mut Raft {
        self.nodes[(id - 1) as usize].as_mut().expect("node is up")
    }

    /// Takes every node's Ready, keeping its messages for delivery.
    fn collect(&mut self) {
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            let Some(r) = slot.as_mut() else { continue };
            while r.has_ready() {
                let rd = r.ready();
                self.net.extend(rd.messages.iter().cloned());
                self.applied[i].extend(rd.committed.iter().map(|e| (e.index, e.term)));
                self.readies[i].push(rd);
            }
        }
    }

    /// Delivers messages until none are left; `net` may drop (None) or
    /// rewrite each one.
    fn settle_with(&mut self, mut net: impl FnMut(Message) -> Option<Message>) {
        for _ in 0..10_000 {
            self.collect();
            if self.net.is_empty() {
                return;
            }
            for m in std::mem::take(&mut self.net) {
                let Some(m) = net(m) else { continue };
                let to = (m.to - 1) as usize;
                if let Some(r) = self.nodes[to].as_mut() {
                    r.step(m).expect("well-routed message");
                }
            }
        }
        panic!("the cluster did not settle");
    }

    fn settle(&mut self) {
        self.settle_with(Some);
    }

    /// Ticks node `id` alone until it is leader (delivering everything).
    fn elect(&mut self, id: NodeId) {
        for _ in 0..200 {
            self.node(id).tick();
            self.settle();
            if self.node(id).status().role == Role::Leader {
                return;
            }
        }
        panic!("node {id} was not elected");
    }

    fn entries(&mut self, id: NodeId) -> Vec<(u64, u64)> {
        let (_, _, log) = self.node(id).log_view();
        log.iter().map(|e| (e.index, e.term)).collect()
    }
}

fn no_cq(c: &mut Config) {
    c.check_quorum = false;
    c.pre_vote = false;
}

// ---------------------------------------------------------------------------
// The paper's rules.

/// Figure 7: a leader of term 8 brings each of the follower logs (a)-(f)
/// into agreement with its own, truncating extra and conflicting entries
/// and backing off over whole terms.
#[test]
fn figure_7_followers_converge_on_the_leaders_log() {
    let leader = log_of(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]);
    let shapes: [(&str, Vec<u64>); 6] = [
        ("a", vec![1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", vec![1, 1, 1, 4]),
        ("c", vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", vec![1, 1, 1, 4, 4, 4, 4]),
        ("f", vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, shape) in shapes {
        for max_entries in [1, 1024] {
            // Node 1 leads; node 2 holds the leader's log (and votes for
            // it); node 3 has the shape under test.
            let mut c = Cluster::with_logs(
                &[leader.clone(), leader.clone(), log_of(&shape)],
                &[7, 7, 7],
                |c| {
                    no_cq(c);
                    c.max_entries_per_msg = max_entries;
                },
            );
            c.elect(1);
            assert_eq!(c.node(1).status().term, 8, "shape ({name})");
            c.settle();
            let want = c.entries(1);
            assert_eq!(want.len(), 11, "leader log plus its term-8 no-op");
            assert_eq!(
                c.entries(3),
                want,
                "shape ({name}), max_entries {max_entries}"
            );
            assert_eq!(c.node(3).status().commit_index, 11, "shape ({name})");
            assert_eq!(c.applied[2].len(), 11, "shape ({name})");
        }
    }
}

/// Figure 8: a leader of term 4 that has replicated the term-2 entry at
/// index 2 to a majority must not count it committed; indeed once it
/// crashes, the node holding a term-3 entry there is elected and replaces
/// it everywhere. With `Bug::CommitPreviousTerm` the leader does count it.
#[test]
fn figure_8_older_term_entries_are_not_committed_by_counting() {
    for bug in [false, true] {
        let logs = [
            log_of(&[1, 2]), // S1: leads term 4
            log_of(&[1, 2]), // S2
            log_of(&[1]),    // S3
            log_of(&[1]),    // S4
            log_of(&[1, 3]), // S5: led term 3
        ];
        let mut c = Cluster::with_logs(&logs, &[3, 3, 3, 3, 3], |c| {
            no_cq(c);
            c.max_entries_per_msg = 1;
            if bug && c.id == 1 {
                c.bugs = vec![Bug::CommitPreviousTerm];
            }
        });
        // S5 hears nothing, and the network strips the term-4 no-op at
        // index 3 from every AppendEntries: index 2 (term 2) reaches S2..S4.
        let net = |mut m: Message| {
            if m.to == 5 || m.from == 5 {
                return None;
            }
            if let MessageBody::AppendEntries { entries, .. } = &mut m.body {
                entries.retain(|e| e.index < 3);
            }
            Some(m)
        };
        for _ in 0..200 {
            c.node(1).tick();
            c.settle_with(net);
            if c.node(1).status().role == Role::Leader {
                break;
            }
        }
        assert_eq!(c.node(1).status().role, Role::Leader);
        assert_eq!(c.node(1).status().term, 4);
        for _ in 0..3 {
            c.node(1).tick();
            c.settle_with(net);
        }
        for id in 2..=4 {
            assert_eq!(c.entries(id), vec![(1, 1), (2, 2)], "S{id} holds index 2");
        }
        let commit = c.node(1).status().commit_index;
        if bug {
            assert_eq!(commit, 2, "the bug counts replicas of a term-2 entry");
            continue;
        }
        assert_eq!(
            commit, 0,
            "a term-2 entry on a majority is still not committed"
        );
        // S1 crashes; S5 (last term 3) wins and overwrites index 2.
        c.nodes[0] = None;
        for _ in 0..200 {
            c.node(5).tick();
            c.settle();
            if c.node(5).status().role == Role::Leader {
                break;
            }
        }
        assert_eq!(c.node(5).status().role, Role::Leader);
        c.node(5).tick();
        c.settle();
        for id in 2..=5 {
            assert_eq!(
                c.entries(id)[1],
                (2, 3),
                "S{id} now has S5's entry at index 2"
            );
            assert!(c.node(id).status().commit_index >= 3);
        }
    }
}

/// Messages of an older term are refused, and the sender learns the newer
/// term (a deposed leader steps down).
#[test]
fn stale_terms_are_rejected_and_deposed_leaders_step_down() {
    let mut c = Cluster::new(3, no_cq);
    c.elect(1);
    let old_term = c.node(1).status().term;
    // Node 2 moves to a later term on its own (as after a partition).
    let later = old_term + 5;
    let p = Persisted {
        hard_state: HardState {
            term: later,
            vote: None,
            commit: 0,
        },
        ..Persisted::default()
    };
    c.nodes[1] = Some(Raft::new(config(2, 3, no_cq), p).expect("valid"));
    let before = c.entries(2);
    c.node(2)
        .step(Message {
            from: 1,
            to: 2,
            term: old_term,
            body: MessageBody::AppendEntries {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![entry(1, old_term)],
                leader_commit: 1,
                read_round: 0,
            },
        })
        .expect("routed");
    let rd = c.node(2).ready();
    assert_eq!(c.entries(2), before, "nothing appended from a stale leader");
    let reply = rd.messages.iter().find(|m| m.to == 1).expect("a reply");
    assert_eq!(reply.term, later);
    assert!(matches!(
        reply.body,
        MessageBody::AppendEntriesResponse { success: false, .. }
    ));
    // A stale vote request is refused too.
    c.node(2)
        .step(Message {
            from: 3,
            to: 2,
            term: old_term,
            body: MessageBody::RequestVote {
                last_log_index: 100,
                last_log_term: old_term,
                transfer: false,
            },
        })
        .expect("routed");
    let rd2 = c.node(2).ready();
    assert!(rd2.messages.iter().any(|m| m.to == 3
        && m.term == later
        && m.body == MessageBody::RequestVoteResponse { granted: false }));
    // The deposed leader steps down on hearing the newer term.
    c.node(1).step(reply.clone()).expect("routed");
    let st = c.node(1).status();
    assert_eq!(st.role, Role::Follower);
    assert_eq!(st.term, later);
}

/// §5.4.1: a vote goes only to a candidate whose log is at least as up to
/// date, and only once per term. `Bug::VoteWithoutLogCheck` drops the
/// first rule.
#[test]
fn votes_require_an_up_to_date_log_and_are_cast_once_per_term() {
    let ask = |r: &mut Raft, from: NodeId, term: u64, li: u64, lt: u64| -> bool {
        r.step(Message {
            from,
            to: 1,
            term,
            body: MessageBody::RequestVote {
                last_log_index: li,
                last_log_term: lt,
                transfer: false,
            },
        })
        .expect("routed");
        r.ready()
            .messages
            .iter()
            .any(|m| m.to == from && m.body == MessageBody::RequestVoteResponse { granted: true })
    };
    for bug in [false, true] {
        let p = Persisted {
            hard_state: HardState {
                term: 3,
                vote: None,
                commit: 0,
            },
            snapshot: None,
            entries: log_of(&[1, 2, 3]),
        };
        let cfg = config(1, 3, |c| {
            no_cq(c);
            if bug {
                c.bugs = vec![Bug::VoteWithoutLogCheck];
            }
        });
        let mut r = Raft::new(cfg.clone(), p.clone()).expect("valid");
        // Older last term: refused (granted with the bug).
        assert_eq!(ask(&mut r, 2, 4, 10, 2), bug);
        let mut r = Raft::new(cfg.clone(), p.clone()).expect("valid");
        // Same last term, shorter log: refused (granted with the bug).
        assert_eq!(ask(&mut r, 2, 4, 2, 3), bug);
        let mut r = Raft::new(cfg, p).expect("valid");
        // Up to date: granted; then a second candidate in the same term is
        // refused; the first asking again is granted again.
        assert!(ask(&mut r, 2, 4, 3, 3));
        assert!(!ask(&mut r, 3, 4, 5, 3));
        assert!(ask(&mut r, 2, 4, 3, 3));
    }
}

/// A vote is part of the persisted hard state (and `Bug::ForgetVote`
/// leaves it out).
#[test]
fn the_vote_is_persisted_before_it_is_sent() {
    for bug in [false, true] {
        let cfg = config(1, 3, |c| {
            no_cq(c);
            if bug {
                c.bugs = vec![Bug::ForgetVote];
            }
        });
        let mut r = Raft::new(cfg, Persisted::default()).expect("valid");
        r.step(Message {
            from: 2,
            to: 1,
            term: 1,
            body: MessageBody::RequestVote {
                last_log_index: 0,
                last_log_term: 0,
                transfer: false,
            },
        })
        .expect("routed");
        let rd = r.ready();
        let hs = rd.hard_state.expect("term and vote changed");
        assert_eq!(hs.term, 1);
        assert_eq!(hs.vote, if bug { None } else { Some(2) });
        assert!(
            rd.messages
                .iter()
                .any(|m| m.body == MessageBody::RequestVoteResponse { granted: true })
        );
    }
}

/// A follower cut off while the leader compacted its log is brought up
/// with InstallSnapshot, then continues with ordinary entries.
#[test]
fn snapshot_installation_brings_a_lagging_follower_up() {
    let mut c = Cluster::new(3, no_cq);
    c.elect(1);
    c.settle();
    // Node 3 is cut off while 20 entries commit.
    for _ in 0..20 {
        c.node(1).propose(b"x".to_vec()).expect("leader");
    }
    c.settle_with(|m| (m.to != 3 && m.from != 3).then_some(m));
    let commit = c.node(1).status().commit_index;
    assert_eq!(commit, 21);
    assert_eq!(c.applied[0].len(), 21);
    assert_eq!(
        c.node(1).compact(22, vec![]),
        Err(Error::BadSnapshotIndex {
            index: 22,
            reason: "not yet handed out as committed"
        })
    );
    c.node(1)
        .compact(21, b"state@21".to_vec())
        .expect("compact");
    assert_eq!(c.node(1).status().snapshot_index, 21);
    // Node 3 reconnects. The leader's pipeline to it stalled (its messages
    // were lost); after a few heartbeat intervals without progress it
    // probes, finds the entries compacted, and sends the snapshot.
    for _ in 0..8 {
        c.node(1).tick();
        c.settle();
    }
    let snaps: Vec<&Snapshot> = c.readies[2]
        .iter()
        .filter_map(|r| r.snapshot.as_ref())
        .collect();
    assert_eq!(snaps.len(), 1, "exactly one snapshot installed");
    assert_eq!(snaps[0].meta.index, 21);
    assert_eq!(snaps[0].data, b"state@21");
    let st = c.node(3).status();
    assert_eq!((st.snapshot_index, st.commit_index), (21, 21));
    // New entries flow normally after it.
    c.node(1).propose(b"y".to_vec()).expect("leader");
    c.settle();
    c.node(1).tick();
    c.settle();
    assert_eq!(c.entries(3), vec![(22, c.node(1).status().term)]);
    assert_eq!(c.node(3).status().commit_index, 22);
    assert_eq!(c.applied[2].last().map(|a| a.0), Some(22));
}

/// ReadIndex across a leader change: the deposed leader cannot confirm its
/// reads (they abort when it learns of the new term); the new leader serves
/// none until an entry of its own term commits.
#[test]
fn read_index_after_a_leader_change() {
    let mut c = Cluster::new(3, no_cq);
    c.elect(1);
    c.settle();
    c.node(1).propose(b"a".to_vec()).expect("leader");
    c.settle();
    // Node 1 is partitioned away but still thinks it leads.
    let cut = |m: Message| (m.to != 1 && m.from != 1).then_some(m);
    c.node(1).read_index(7, ReadMode::Safe).expect("leader");
    c.settle_with(cut);
    assert!(c.readies[0].iter().all(|r| r.read_states.is_empty()));
    // Node 2 is elected; its no-op cannot commit while node 3 is cut too.
    for _ in 0..200 {
        c.node(2).tick();
        c.settle_with(cut);
        if c.node(2).status().role == Role::Leader {
            break;
        }
    }
    assert_eq!(c.node(2).status().role, Role::Leader);
    let term2 = c.node(2).status().term;
    c.readies[1].clear();
    c.node(2).read_index(8, ReadMode::Safe).expect("leader");
    c.settle_with(|m| (m.to == 2 && m.from == 2).then_some(m));
    assert!(
        c.readies[1].iter().all(|r| r.read_states.is_empty()),
        "no read before the no-op commits"
    );
    // Once node 3 hears from it, the no-op commits and the read is served
    // at an index covering it.
    c.node(2).tick();
    c.settle_with(cut);
    let served: Vec<_> = c.readies[1]
        .iter()
        .flat_map(|r| r.read_states.clone())
        .collect();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].ctx, 8);
    let noop_index = c.node(2).status().last_log_index;
    assert!(
        served[0].index >= noop_index,
        "covers the term {term2} no-op"
    );
    // The old leader learns of the new term and aborts its read.
    c.node(2).tick();
    c.settle();
    assert_eq!(c.node(1).status().role, Role::Follower);
    let aborted: Vec<u64> = c.readies[0]
        .iter()
        .flat_map(|r| r.aborted_reads.clone())
        .collect();
    assert_eq!(aborted, vec![7]);
    assert!(c.readies[0].iter().all(|r| r.read_states.is_empty()));
}

/// Lease reads need CheckQuorum: without it a lease read waits for a
/// ReadIndex round like a linearizable one; with it, a leader with a fresh
/// majority contact answers at once.
#[test]
fn lease_reads_need_check_quorum() {
    let mut c = Cluster::new(3, no_cq);
    c.elect(1);
    c.settle();
    c.readies[0].clear();
    assert_eq!(c.node(1).read_index(1, ReadMode::Lease), Ok(()));
    let answered_at_once = c.node(1).ready().read_states;
    assert!(
        answered_at_once.is_empty(),
        "without CheckQuorum a lease read must wait for a round: {answered_at_once:?}"
    );
    // With CheckQuorum every node must have ticked an election timeout
    // before it votes (it might have acknowledged a lease just before a
    // restart), so all of them tick until one leads.
    let mut c = Cluster::new(3, |_| {});
    let mut leader = None;
    for _ in 0..100 {
        for id in 1..=3 {
            c.node(id).tick();
        }
        c.settle();
        leader = (1..=3).find(|&id| c.node(id).status().role == Role::Leader);
        if leader.is_some() {
            break;
        }
    }
    let l = leader.expect("a leader");
    c.node(l).tick(); // a heartbeat round establishes the lease
    c.settle();
    c.node(l).read_index(1, ReadMode::Lease).expect("leader");
    let rd = c.node(l).ready();
    assert_eq!(rd.read_states.len(), 1, "served without another round");
    assert!(rd.messages.is_empty());
    let f = if l == 1 { 2 } else { 1 };
    assert_eq!(
        c.node(f).read_index(2, ReadMode::Safe),
        Err(Error::NotLeader { leader: Some(l) })
    );
}

/// Proposals made between two `ready()` calls travel in one Ready (one
/// fsync) and one AppendEntries per follower; committed entries are only
/// handed out once the leader's own copy was in an earlier or the same
/// Ready.
#[test]
fn proposals_between_readies_are_batched() {
    let mut c = Cluster::new(3, no_cq);
    c.elect(1);
    c.settle();
    for k in 0..50u8 {
        c.node(1).propose(vec![k]).expect("leader");
    }
    let rd = c.node(1).ready();
    assert_eq!(rd.entries.len(), 50);
    let appends: Vec<&Message> = rd
        .messages
        .iter()
        .filter(|m| matches!(&m.body, MessageBody::AppendEntries { entries, .. } if !entries.is_empty()))
        .collect();
    assert_eq!(appends.len(), 2, "one AppendEntries per follower");
    assert!(rd.committed.is_empty(), "nothing acknowledged yet");
    c.net.extend(rd.messages);
    c.settle();
    assert_eq!(c.node(1).status().commit_index, 51);
}

/// Leadership transfer: the target catches up, then wins at once.
#[test]
fn leadership_transfer() {
    let mut c = Cluster::new(3, no_cq);
    c.elect(1);
    c.settle();
    c.node(1).propose(b"a".to_vec()).expect("leader");
    c.node(1).transfer_leader(3).expect("leader");
    assert_eq!(
        c.node(1).propose(b"b".to_vec()),
        Err(Error::TransferInProgress)
    );
    c.settle();
    assert_eq!(c.node(3).status().role, Role::Leader);
    assert_eq!(c.node(1).status().role, Role::Follower);
    assert_eq!(
        c.node(1).transfer_leader(9),
        Err(Error::NotLeader { leader: Some(3) })
    );
    assert_eq!(c.node(3).transfer_leader(9), Err(Error::UnknownPeer(9)));
}

/// Bad configuration and persisted state are refused with a clear error.
#[test]
fn bad_input_is_refused() {
    let e = Raft::new(Config::new(4, vec![1, 2, 3]), Persisted::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    let mut c = Config::new(1, vec![1, 2, 3]);
    c.election_ticks = 1;
    assert!(matches!(
        Raft::new(c, Persisted::default()),
        Err(Error::InvalidConfig(_))
    ));
    let p = Persisted {
        hard_state: HardState {
            term: 5,
            vote: None,
            commit: 9,
        },
        snapshot: None,
        entries: log_of(&[1, 2]),
    };
    let e = Raft::new(Config::new(1, vec![1, 2, 3]), p).unwrap_err();
    assert!(e.to_string().contains("commit index 9"), "{e}");
    let p = Persisted {
        hard_state: HardState::default(),
        snapshot: None,
        entries: vec![entry(2, 1)],
    };
    assert!(matches!(
        Raft::new(Config::new(1, vec![1, 2, 3]), p),
        Err(Error::InvalidPersisted(_))
    ));
    let mut r = Raft::new(Config::new(1, vec![1, 2, 3]), Persisted::default()).expect("valid");
    let m = Message {
        from: 2,
        to: 3,
        term: 1,
        body: MessageBody::TimeoutNow,
    };
    assert!(matches!(r.step(m), Err(Error::Misrouted { .. })));
    // A node outside the membership cannot start an election here.
    let m = Message {
        from: 9,
        to: 1,
        term: 7,
        body: MessageBody::TimeoutNow,
    };
    r.step(m).expect("accepted and ignored");
    assert_eq!((r.status().role, r.status().term), (Role::Follower, 0));
    assert_eq!(
        Bug::from_name("nope"),
        Err(Error::UnknownBug("nope".to_string()))
    );
}

// ---------------------------------------------------------------------------
// The simulator.

/// At least 500 seeds of a few hundred steps each, over both cluster sizes
/// and every fault profile. Prints what it checked.
#[test]
fn simulator_finds_no_violation_over_many_seeds() {
    let start = std::time::Instant::now();
    let mut totals = SoakTotals::default();
    let mut seed = 0;
    for profile in Profile::ALL {
        for nodes in [3, 5] {
            let seeds = if profile == Profile::Mixed { 300 } else { 60 };
            for _ in 0..seeds {
                let mut o = SimOptions::new(seed, nodes, 300);
                o.profile = profile;
                seed += 1;
                totals.add(sim::run(&o));
            }
        }
    }
    always_print(&format!(
        "raft simulator: {} seeds, {} steps, {} messages, {} acknowledged writes, {} reads, {} crashes ({} with a Ready not acted on) checked in {:.1}s",
        totals.seeds,
        totals.steps,
        totals.messages,
        totals.acked_writes,
        totals.reads,
        totals.crashes,
        totals.torn_readies,
        start.elapsed().as_secs_f64()
    ));
    let failures: Vec<String> = totals
        .failures
        .iter()
        .filter_map(|f| f.failure_text())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(totals.seeds >= 500);
    assert!(totals.acked_writes > 10_000, "the runs did real work");
}

/// Writes a line to stderr past libtest's capture (which only takes the
/// print macros), so `cargo test` always shows what the simulator checked.
fn always_print(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Runs seeds from 0 with `bug` on until the simulator reports a violation;
/// asserts it happens within `bound` seeds and prints how many it took.
fn caught_within(bug: Bug, profile: Profile, nodes: usize, bound: u64) {
    for seed in 0..bound {
        let mut o = SimOptions::new(seed, nodes, 300);
        o.bugs = vec![bug];
        o.profile = profile;
        let r = sim::run(&o);
        if let Some(v) = &r.violation {
            always_print(&format!(
                "{}: caught after {} seed(s) ({} at step {}; replay: {})",
                bug.name(),
                seed + 1,
                v.property.name(),
                v.step,
                o.replay_command()
            ));
            return;
        }
    }
    panic!(
        "{} was not caught within {bound} seeds ({} profile, {nodes} nodes)",
        bug.name(),
        profile.name()
    );
}

#[test]
fn simulator_catches_vote_without_log_check() {
    caught_within(Bug::VoteWithoutLogCheck, Profile::Mixed, 5, 50);
}

#[test]
fn simulator_catches_commit_previous_term() {
    caught_within(Bug::CommitPreviousTerm, Profile::Churn, 3, 3000);
}

#[test]
fn simulator_catches_forget_vote() {
    caught_within(Bug::ForgetVote, Profile::Crashes, 3, 300);
}

#[test]
fn simulator_catches_no_truncate_on_conflict() {
    caught_within(Bug::NoTruncateOnConflict, Profile::Mixed, 5, 100);
}

#[test]
fn simulator_catches_stale_leader_read() {
    caught_within(Bug::StaleLeaderRead, Profile::Partitions, 5, 100);
}

/// Every run is a pure function of its options.
#[test]
fn simulator_runs_are_deterministic() {
    let o = SimOptions::new(42, 5, 300);
    let a = sim::run(&o);
    let b = sim::run(&o);
    assert_eq!(
        (a.steps, a.messages, a.acked_writes, a.reads, a.crashes),
        (b.steps, b.messages, b.acked_writes, b.reads, b.crashes)
    );
    assert!(
        o.replay_command()
            .contains("--seed 42 --nodes 5 --steps 300")
    );
}
