//! A door's stored events on its connection, socket-free: a window of QoS 1 publishes in
//! sequence order, PUBACKs matched to sequence numbers through the packet ids rumqttc
//! assigns, and a resend from the first unacknowledged event on the next connection (each
//! connection has a fresh client, so a PUBACK of the old one never arrives).

use std::collections::{HashMap, VecDeque};

/// Events of one door in flight at once: enough to keep a connection busy at the gateway's
/// send rate, well inside rumqttc's in-flight limit (the link's other QoS 1 publishes need
/// room too).
pub(crate) const WINDOW: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Outflow {
    /// The next sequence number to read from the store (events below it are in flight,
    /// acknowledged or gone).
    next: u64,
    /// Events sent on this connection, in order: (seq, acknowledged).
    inflight: VecDeque<(u64, bool)>,
    /// QoS 1 publishes handed to the client whose packet id is not known yet, in the
    /// order the event loop will number them: an event's seq, or `None` for other telemetry.
    unnumbered: VecDeque<Option<u64>>,
    by_pkid: HashMap<u16, u64>,
}

impl Outflow {
    /// Where to read from, if the window has room and the store has newer events than those
    /// sent (`head`: the sequence number after the door's last stored event).
    pub(crate) fn wants(&self, head: u64) -> Option<u64> {
        (self.inflight.len() < WINDOW && self.next < head).then_some(self.next)
    }

    /// Nothing is stored below `head` any more (acknowledged or dropped).
    pub(crate) fn skip_to(&mut self, head: u64) {
        self.next = self.next.max(head);
    }

    /// Event `seq` was handed to the client at QoS 1.
    pub(crate) fn sent(&mut self, seq: u64) {
        self.inflight.push_back((seq, false));
        self.unnumbered.push_back(Some(seq));
        self.next = seq + 1;
    }

    /// Another QoS 1 publish was handed to the client (it takes a packet id too).
    pub(crate) fn sent_other(&mut self) {
        self.unnumbered.push_back(None);
    }

    /// The event loop wrote a PUBLISH with `pkid` (0 for QoS 0, which takes none).
    pub(crate) fn outgoing(&mut self, pkid: u16) {
        if pkid == 0 {
            return;
        }
        if let Some(Some(seq)) = self.unnumbered.pop_front() {
            self.by_pkid.insert(pkid, seq);
        }
    }

    /// The hub acknowledged `pkid`: the event's seq, if it was one.
    pub(crate) fn puback(&mut self, pkid: u16) -> Option<u64> {
        let seq = self.by_pkid.remove(&pkid)?;
        if let Some(e) = self.inflight.iter_mut().find(|(s, _)| *s == seq) {
            e.1 = true;
        }
        while self.inflight.front().is_some_and(|(_, acked)| *acked) {
            self.inflight.pop_front();
        }
        Some(seq)
    }

    /// The connection ended: what was not acknowledged is sent again on the next one.
    pub(crate) fn connection_lost(&mut self) {
        if let Some((seq, _)) = self.inflight.iter().find(|(_, acked)| !acked) {
            self.next = *seq;
        }
        self.inflight.clear();
        self.unnumbered.clear();
        self.by_pkid.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_pubacks_and_resend_after_a_lost_connection() {
        let mut o = Outflow::default();
        assert_eq!(o.wants(0), None, "nothing stored");
        assert_eq!(o.wants(4), Some(0), "from the first stored event");
        for seq in 1..=3 {
            o.sent(seq);
        }
        o.sent_other();
        o.sent(4);
        assert_eq!(o.wants(5), None, "everything stored is in flight");
        o.outgoing(0); // a QoS 0 publish in between
        for pkid in 1..=5 {
            o.outgoing(pkid);
        }
        assert_eq!(o.puback(4), None, "the other telemetry");
        assert_eq!(o.puback(2), Some(2));
        assert_eq!(o.puback(1), Some(1));
        assert_eq!(o.puback(9), None);
        o.connection_lost();
        assert_eq!(o.wants(5), Some(3), "resend from the first unacknowledged");
        o.skip_to(5);
        assert_eq!(o.wants(5), None);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut o = Outflow::default();
        for seq in 1..=WINDOW as u64 {
            assert!(o.wants(100).is_some());
            o.sent(seq);
        }
        assert_eq!(o.wants(100), None);
        o.outgoing(7);
        assert_eq!(o.puback(7), Some(1));
        assert_eq!(o.wants(100), Some(WINDOW as u64 + 1));
    }
}
