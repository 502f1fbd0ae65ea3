"""A fast local webhook receiver for the benchmarks: HTTP/1.1 keep-alive on asyncio, answers every POST with 204 at
once and notes (webhook-id, arrival time). GET /stats answers what it noted as JSON [[id, unix time], ...];
GET /reset forgets. Run as a process of its own: python bench/_receiver.py PORT."""
import asyncio
import json
import sys
import time

seen = []


class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            lines = head.split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", 0))
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length:]
            method, path = lines[0].split(" ")[:2]
            if method == "POST":
                seen.append((headers.get("webhook-id", ""), time.time()))
                self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif path == "/stats":
                body = json.dumps(seen).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                     + str(len(body)).encode() + b"\r\n\r\n" + body)
            elif path == "/reset":
                seen.clear()
                self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")


async def main(port):
    server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
