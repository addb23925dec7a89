//! Read planning: coalesce the points polled on one unit into as few block reads as the
//! Modbus limits allow (125 registers, 2000 bits per request), bridging gaps of at most
//! `max_gap` unused addresses, and slice each block's reply back into per-point values.
//!
//! Pure: no bus, no clock. Plan once per unit (per profile); reuse the plan every cycle.

use super::request::{Op, Reply};

/// Registers per read request allowed by the Modbus specification.
pub const MAX_READ_REGISTERS: u16 = 125;
/// Coils or discrete inputs per read request allowed by the Modbus specification.
pub const MAX_READ_BITS: u16 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Coil,
    DiscreteInput,
    Holding,
    Input,
}

impl Table {
    /// The most addresses one read of this table may cover.
    pub fn read_limit(self) -> u16 {
        match self {
            Table::Coil | Table::DiscreteInput => MAX_READ_BITS,
            Table::Holding | Table::Input => MAX_READ_REGISTERS,
        }
    }
}

/// One polled value: `count` consecutive addresses of one table (2 registers for a u32, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Point {
    pub kind: Table,
    pub addr: u16,
    pub count: u16,
}

impl Point {
    fn end(&self) -> u32 {
        u32::from(self.addr) + u32::from(self.count)
    }
}

/// One read request covering some points; `points` are indices into the planned slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRead {
    pub table: Table,
    pub addr: u16,
    pub count: u16,
    pub points: Vec<usize>,
}

impl BlockRead {
    /// The bus operation that reads this block.
    pub fn op(&self) -> Op {
        let (addr, count) = (self.addr, self.count);
        match self.table {
            Table::Coil => Op::ReadCoils { addr, count },
            Table::DiscreteInput => Op::ReadDiscreteInputs { addr, count },
            Table::Holding => Op::ReadHolding { addr, count },
            Table::Input => Op::ReadInput { addr, count },
        }
    }

    /// The part of this block's values that belongs to `point`; `None` if the point is not
    /// in this block or the reply is shorter than the block.
    pub fn slice<'a, T>(&self, point: &Point, values: &'a [T]) -> Option<&'a [T]> {
        if point.kind != self.table || point.addr < self.addr {
            return None;
        }
        let start = usize::from(point.addr - self.addr);
        let end = start + usize::from(point.count);
        if end > usize::from(self.count) {
            return None;
        }
        values.get(start..end)
    }

    /// Calls `f` with each point the block covers and its part of `reply` as words (bits as
    /// 0/1), in place: the poll path decodes every reply, and copying each point's part into
    /// vectors of its own cost an allocation per point per cycle. `false`, without calling
    /// `f`, when the reply does not fit the block (wrong kind or too short).
    pub fn each_point(
        &self,
        points: &[Point],
        reply: &Reply,
        mut f: impl FnMut(usize, &[u16]),
    ) -> bool {
        let fits = self.points.iter().all(|&i| {
            points.get(i).is_some_and(|p| match reply {
                Reply::Bits(bits) => self.slice(p, bits).is_some(),
                Reply::Words(words) => self.slice(p, words).is_some(),
                Reply::Written => false,
            })
        });
        if !fits {
            return false;
        }
        for &i in &self.points {
            let p = &points[i];
            match reply {
                Reply::Words(words) => f(i, self.slice(p, words).unwrap_or_default()),
                Reply::Bits(bits) => {
                    let bits = self.slice(p, bits).unwrap_or_default();
                    let mut small = [0u16; 16];
                    if bits.len() <= small.len() {
                        for (w, b) in small.iter_mut().zip(bits) {
                            *w = u16::from(*b);
                        }
                        f(i, &small[..bits.len()]);
                    } else {
                        let words: Vec<u16> = bits.iter().map(|b| u16::from(*b)).collect();
                        f(i, &words);
                    }
                }
                Reply::Written => {}
            }
        }
        true
    }
}

/// Plans block reads for the points of one unit. Points of each table are sorted by address
/// and merged while the gap between them is at most `max_gap` addresses and the block stays
/// within the table's read limit. Overlapping points share a block. Points with `count` 0
/// are ignored; a point larger than the limit gets a block of its own (the device will refuse
/// it; config validation should not let it through).
pub fn plan_reads(points: &[Point], max_gap: u16) -> Vec<BlockRead> {
    let mut order: Vec<usize> = (0..points.len()).filter(|&i| points[i].count > 0).collect();
    order.sort_by_key(|&i| (points[i].kind, points[i].addr, points[i].count));
    let mut blocks: Vec<BlockRead> = Vec::new();
    // (table, start, end) of the block being built, with u32 ends so 65535 + 1 fits.
    let mut open: Option<(Table, u32, u32)> = None;
    for i in order {
        let p = points[i];
        let limit = u32::from(p.kind.read_limit());
        if let (Some((table, start, end)), Some(block)) = (open.as_mut(), blocks.last_mut()) {
            let new_end = (*end).max(p.end());
            let gap = u32::from(p.addr).saturating_sub(*end);
            if *table == p.kind && gap <= u32::from(max_gap) && new_end - *start <= limit {
                *end = new_end;
                block.count = (new_end - *start) as u16;
                block.points.push(i);
                continue;
            }
        }
        open = Some((p.kind, u32::from(p.addr), p.end()));
        blocks.push(BlockRead {
            table: p.kind,
            addr: p.addr,
            count: p.count,
            points: vec![i],
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pt(kind: Table, addr: u16, count: u16) -> Point {
        Point { kind, addr, count }
    }

    #[test]
    fn door_profile_points_coalesce_per_table() {
        let points = [
            pt(Table::Coil, 0, 1),
            pt(Table::Input, 0, 1),
            pt(Table::Coil, 1, 1),
            pt(Table::Input, 1, 1),
            pt(Table::Input, 2, 2),
            pt(Table::Holding, 0, 1),
            pt(Table::Holding, 10, 1),
            pt(Table::DiscreteInput, 0, 1),
        ];
        let blocks = plan_reads(&points, 0);
        let ops: Vec<Op> = blocks.iter().map(BlockRead::op).collect();
        assert_eq!(
            ops,
            vec![
                Op::ReadCoils { addr: 0, count: 2 },
                Op::ReadDiscreteInputs { addr: 0, count: 1 },
                Op::ReadHolding { addr: 0, count: 1 },
                Op::ReadHolding { addr: 10, count: 1 },
                Op::ReadInput { addr: 0, count: 4 },
            ]
        );
        // A gap of 9 unused registers is bridged when allowed.
        let bridged = plan_reads(&points, 9);
        assert!(bridged
            .iter()
            .any(|b| b.op() == Op::ReadHolding { addr: 0, count: 11 }));
    }

    #[test]
    fn reply_slices_back_into_points() {
        let points = [
            pt(Table::Input, 2, 2),
            pt(Table::Input, 0, 1),
            pt(Table::Input, 1, 1),
        ];
        let blocks = plan_reads(&points, 0);
        assert_eq!(blocks.len(), 1);
        let parts = |reply: &Reply| {
            let mut out = Vec::new();
            let fits = blocks[0].each_point(&points, reply, |i, w| out.push((i, w.to_vec())));
            out.sort();
            fits.then_some(out)
        };
        assert_eq!(
            parts(&Reply::Words(vec![10, 1320, 0, 7])),
            Some(vec![(0, vec![0, 7]), (1, vec![10]), (2, vec![1320])])
        );
        assert_eq!(
            parts(&Reply::Words(vec![1])),
            None,
            "too short: nothing decoded"
        );
        let coils = [pt(Table::Coil, 0, 1), pt(Table::Coil, 3, 1)];
        let block = &plan_reads(&coils, 8)[0];
        let mut got = Vec::new();
        assert!(block.each_point(
            &coils,
            &Reply::Bits(vec![true, false, false, true]),
            |i, w| { got.push((i, w.to_vec())) }
        ));
        assert_eq!(got, vec![(0, vec![1]), (1, vec![1])]);
    }

    #[test]
    fn limits_split_blocks_and_top_address_fits() {
        let points: Vec<Point> = (0..300).map(|a| pt(Table::Holding, a, 1)).collect();
        let blocks = plan_reads(&points, 0);
        assert_eq!(
            blocks.iter().map(|b| b.count).collect::<Vec<_>>(),
            vec![125, 125, 50]
        );
        let top = plan_reads(&[pt(Table::Coil, 65535, 1), pt(Table::Coil, 65534, 1)], 0);
        assert_eq!(
            top[0].op(),
            Op::ReadCoils {
                addr: 65534,
                count: 2
            }
        );
    }

    fn arb_point() -> impl Strategy<Value = Point> {
        (0..4u8, 0..400u16).prop_flat_map(|(t, addr)| {
            let kind = [
                Table::Coil,
                Table::DiscreteInput,
                Table::Holding,
                Table::Input,
            ][usize::from(t)];
            (1..=kind.read_limit().min(130)).prop_map(move |count| pt(kind, addr, count))
        })
    }

    proptest! {
        #[test]
        fn every_point_covered_and_limits_respected(
            points in proptest::collection::vec(arb_point(), 0..60),
            max_gap in 0u16..20,
        ) {
            let blocks = plan_reads(&points, max_gap);
            let mut seen = vec![0u32; points.len()];
            for b in &blocks {
                prop_assert!(b.count >= 1 && b.count <= b.table.read_limit());
                for &i in &b.points {
                    seen[i] += 1;
                    let p = points[i];
                    prop_assert_eq!(p.kind, b.table);
                    prop_assert!(p.addr >= b.addr && p.end() <= u32::from(b.addr) + u32::from(b.count));
                    // The slice is exactly the point's addresses.
                    let values: Vec<u32> = (u32::from(b.addr)..u32::from(b.addr) + u32::from(b.count)).collect();
                    let s = b.slice(&p, &values).unwrap();
                    prop_assert_eq!(s.first().copied(), Some(u32::from(p.addr)));
                    prop_assert_eq!(s.len(), usize::from(p.count));
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1), "each point in exactly one block");
        }
    }
}
