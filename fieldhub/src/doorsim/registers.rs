//! The register map of one simulated door controller and how Modbus requests act on it.
//!
//! Pure: no sockets, no clocks. The map (it must match the demo profile exactly):
//! - coil 0 = lock (true = locked), coil 1 = alarm
//! - discrete input 0 = door open
//! - holding 0 = building (u16), 1 = floor (i16), 2-3 = open duration ms (u32, big-endian words),
//!   10 = mode (0 normal, 1 maintenance, 2 lockdown)
//! - input 0 = door state (0 closed, 1 open, 2 forced, 3 held), 1 = battery (×0.01 V),
//!   2-3 = event counter (u32, big-endian words)
//!
//! Any other address answers `IllegalDataAddress`, as a real controller does; a read that
//! spans a hole (holding 4-9) is refused as a whole.

use tokio_modbus::{ExceptionCode, Request, Response};

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Coil,
    DiscreteInput,
    Holding,
    Input,
}

/// A write the simulator accepted: what changed, on which unit, as the request carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub table: Table,
    pub addr: u16,
    /// Register values, or coil values as 0/1.
    pub values: Vec<u16>,
}

/// Holding registers that exist; everything else is a hole.
const HOLDING_ADDRS: [u16; 5] = [0, 1, 2, 3, 10];
const MODE_MAX: u16 = 2;

/// The state of one door controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub coils: [bool; 2],
    pub discrete: [bool; 1],
    /// Indexed by address; only [`HOLDING_ADDRS`] are reachable.
    pub holding: [u16; 11],
    pub input: [u16; 4],
}

impl Default for UnitState {
    fn default() -> Self {
        let mut holding = [0; 11];
        holding[0] = 1; // building
        holding[3] = 5000; // open duration 5000 ms (low word)
        UnitState {
            coils: [true, false],
            discrete: [false],
            holding,
            input: [0, 1320, 0, 0],
        }
    }
}

fn range(addr: u16, count: u16, len: usize) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let start = usize::from(addr);
    let end = start + usize::from(count);
    if count == 0 || end > len {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(start..end)
}

fn holding_range(addr: u16, count: u16) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let r = range(addr, count, 11)?;
    if r.clone().all(|a| HOLDING_ADDRS.contains(&(a as u16))) {
        Ok(r)
    } else {
        Err(ExceptionCode::IllegalDataAddress)
    }
}

impl UnitState {
    /// Applies one request. Returns the response and, for writes, what was written.
    pub fn apply(
        &mut self,
        request: &Request<'_>,
    ) -> Result<(Response, Option<Write>), ExceptionCode> {
        match request {
            Request::ReadCoils(addr, cnt) => {
                let r = range(*addr, *cnt, self.coils.len())?;
                Ok((Response::ReadCoils(self.coils[r].to_vec()), None))
            }
            Request::ReadDiscreteInputs(addr, cnt) => {
                let r = range(*addr, *cnt, self.discrete.len())?;
                Ok((
                    Response::ReadDiscreteInputs(self.discrete[r].to_vec()),
                    None,
                ))
            }
            Request::ReadHoldingRegisters(addr, cnt) => {
                let r = holding_range(*addr, *cnt)?;
                Ok((
                    Response::ReadHoldingRegisters(self.holding[r].to_vec()),
                    None,
                ))
            }
            Request::ReadInputRegisters(addr, cnt) => {
                let r = range(*addr, *cnt, self.input.len())?;
                Ok((Response::ReadInputRegisters(self.input[r].to_vec()), None))
            }
            Request::WriteSingleCoil(addr, value) => {
                self.write_coils(*addr, &[*value])?;
                let write = coil_write(*addr, &[*value]);
                Ok((Response::WriteSingleCoil(*addr, *value), Some(write)))
            }
            Request::WriteMultipleCoils(addr, values) => {
                self.write_coils(*addr, values)?;
                let write = coil_write(*addr, values);
                Ok((
                    Response::WriteMultipleCoils(*addr, values.len() as u16),
                    Some(write),
                ))
            }
            Request::WriteSingleRegister(addr, value) => {
                self.write_holding(*addr, &[*value])?;
                let write = holding_write(*addr, &[*value]);
                Ok((Response::WriteSingleRegister(*addr, *value), Some(write)))
            }
            Request::WriteMultipleRegisters(addr, values) => {
                self.write_holding(*addr, values)?;
                let write = holding_write(*addr, values);
                Ok((
                    Response::WriteMultipleRegisters(*addr, values.len() as u16),
                    Some(write),
                ))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    fn write_coils(&mut self, addr: u16, values: &[bool]) -> Result<(), ExceptionCode> {
        let r = range(addr, values.len() as u16, self.coils.len())?;
        let lock_before = self.coils[0];
        self.coils[r].copy_from_slice(values);
        if self.coils[0] != lock_before {
            self.count_event();
        }
        Ok(())
    }

    fn write_holding(&mut self, addr: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        let r = holding_range(addr, values.len() as u16)?;
        // Validate before changing anything: a refused write leaves the unit untouched.
        for (a, v) in r.clone().zip(values) {
            if a == 10 && *v > MODE_MAX {
                return Err(ExceptionCode::IllegalDataValue);
            }
        }
        self.holding[r].copy_from_slice(values);
        Ok(())
    }

    /// Lock changes are events, as on the real controller.
    fn count_event(&mut self) {
        let n = (u32::from(self.input[2]) << 16 | u32::from(self.input[3])).wrapping_add(1);
        self.input[2] = (n >> 16) as u16;
        self.input[3] = n as u16;
    }
}

fn coil_write(addr: u16, values: &[bool]) -> Write {
    Write {
        table: Table::Coil,
        addr,
        values: values.iter().map(|&b| u16::from(b)).collect(),
    }
}

fn holding_write(addr: u16, values: &[u16]) -> Write {
    Write {
        table: Table::Holding,
        addr,
        values: values.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn reads_the_documented_defaults() {
        let mut u = UnitState::default();
        let (r, w) = u.apply(&Request::ReadInputRegisters(0, 4)).unwrap();
        assert_eq!(r, Response::ReadInputRegisters(vec![0, 1320, 0, 0]));
        assert!(w.is_none());
        let (r, _) = u.apply(&Request::ReadCoils(0, 2)).unwrap();
        assert_eq!(r, Response::ReadCoils(vec![true, false]));
        let (r, _) = u.apply(&Request::ReadHoldingRegisters(0, 4)).unwrap();
        assert_eq!(r, Response::ReadHoldingRegisters(vec![1, 0, 0, 5000]));
    }

    #[test]
    fn unknown_addresses_are_illegal() {
        let mut u = UnitState::default();
        for req in [
            Request::ReadCoils(2, 1),
            Request::ReadCoils(1, 2),
            Request::ReadDiscreteInputs(1, 1),
            Request::ReadHoldingRegisters(4, 1),
            Request::ReadHoldingRegisters(0, 11),
            Request::ReadHoldingRegisters(11, 1),
            Request::ReadInputRegisters(4, 1),
            Request::WriteSingleRegister(5, 1),
            Request::WriteSingleCoil(7, true),
        ] {
            assert_eq!(
                u.apply(&req),
                Err(ExceptionCode::IllegalDataAddress),
                "{req:?}"
            );
        }
        assert_eq!(u, UnitState::default());
    }

    #[test]
    fn writes_change_state_and_are_reported() {
        let mut u = UnitState::default();
        let (_, w) = u.apply(&Request::WriteSingleCoil(0, false)).unwrap();
        assert_eq!(
            w,
            Some(Write {
                table: Table::Coil,
                addr: 0,
                values: vec![0]
            })
        );
        assert!(!u.coils[0]);
        assert_eq!(u.input[3], 1, "lock change counted as an event");
        let regs = [7u16, 0xFFFE, 0, 3000];
        let (_, w) = u
            .apply(&Request::WriteMultipleRegisters(0, Cow::Borrowed(&regs)))
            .unwrap();
        assert_eq!(w.unwrap().values, regs.to_vec());
        assert_eq!(&u.holding[..4], &regs);
    }

    #[test]
    fn invalid_mode_is_refused_without_change() {
        let mut u = UnitState::default();
        assert_eq!(
            u.apply(&Request::WriteSingleRegister(10, 3)),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(u.holding[10], 0);
        u.apply(&Request::WriteSingleRegister(10, 2)).unwrap();
        assert_eq!(u.holding[10], 2);
    }
}
