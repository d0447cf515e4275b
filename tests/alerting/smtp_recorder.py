"""A tiny asyncio SMTP server that records messages (``smtpd`` left the stdlib in 3.12; aiosmtpd not needed).

Speaks just enough RFC 5321 for ``smtplib``: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT. ``rcpt_reply``
lets a test make the server refuse recipients (e.g. ``451`` transient or ``550`` permanent).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class SmtpRecorder:
    messages: list[dict] = field(default_factory=list)
    rcpt_reply: list[str] = field(default_factory=list)  # scripted RCPT replies, consumed in order
    server: asyncio.AbstractServer | None = None
    port: int = 0

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str):
            writer.write((line + "\r\n").encode())

        send("220 recorder ESMTP")
        mail_from, rcpts = None, []
        while True:
            raw = await reader.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                send("250-recorder")
                send("250 8BITMIME")
            elif verb == "HELO":
                send("250 recorder")
            elif verb == "MAIL":
                mail_from, rcpts = line.split(":", 1)[1].strip(), []
                send("250 OK")
            elif verb == "RCPT":
                reply = self.rcpt_reply.pop(0) if self.rcpt_reply else "250 OK"
                if reply.startswith("250"):
                    rcpts.append(line.split(":", 1)[1].strip())
                send(reply)
            elif verb == "DATA":
                send("354 end with <CRLF>.<CRLF>")
                data = []
                while True:
                    chunk = await reader.readline()
                    if chunk in (b".\r\n", b".\n", b""):
                        break
                    data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                self.messages.append({"from": mail_from, "to": rcpts, "data": b"".join(data)})
                send("250 queued")
            elif verb == "QUIT":
                send("221 bye")
                await writer.drain()
                break
            else:  # RSET, NOOP, anything else
                send("250 OK")
            await writer.drain()
        writer.close()

    async def start(self) -> "SmtpRecorder":
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
