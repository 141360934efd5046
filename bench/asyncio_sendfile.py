"""The alternative serve could have used instead of nginx: a small asyncio HTTP/1.1 file
server with `loop.sendfile` (zero-copy, keep-alive, GET only). bench/storm.py runs it beside
nginx so the choice is measured, not assumed.

    python3 bench/asyncio_sendfile.py --root DIR --listen ADDR --port P
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

MAX_HEADER = 16 * 1024


async def handle(root: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEADER:
                break
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            path = (root / target.lstrip("/")).resolve()
            if method != "GET" or root not in path.parents or not path.is_file():
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                continue
            with path.open("rb") as f:
                size = path.stat().st_size
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n".encode()
                )
                await writer.drain()
                await loop.sendfile(writer.transport, f)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    root = args.root.resolve()
    server = await asyncio.start_server(
        lambda r, w: handle(root, r, w), args.listen, args.port, backlog=4096, limit=MAX_HEADER
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
