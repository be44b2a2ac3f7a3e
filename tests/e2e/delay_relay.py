#!/usr/bin/python3
"""A TCP relay that adds a fixed one-way latency, for kernels without `netem`.

  delay_relay.py --listen HOST:PORT --to HOST:PORT --delay MS [--ready-file F]
                 [--exit-with-parent PID]

Every connection accepted on --listen is forwarded to --to. Each chunk read in either direction
is written out DELAY ms after it was read, in order. A chunk read at time t leaves at t + DELAY
whatever is queued ahead of it: the deadlines of one direction only grow, so waiting for the
head of the queue never holds the chunks behind it past their own deadlines, and all chunks due
by then leave in one write. Half-closes are passed on after the data before them. --delay 0
forwards at once (the relay's own cost only: ~0.1 ms per direction on a loaded 2-core VM).
Measured lateness past the deadline: ~0.1 ms (timer wake-up of an idle process).

Standard library only (Debian's /usr/bin/python3). Stops on SIGTERM / SIGINT.
"""
import argparse
import asyncio
import collections
import ctypes
import os
import selectors
import signal
import socket
import sys

CHUNK = 1 << 18


def parse_addr(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got '{text}'")
    return host, int(port)


def no_delay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def pump(reader, writer, delay, counts, key):
    """Copies reader -> writer, each chunk `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    pending = collections.deque()  # (due, data); b"" = end of stream
    arrived = asyncio.Event()

    async def read_side():
        try:
            while True:
                data = await reader.read(CHUNK)
                pending.append((loop.time() + delay, data))
                arrived.set()
                if not data:
                    return
        except (ConnectionError, OSError):
            pending.append((loop.time(), b""))
            arrived.set()

    async def write_side():
        try:
            while True:
                if not pending:
                    arrived.clear()
                    await arrived.wait()
                    continue
                wait = pending[0][0] - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                # The chunk that was waited for, and whatever else is due by now, in one write.
                now = loop.time()
                batch, eof = [], False
                while pending and pending[0][0] <= now and not eof:
                    data = pending.popleft()[1]
                    eof = not data
                    batch.append(data)
                out = b"".join(batch)
                if out:
                    writer.write(out)
                    counts[key] += len(out)
                if eof:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                # Back-pressure only when the far side is slow: small writes go out at once.
                if writer.transport.get_write_buffer_size() > 4 * CHUNK:
                    await writer.drain()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(read_side(), write_side())


async def handle(client_reader, client_writer, target, delay):
    peer = client_writer.get_extra_info("peername")
    peer = f"{peer[0]}:{peer[1]}" if peer else "?"
    print(f"[relay] connection from {peer}", file=sys.stderr, flush=True)
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError as e:
        print(f"[relay] cannot reach {target[0]}:{target[1]}: {e}", file=sys.stderr, flush=True)
        client_writer.close()
        return
    no_delay(client_writer)
    no_delay(server_writer)
    counts = {"up": 0, "down": 0}
    try:
        await asyncio.gather(pump(client_reader, server_writer, delay, counts, "up"),
                             pump(server_reader, client_writer, delay, counts, "down"))
    finally:
        print(f"[relay] connection from {peer} closed: {counts['up']} bytes forwarded, "
              f"{counts['down']} bytes back", file=sys.stderr, flush=True)
        for w in (client_writer, server_writer):
            try:
                w.close()
                await w.wait_closed()
            except (ConnectionError, OSError):
                pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", type=parse_addr, required=True)
    ap.add_argument("--to", type=parse_addr, required=True)
    ap.add_argument("--delay", type=float, default=1.0, help="one-way delay in ms")
    ap.add_argument("--ready-file", help="written once listening (tests)")
    ap.add_argument("--exit-with-parent", type=int, default=0, metavar="PID",
                    help="stop when process PID is no longer this relay's parent")
    args = ap.parse_args()
    delay = max(0.0, args.delay) / 1000.0
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await asyncio.start_server(lambda r, w: handle(r, w, args.to, delay), *args.listen,
                                        reuse_address=True)
    print(f"[relay] {args.listen[0]}:{args.listen[1]} -> {args.to[0]}:{args.to[1]}, "
          f"{args.delay:g} ms each way", file=sys.stderr, flush=True)
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write("ready\n")
        os.replace(args.ready_file + ".tmp", args.ready_file)
    if args.exit_with_parent > 0:
        async def watch_parent():
            while os.getppid() == args.exit_with_parent:
                await asyncio.sleep(0.25)
            if not stop.done():
                stop.set_result(None)
        parent_watch = asyncio.ensure_future(watch_parent())  # (a reference keeps it alive)
    async with server:
        await stop
    if args.exit_with_parent > 0:
        parent_watch.cancel()


if __name__ == "__main__":
    # Timers as exact as the kernel allows: select() takes microsecond timeouts where epoll and
    # poll round up to whole milliseconds (a relay has only a few sockets), and a timer slack
    # of 1 ns instead of the default 50 us. Chunks still go out ~0.1 ms late (wake-up latency).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(
            selectors.SelectSelector())) as runner:
        runner.run(main())
