//! Line-speed emulation: how long a request and its answer occupy an RS-485 line.
//!
//! Pure arithmetic on RTU frame sizes (address + PDU + CRC), 11 bits per character
//! (start + 8 data + parity/stop + stop) and the 3.5-character silence that ends each frame.

use std::time::{Duration, Instant};

use tokio_modbus::{Request, Response};

const BITS_PER_CHAR: u64 = 11;
/// Unit address before the PDU and CRC after it.
const RTU_OVERHEAD: usize = 3;

fn bit_bytes(n: usize) -> usize {
    n.div_ceil(8)
}

/// Size of the request PDU (function code included).
pub(super) fn request_pdu_len(req: &Request<'_>) -> usize {
    match req {
        Request::ReadCoils(..)
        | Request::ReadDiscreteInputs(..)
        | Request::ReadHoldingRegisters(..)
        | Request::ReadInputRegisters(..)
        | Request::WriteSingleCoil(..)
        | Request::WriteSingleRegister(..) => 5,
        Request::WriteMultipleCoils(_, v) => 6 + bit_bytes(v.len()),
        Request::WriteMultipleRegisters(_, v) => 6 + 2 * v.len(),
        _ => 5,
    }
}

/// Size of the response PDU; `None` is an exception response.
pub(super) fn response_pdu_len(resp: Option<&Response>) -> usize {
    match resp {
        None => 2,
        Some(Response::ReadCoils(v) | Response::ReadDiscreteInputs(v)) => 2 + bit_bytes(v.len()),
        Some(Response::ReadHoldingRegisters(v) | Response::ReadInputRegisters(v)) => {
            2 + 2 * v.len()
        }
        Some(_) => 5,
    }
}

/// Time on the wire for a request of `req_pdu` bytes and an answer of `resp_pdu` bytes
/// (`None`: no answer at all) at `baud`, including one inter-frame silence after each frame.
pub fn transaction_time(baud: u32, req_pdu: usize, resp_pdu: Option<usize>) -> Duration {
    let frames = [Some(req_pdu), resp_pdu];
    let chars_x2: u64 = frames
        .iter()
        .flatten()
        .map(|pdu| 2 * (pdu + RTU_OVERHEAD) as u64 + 7) // 3.5 chars silence, doubled
        .sum();
    let micros = chars_x2 * BITS_PER_CHAR * 1_000_000 / (2 * u64::from(baud.max(1)));
    Duration::from_micros(micros)
}

/// How much of a wait is spun rather than slept: a thread sleep wakes late by the timer
/// slack (50 µs by default) plus scheduling.
const SPIN: Duration = Duration::from_micros(200);

/// Blocks the calling thread until `until`, to within a few microseconds: sleeps most of the
/// way and spins the rest. For a blocking thread (`spawn_blocking`), never an async task.
pub(super) fn sleep_precisely(until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    if left > SPIN {
        std::thread::sleep(left - SPIN);
    }
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_of_two_registers_at_9600_baud() {
        // Request 8 bytes, response 9 bytes, plus 2 × 3.5 silences = 24 chars × 11 bits.
        let req = Request::ReadHoldingRegisters(0, 2);
        let resp = Response::ReadHoldingRegisters(vec![1, 2]);
        let t = transaction_time(
            9600,
            request_pdu_len(&req),
            Some(response_pdu_len(Some(&resp))),
        );
        assert_eq!(t, Duration::from_micros(24 * 11 * 1_000_000 / 9600));
    }

    #[test]
    fn precise_sleep_never_returns_early() {
        for micros in [0, 50, 300, 2_000] {
            let until = Instant::now() + Duration::from_micros(micros);
            sleep_precisely(until);
            assert!(Instant::now() >= until);
        }
    }

    #[test]
    fn slower_lines_and_bigger_frames_take_longer() {
        let small = transaction_time(19200, 5, Some(7));
        assert!(transaction_time(9600, 5, Some(7)) > small);
        assert!(transaction_time(19200, 5, Some(253)) > small);
        assert!(transaction_time(19200, 5, None) < small);
    }
}
