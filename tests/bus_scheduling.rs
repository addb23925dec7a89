//! Bus scheduling against doorsim: operator priority, dead units, timeouts, deadlines,
//! queue bounds, and reconnecting after a timeout so late answers cannot be mismatched.

use std::time::Duration;

use fieldgate::bus::{BusError, Op, Priority, Reply, Transport};
use fieldhub::doorsim::{Fault, Listen, Table};
use tokio::time::{timeout, Instant};

use crate::support::bus::{options, sim, tcp, Bus, LIMIT};

#[tokio::test]
async fn operator_request_jumps_queued_polls() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    // Long enough for the slow answer; short enough that a write fits the 5 s deadline.
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(3))).await;
    // Unit 2 holds the bus with a slow answer while the other requests queue up.
    sim.handle
        .set_fault(2, Fault::Delay(Duration::from_millis(1500)));
    let h = bus.handle.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let slow = tokio::spawn(async move {
        h.call(
            2,
            Op::ReadInput { addr: 0, count: 1 },
            Priority::Poll,
            deadline,
        )
        .await
    });
    assert!(
        sim.handle.wait_requests(1, LIMIT).await,
        "slow request in flight"
    );

    let mut polls = Vec::new();
    for i in 0..3u16 {
        let h = bus.handle.clone();
        polls.push(tokio::spawn(async move {
            h.call(
                1,
                Op::WriteRegister {
                    addr: 0,
                    value: 100 + i,
                },
                Priority::Poll,
                deadline,
            )
            .await
        }));
        // Enqueue in a known order: wait until this one is counted in the queue.
        let depth = bus.metrics.bus_queue_depth.with_label_values(&["test-bus"]);
        timeout(LIMIT, async {
            while depth.get() < i64::from(i) + 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("poll queued");
    }
    assert_eq!(
        sim.handle.total_requests(),
        1,
        "polls still queued behind the slow one"
    );
    let operator = bus
        .call(
            1,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(operator, Ok(Reply::Written));
    for p in polls {
        assert_eq!(
            timeout(LIMIT, p).await.unwrap().unwrap(),
            Ok(Reply::Written)
        );
    }
    assert!(timeout(LIMIT, slow).await.unwrap().unwrap().is_ok());

    // The server saw: 1 = slow read, 2 = the operator write, then the three polls in order.
    let log = sim.handle.write_log();
    let order: Vec<(u64, Table)> = log.iter().map(|w| (w.seq, w.table)).collect();
    assert_eq!(
        order,
        vec![
            (2, Table::Coil),
            (3, Table::Holding),
            (4, Table::Holding),
            (5, Table::Holding)
        ]
    );
    assert_eq!(log[3].values, vec![102]);
    bus.stop().await;
}

#[tokio::test]
async fn dead_unit_fails_fast_while_other_units_keep_answering() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let op_timeout = Duration::from_millis(300);
    let mut opts = options(tcp(&sim), op_timeout);
    opts.retries = 1;
    let bus = Bus::start(opts).await;
    sim.handle.set_fault(2, Fault::NoReply);

    let started = Instant::now();
    let first = bus
        .call(2, Op::ReadInput { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert!(matches!(first, Err(BusError::Timeout { .. })), "{first:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the deadline"
    );
    assert_eq!(sim.handle.request_count(2), 2, "one try plus one retry");

    // Now dead: polls fail at once without touching the line ...
    for _ in 0..5 {
        let r = bus
            .call(2, Op::ReadInput { addr: 0, count: 1 }, Priority::Poll)
            .await;
        assert!(matches!(r, Err(BusError::UnitDown { .. })), "{r:?}");
    }
    assert_eq!(sim.handle.request_count(2), 2, "dead unit not polled");
    // ... while the other unit on the line answers.
    for _ in 0..5 {
        let r = bus
            .call(1, Op::ReadInput { addr: 1, count: 1 }, Priority::Poll)
            .await;
        assert_eq!(r, Ok(Reply::Words(vec![1320])));
    }
    // ... and so do operator requests while it is backed off; the error says when the next
    // probe is due.
    let write = Op::WriteCoil {
        addr: 0,
        value: false,
    };
    let r = bus.call(2, write.clone(), Priority::Operator).await;
    let Err(BusError::UnitDown {
        next_probe_in: Some(due),
        ..
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(sim.handle.request_count(2), 2, "refused without the line");
    // Once the backoff allows, the next request is the probe: one real try, no retry.
    tokio::time::sleep(due).await;
    let r = bus.call(2, write, Priority::Operator).await;
    assert!(matches!(r, Err(BusError::Timeout { .. })), "{r:?}");
    assert_eq!(sim.handle.request_count(2), 3);

    // The unit recovers: the next probe succeeds and polls flow again.
    sim.handle.set_fault(2, Fault::None);
    let r = bus
        .call(2, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await;
    let Err(BusError::UnitDown {
        next_probe_in: Some(due),
        ..
    }) = r
    else {
        panic!("{r:?}")
    };
    tokio::time::sleep(due).await;
    let r = bus
        .call(
            2,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    let r = bus
        .call(2, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Bits(vec![false])));
    bus.stop().await;
}

#[tokio::test]
async fn timeout_is_reported_within_the_configured_timeout_and_the_bus_recovers() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let op_timeout = Duration::from_millis(400);
    let mut opts = options(tcp(&sim), op_timeout);
    opts.retries = 0;
    let bus = Bus::start(opts).await;
    sim.handle.set_fault(1, Fault::NoReply);
    let started = Instant::now();
    let r = bus
        .call(1, Op::ReadCoils { addr: 0, count: 1 }, Priority::Operator)
        .await;
    let elapsed = started.elapsed();
    match r {
        Err(BusError::Timeout { after, .. }) => assert_eq!(after, op_timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        elapsed < op_timeout + Duration::from_secs(2),
        "took {elapsed:?}"
    );
    // The connection was reopened after the timeout and serves the next request.
    let r = bus
        .call(2, Op::ReadInput { addr: 1, count: 1 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Words(vec![1320])));
    let text = bus.metrics.render();
    assert!(
        text.contains(r#"function="read_coils",result="timeout"} 1"#),
        "{text}"
    );
    bus.stop().await;
}

#[tokio::test]
async fn deadline_bounds_the_transaction_and_expired_requests_never_reach_the_bus() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(10))).await;
    // A deadline shorter than the timeout wins.
    sim.handle.set_fault(1, Fault::NoReply);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let r = timeout(
        LIMIT,
        bus.handle.call(
            1,
            Op::ReadCoils { addr: 0, count: 1 },
            Priority::Poll,
            deadline,
        ),
    )
    .await
    .unwrap();
    assert!(matches!(r, Err(BusError::Timeout { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A request whose deadline passes while it waits behind a slow one is failed unsent.
    sim.handle
        .set_fault(2, Fault::Delay(Duration::from_millis(800)));
    let before = sim.handle.total_requests();
    let h = bus.handle.clone();
    let slow = tokio::spawn(async move {
        let d = Instant::now() + Duration::from_secs(10);
        h.call(2, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll, d)
            .await
    });
    assert!(sim.handle.wait_requests(before + 1, LIMIT).await);
    let short = Instant::now() + Duration::from_millis(100);
    let r = timeout(
        LIMIT,
        bus.handle.call(
            1,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
            short,
        ),
    )
    .await
    .unwrap();
    assert!(matches!(r, Err(BusError::DeadlineExpired { .. })), "{r:?}");
    assert!(timeout(LIMIT, slow).await.unwrap().unwrap().is_ok());
    assert_eq!(
        sim.handle.total_requests(),
        before + 1,
        "expired request never sent"
    );
    assert!(sim.handle.coil(1, 0), "nothing written");
    bus.stop().await;
}

#[tokio::test]
async fn full_queue_refuses_polls_but_keeps_room_for_operators() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let mut opts = options(tcp(&sim), Duration::from_secs(3));
    opts.queue_capacity = 4; // 1 operator slot, 3 poll slots
    let bus = Bus::start(opts).await;
    sim.handle
        .set_fault(2, Fault::Delay(Duration::from_millis(800)));
    let deadline = Instant::now() + Duration::from_secs(15);
    let h = bus.handle.clone();
    let slow = tokio::spawn(async move {
        h.call(
            2,
            Op::ReadCoils { addr: 0, count: 1 },
            Priority::Poll,
            deadline,
        )
        .await
    });
    assert!(sim.handle.wait_requests(1, LIMIT).await);
    let mut queued = Vec::new();
    let depth = bus.metrics.bus_queue_depth.with_label_values(&["test-bus"]);
    for i in 0..3 {
        let h = bus.handle.clone();
        queued.push(tokio::spawn(async move {
            h.call(
                1,
                Op::ReadCoils { addr: 0, count: 1 },
                Priority::Poll,
                deadline,
            )
            .await
        }));
        timeout(LIMIT, async {
            while depth.get() < i + 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }
    let refused = bus.handle.call(
        1,
        Op::ReadCoils { addr: 0, count: 1 },
        Priority::Poll,
        deadline,
    );
    let refused = timeout(LIMIT, refused).await.unwrap();
    assert!(
        matches!(refused, Err(BusError::QueueFull { .. })),
        "{refused:?}"
    );
    let operator = bus
        .call(
            1,
            Op::WriteCoil {
                addr: 1,
                value: true,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(operator, Ok(Reply::Written));
    for q in queued {
        assert!(timeout(LIMIT, q).await.unwrap().unwrap().is_ok());
    }
    assert!(timeout(LIMIT, slow).await.unwrap().unwrap().is_ok());
    bus.stop().await;
}

#[tokio::test]
async fn late_answer_after_a_timeout_is_never_taken_for_the_next_one() {
    // RTU framing has no transaction id: only the reconnect keeps a late answer out.
    let sim = sim(Listen::RtuOverTcp("127.0.0.1:0".parse().unwrap()), vec![1]).await;
    let transport = Transport::RtuOverTcp {
        addr: sim.local_addr.unwrap().to_string(),
    };
    let mut opts = options(transport, Duration::from_millis(300));
    opts.retries = 0;
    let bus = Bus::start(opts).await;
    sim.handle.set_holding(1, 1, 77);
    sim.handle
        .set_fault(1, Fault::Delay(Duration::from_millis(600)));
    let r = bus
        .call(1, Op::ReadHolding { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert!(matches!(r, Err(BusError::Timeout { .. })), "{r:?}");
    sim.handle.set_fault(1, Fault::None);
    // Same function, same length: a stale [1] would decode fine, so it must not arrive here.
    for _ in 0..3 {
        let r = bus
            .call(1, Op::ReadHolding { addr: 1, count: 1 }, Priority::Poll)
            .await;
        assert_eq!(r, Ok(Reply::Words(vec![77])));
    }
    bus.stop().await;
}

#[tokio::test]
async fn a_request_whose_caller_gave_up_is_not_sent() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(3))).await;
    sim.handle
        .set_fault(2, Fault::Delay(Duration::from_millis(600)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let h = bus.handle.clone();
    let slow = tokio::spawn(async move {
        h.call(
            2,
            Op::ReadCoils { addr: 0, count: 1 },
            Priority::Poll,
            deadline,
        )
        .await
    });
    assert!(sim.handle.wait_requests(1, LIMIT).await);
    // The caller stops waiting while its write is queued behind the slow read.
    let gave_up = timeout(
        Duration::from_millis(50),
        bus.handle.call(
            1,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
            deadline,
        ),
    )
    .await;
    assert!(gave_up.is_err());
    assert!(timeout(LIMIT, slow).await.unwrap().unwrap().is_ok());
    // A later request proves the queue moved past the abandoned one.
    let r = bus
        .call(1, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert_eq!(
        r,
        Ok(Reply::Bits(vec![true])),
        "abandoned write never applied"
    );
    assert!(sim.handle.write_log().is_empty());
    assert_eq!(sim.handle.total_requests(), 2);
    bus.stop().await;
}

#[tokio::test]
async fn a_failing_poll_gives_up_its_retries_to_a_waiting_operator_request() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let mut opts = options(tcp(&sim), Duration::from_millis(500));
    opts.retries = 3;
    let bus = Bus::start(opts).await;
    sim.handle.set_fault(2, Fault::NoReply);
    let h = bus.handle.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let poll = tokio::spawn(async move {
        h.call(
            2,
            Op::ReadCoils { addr: 0, count: 1 },
            Priority::Poll,
            deadline,
        )
        .await
    });
    assert!(sim.handle.wait_requests(1, LIMIT).await, "poll in flight");
    let r = bus
        .call(
            1,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    let polled = timeout(LIMIT, poll).await.unwrap().unwrap();
    assert!(
        matches!(polled, Err(BusError::Timeout { .. })),
        "{polled:?}"
    );
    assert_eq!(
        sim.handle.request_count(2),
        1,
        "no retry while the operator waited"
    );
    assert_eq!(
        sim.handle.write_log()[0].seq,
        2,
        "the write went right after the one try"
    );
    bus.stop().await;
}

/// Operator requests beyond the queue's operator share wait for room until their deadline
/// (a job reaching every door of a line at once), and one whose deadline passes while it
/// waits is never written.
#[tokio::test]
async fn operator_burst_beyond_the_queue_waits_for_room_and_expires_unwritten() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let mut opts = options(tcp(&sim), Duration::from_secs(10));
    opts.queue_capacity = 4; // 1 operator slot
    let bus = Bus::start(opts).await;
    sim.handle
        .set_fault(2, Fault::Delay(Duration::from_millis(500)));
    let far = Instant::now() + Duration::from_secs(15);
    let h = bus.handle.clone();
    let slow = tokio::spawn(async move {
        h.call(2, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll, far)
            .await
    });
    assert!(sim.handle.wait_requests(1, LIMIT).await);
    // The line is held for 500 ms: a write due in 50 ms cannot get through. It is sent
    // first, so it holds the only operator slot or waits for it; either way it expires.
    let soon = Instant::now() + Duration::from_millis(50);
    let expired = bus.handle.call(
        1,
        Op::WriteRegister {
            addr: 0,
            value: 7_777,
        },
        Priority::Operator,
        soon,
    );
    // doorsim's writable holding registers besides 0 (10, the mode, takes 0-2).
    let addrs = [1u16, 2, 3, 10];
    let value = |addr: u16| if addr == 10 { 2 } else { 100 + addr };
    let burst: Vec<_> = addrs
        .into_iter()
        .map(|addr| {
            let h = bus.handle.clone();
            tokio::spawn(async move {
                h.call(
                    1,
                    Op::WriteRegister {
                        addr,
                        value: value(addr),
                    },
                    Priority::Operator,
                    far,
                )
                .await
            })
        })
        .collect();
    let expired = timeout(LIMIT, expired).await.unwrap();
    assert!(
        matches!(expired, Err(BusError::DeadlineExpired { .. })),
        "{expired:?}"
    );
    for (addr, w) in addrs.into_iter().zip(burst) {
        let r = timeout(LIMIT, w).await.unwrap().unwrap();
        assert_eq!(r, Ok(Reply::Written), "write to register {addr}");
        assert_eq!(sim.handle.holding(1, addr), value(addr), "register {addr}");
    }
    assert!(timeout(LIMIT, slow).await.unwrap().unwrap().is_ok());
    assert_ne!(
        sim.handle.holding(1, 0),
        7_777,
        "the expired write never reached the door"
    );
    bus.stop().await;
}

fn cycle_reads() -> std::sync::Arc<[Op]> {
    vec![
        Op::ReadCoils { addr: 0, count: 1 },
        Op::ReadDiscreteInputs { addr: 0, count: 1 },
        Op::ReadInput { addr: 0, count: 2 },
    ]
    .into()
}

/// A door's poll cycle is one request to the bus, but not one block of line time: an
/// operator request that arrives during one of its reads goes before the next.
#[tokio::test]
async fn a_poll_cycle_gives_way_to_an_operator_between_its_reads() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(2))).await;
    sim.handle
        .set_fault(1, Fault::Delay(Duration::from_millis(300)));
    let h = bus.handle.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let cycle = tokio::spawn(async move { h.poll_cycle(1, cycle_reads(), deadline).await });
    assert!(
        sim.handle.wait_requests(1, LIMIT).await,
        "the cycle's first read is on the line"
    );
    let write = bus
        .call(
            2,
            Op::WriteCoil {
                addr: 0,
                value: true,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(write, Ok(Reply::Written));
    assert!(
        !cycle.is_finished(),
        "the operator went between the cycle's reads, not after all of them"
    );
    let results = timeout(LIMIT, cycle).await.unwrap().unwrap();
    assert_eq!(results.len(), 3);
    assert!(matches!(results[0], Ok(Reply::Bits(_))), "{results:?}");
    assert!(matches!(results[1], Ok(Reply::Bits(_))), "{results:?}");
    assert!(
        matches!(&results[2], Ok(Reply::Words(w)) if w.len() == 2),
        "{results:?}"
    );
    bus.stop().await;
}

/// A unit that stops answering during a cycle is not asked the cycle's remaining reads:
/// they are refused at once, and the line is free for the other units.
#[tokio::test]
async fn a_poll_cycle_stops_asking_a_unit_that_died_during_it() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2]).await;
    let mut opts = options(tcp(&sim), Duration::from_millis(200));
    opts.retries = 0;
    let bus = Bus::start(opts).await;
    sim.handle.set_fault(1, Fault::NoReply);
    let deadline = Instant::now() + Duration::from_secs(10);
    let four: std::sync::Arc<[Op]> = vec![
        Op::ReadCoils { addr: 0, count: 1 },
        Op::ReadCoils { addr: 1, count: 1 },
        Op::ReadCoils { addr: 2, count: 1 },
        Op::ReadCoils { addr: 3, count: 1 },
    ]
    .into();
    let results = timeout(LIMIT, bus.handle.poll_cycle(1, four, deadline))
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(BusError::Timeout { .. }))
            && matches!(results[1], Err(BusError::Timeout { .. })),
        "{results:?}"
    );
    assert!(
        results[2..]
            .iter()
            .all(|r| matches!(r, Err(BusError::UnitDown { .. }))),
        "dead after two timeouts, the rest refused: {results:?}"
    );
    let timeouts = bus
        .metrics
        .modbus_requests
        .with_label_values(&["test-bus", "read_coils", "timeout"])
        .get();
    assert_eq!(timeouts, 2, "only two reads reached the line");
    let other = bus
        .call(2, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert!(other.is_ok(), "{other:?}");
    bus.stop().await;
}

/// A line too slow for its doors' interval: six doors of one 100 ms read each on a 300 ms
/// scan, so half of each scan runs out of time unread. The doors whose cycle ran out of time
/// go first in the next scan, so every door is still read — not the first three every time
/// and the others never.
#[tokio::test]
async fn a_line_too_slow_for_its_doors_interval_still_reads_every_door() {
    use fieldgate::bus::standing::StandingPoll;
    use std::sync::{Arc, Mutex};

    let units: Vec<u8> = (1..=6).collect();
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), units.clone()).await;
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(1))).await;
    for &u in &units {
        sim.handle
            .set_fault(u, Fault::Delay(Duration::from_millis(100)));
    }
    let answered = Arc::new(Mutex::new(vec![0u32; units.len()]));
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut readers = Vec::new();
    for &u in &units {
        let every = Duration::from_millis(300);
        let mut feed = bus.handle.stand(StandingPoll {
            unit: u,
            ops: vec![Op::ReadCoils { addr: 0, count: 1 }].into(),
            every,
            budget: every,
            wanted: true,
            duration: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t"))
                .unwrap(),
        });
        let (answered, changed) = (Arc::clone(&answered), Arc::clone(&changed));
        readers.push(tokio::spawn(async move {
            // Nothing is ever settled: every cycle comes here.
            while let Some(results) = feed.next().await {
                if results.iter().all(Result::is_ok) {
                    answered.lock().unwrap()[usize::from(u) - 1] += 1;
                    changed.notify_one();
                }
            }
        }));
    }
    let every_door_twice = async {
        loop {
            let notified = changed.notified();
            if answered.lock().unwrap().iter().all(|&n| n >= 2) {
                return;
            }
            notified.await;
        }
    };
    let outcome = timeout(LIMIT, every_door_twice).await;
    let counts = answered.lock().unwrap().clone();
    assert!(
        outcome.is_ok(),
        "answered cycles per door after {LIMIT:?}: {counts:?}"
    );
    bus.stop().await;
    for r in readers {
        timeout(LIMIT, r).await.unwrap().unwrap();
    }
}
