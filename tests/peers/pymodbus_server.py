#!/usr/bin/env python3
"""An independent Modbus server (pymodbus) for fieldgate's bus conformance tests.

Units 1 and 2 by default, each with 100 coils, discrete inputs, holding and input registers.
Input register i holds 100 * unit + i, so a test can tell units and addresses apart.

    pymodbus_server.py tcp 127.0.0.1:0      -> prints "pymodbus ready 127.0.0.1:PORT"
    pymodbus_server.py rtu /dev/pts/N 9600  -> prints "pymodbus ready /dev/pts/N"

Options (after the positional arguments):
    --units 1,2,3,4     the units that exist (ranges too: --units 1-200)
    --off 4,7           units that are switched off: requests to them get no answer at all
    --log-writes        print "write UNIT FC ADDRESS UNIX_MS" on stdout for every write
                        request the server receives (when it reaches the controller)
    --bad zero-coils    answer every coil read with a valid frame holding zero coils
    --bad echo          echo every single-coil write with another address

Needs: pip install pymodbus pyserial  (tested with pymodbus 3.16)
"""

import argparse
import asyncio
import sys
import time

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

WRITE_FUNCTIONS = {5, 6, 15, 16}


def device(unit: int) -> ModbusDeviceContext:
    # pymodbus keeps protocol address a at block address a + 1, so blocks start at 1.
    return ModbusDeviceContext(
        co=ModbusSequentialDataBlock(1, [False] * 100),
        di=ModbusSequentialDataBlock(1, [False] * 100),
        hr=ModbusSequentialDataBlock(1, [0] * 100),
        ir=ModbusSequentialDataBlock(1, [100 * unit + i for i in range(100)]),
    )


def units(text: str) -> list[int]:
    out = []
    for part in (p for p in text.split(",") if p):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def silencer(mode: str, off: list[int]):
    # pymodbus answers a unit it does not hold with an exception; a unit that is switched off
    # answers nothing, so its replies are dropped on the way out.
    unit_at = 6 if mode == "tcp" else 0

    def trace_packet(sending: bool, data: bytes) -> bytes:
        if sending and len(data) > unit_at and data[unit_at] in off:
            return b""
        return data

    return trace_packet


def tracer(log_writes: bool, bad: str | None):
    def trace_pdu(sending: bool, pdu):
        fc = getattr(pdu, "function_code", 0)
        if not sending and log_writes and fc in WRITE_FUNCTIONS:
            # Logged for switched-off units too: what matters is when a write was sent.
            ms = int(time.time() * 1000)
            print(f"write {pdu.dev_id} {fc} {pdu.address} {ms}", flush=True)
        if sending and bad == "zero-coils" and fc == 1:
            pdu.bits = []
        if sending and bad == "echo" and fc == 5:
            pdu.address += 1
        return pdu

    return trace_pdu


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["tcp", "rtu"])
    p.add_argument("where")
    p.add_argument("baud", nargs="?", type=int, default=9600)
    p.add_argument("--units", type=units, default=[1, 2])
    p.add_argument("--off", type=units, default=[])
    p.add_argument("--log-writes", action="store_true")
    p.add_argument("--bad", choices=["zero-coils", "echo"])
    a = p.parse_args()
    context = ModbusServerContext(devices={u: device(u) for u in a.units}, single=False)
    common = dict(
        trace_packet=silencer(a.mode, a.off),
        trace_pdu=tracer(a.log_writes, a.bad),
    )
    if a.mode == "tcp":
        host, port = a.where.rsplit(":", 1)
        server = ModbusTcpServer(context, address=(host, int(port)), **common)
        await server.serve_forever(background=True)
        bound = server.transport.sockets[0].getsockname()
        print(f"pymodbus ready {bound[0]}:{bound[1]}", flush=True)
    else:
        server = ModbusSerialServer(context, port=a.where, baudrate=a.baud, **common)
        await server.serve_forever(background=True)
        print(f"pymodbus ready {a.where}", flush=True)
    # Run until the test kills us (or stdin closes, so an orphan does not linger).
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


if __name__ == "__main__":
    asyncio.run(main())
