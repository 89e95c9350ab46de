//! Request planning: merges a group's points into as few read requests as the protocol allows
//! (at most 125 registers or 2000 bits each), never reading across an unmapped gap larger than the
//! link's `max_gap`.

use crate::config::{PointConfig, Table};

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// `(index into the group's points, offset from start)`.
    pub items: Vec<(usize, u16)>,
}

/// Plans the reads for `points`.
pub fn plan(points: &[PointConfig], max_gap: u16) -> Vec<ReadRequest> {
    let mut out: Vec<ReadRequest> = Vec::new();
    for table in [
        Table::Coil,
        Table::DiscreteInput,
        Table::Holding,
        Table::Input,
    ] {
        let mut idx: Vec<usize> = (0..points.len())
            .filter(|i| points.get(*i).is_some_and(|p| p.table == table))
            .collect();
        idx.sort_by_key(|i| points.get(*i).map(|p| p.address));
        let mut cur: Option<ReadRequest> = None;
        for i in idx {
            let Some(p) = points.get(i) else { continue };
            let (a, w) = (u32::from(p.address), u32::from(p.width()));
            if let Some(r) = cur.as_mut() {
                let start = u32::from(r.start);
                let end = start + u32::from(r.count);
                let new_end = end.max(a + w);
                let gap = a.saturating_sub(end);
                if gap <= u32::from(max_gap) && new_end - start <= u32::from(table.max_count()) {
                    r.count = (new_end - start) as u16;
                    r.items.push((i, (a - start) as u16));
                    continue;
                }
                out.extend(cur.take());
            }
            cur = Some(ReadRequest {
                table,
                start: p.address,
                count: w as u16,
                items: vec![(i, 0)],
            });
        }
        out.extend(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::config::DataType;

    fn p(name: &str, table: Table, address: u16, t: DataType) -> PointConfig {
        let mut p = PointConfig::for_tests(name, t);
        p.table = table;
        p.address = address;
        p
    }

    #[test]
    fn merges_adjacent_and_small_gaps_only() {
        let pts = vec![
            p("a", Table::Holding, 0, DataType::U16),
            p("b", Table::Holding, 1, DataType::F32),
            p("c", Table::Holding, 5, DataType::U16), // gap of 2
            p("d", Table::Holding, 40, DataType::U16), // gap of 34
            p("e", Table::Coil, 3, DataType::Bool),
            p("f", Table::Coil, 0, DataType::Bool),
        ];
        let r = plan(&pts, 4);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].table, r[0].start, r[0].count), (Table::Coil, 0, 4));
        assert_eq!((r[1].start, r[1].count), (0, 6));
        assert_eq!(r[1].items, vec![(0, 0), (1, 1), (2, 5)]);
        assert_eq!((r[2].start, r[2].count), (40, 1));
    }

    #[test]
    fn respects_protocol_maximum() {
        let pts: Vec<_> = (0..300)
            .map(|i| p(&format!("r{i}"), Table::Input, i, DataType::U16))
            .collect();
        let r = plan(&pts, 0);
        assert_eq!(
            r.iter().map(|r| r.count).collect::<Vec<_>>(),
            vec![125, 125, 50]
        );
        let bits: Vec<_> = (0..2500)
            .map(|i| p(&format!("b{i}"), Table::DiscreteInput, i, DataType::Bool))
            .collect();
        let r = plan(&bits, 0);
        assert_eq!(
            r.iter().map(|r| r.count).collect::<Vec<_>>(),
            vec![2000, 500]
        );
    }
}
