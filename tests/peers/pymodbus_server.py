#!/usr/bin/env python3
"""An independent Modbus server (pymodbus) for fieldgate's bus conformance tests.

Units 1 and 2, each with 100 coils, discrete inputs, holding and input registers.
Input register i holds 100 * unit + i, so a test can tell units and addresses apart.

    pymodbus_server.py tcp 127.0.0.1:0      -> prints "pymodbus ready 127.0.0.1:PORT"
    pymodbus_server.py rtu /dev/pts/N 9600  -> prints "pymodbus ready /dev/pts/N"

Needs: pip install pymodbus pyserial  (tested with pymodbus 3.16)
"""

import asyncio
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer


def device(unit: int) -> ModbusDeviceContext:
    # pymodbus keeps protocol address a at block address a + 1, so blocks start at 1.
    return ModbusDeviceContext(
        co=ModbusSequentialDataBlock(1, [False] * 100),
        di=ModbusSequentialDataBlock(1, [False] * 100),
        hr=ModbusSequentialDataBlock(1, [0] * 100),
        ir=ModbusSequentialDataBlock(1, [100 * unit + i for i in range(100)]),
    )


async def main() -> None:
    mode, where = sys.argv[1], sys.argv[2]
    context = ModbusServerContext(devices={1: device(1), 2: device(2)}, single=False)
    if mode == "tcp":
        host, port = where.rsplit(":", 1)
        server = ModbusTcpServer(context, address=(host, int(port)))
        await server.serve_forever(background=True)
        bound = server.transport.sockets[0].getsockname()
        print(f"pymodbus ready {bound[0]}:{bound[1]}", flush=True)
    elif mode == "rtu":
        baud = int(sys.argv[3]) if len(sys.argv) > 3 else 9600
        server = ModbusSerialServer(context, port=where, baudrate=baud)
        await server.serve_forever(background=True)
        print(f"pymodbus ready {where}", flush=True)
    else:
        sys.exit(f"unknown mode {mode!r}: use tcp or rtu")
    # Run until the test kills us (or stdin closes, so an orphan does not linger).
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


if __name__ == "__main__":
    asyncio.run(main())
