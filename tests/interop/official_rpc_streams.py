"""An official-SDK participant for RPC and data-stream interop tests.

As "callee" it registers `echo` (answers the payload reversed) and `boom` (raises
RpcError 4001) and reads text streams on topic "t" (read_all) and byte streams on
topic "b" (async iteration); as "caller" it calls both and an unknown method, then
sends a 1.3 MB multi-byte text and a 3 MB file. Each side prints one JSON line of
what it saw (hashes of the streams, RPC answers and errors) and exits.

    official_rpc_streams.py URL TOKEN ROLE PEER
"""

import asyncio
import hashlib
import json
import os
import sys
import tempfile

from livekit import rtc


async def main() -> int:
    url, token, role, peer = sys.argv[1:5]
    room = rtc.Room()
    out: dict = {}
    done = asyncio.Event()
    tasks = set()
    await room.connect(url, token)
    lp = room.local_participant

    if role == "callee":

        @lp.register_rpc_method("echo")
        async def echo(data: rtc.RpcInvocationData) -> str:
            out["echo_caller"] = data.caller_identity
            return data.payload[::-1]

        def boom(data: rtc.RpcInvocationData) -> str:
            raise rtc.RpcError(4001, "custom", "data!")

        lp.register_rpc_method("boom", boom)

        def check() -> None:
            if "text" in out and "bytes" in out:
                done.set()

        def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
            async def read() -> None:
                text = await reader.read_all()
                out["text"] = hashlib.sha256(text.encode()).hexdigest()
                out["text_info"] = [sender, reader.info.topic, reader.info.size, reader.info.attributes]
                check()

            t = asyncio.ensure_future(read())
            tasks.add(t)

        def on_bytes(reader: rtc.ByteStreamReader, sender: str) -> None:
            async def read() -> None:
                data = bytearray()
                async for chunk in reader:
                    data += chunk
                out["bytes"] = hashlib.sha256(bytes(data)).hexdigest()
                out["bytes_info"] = [sender, reader.info.name, reader.info.size, reader.info.mime_type]
                check()

            t = asyncio.ensure_future(read())
            tasks.add(t)

        room.register_text_stream_handler("t", on_text)
        room.register_byte_stream_handler("b", on_bytes)
        print(json.dumps({"ready": True}), flush=True)
        try:
            await asyncio.wait_for(done.wait(), 60)
        except asyncio.TimeoutError:
            out["timeout"] = True
    else:
        while peer not in [p.identity for p in room.remote_participants.values()]:
            await asyncio.sleep(0.05)
        # The callee registers its methods right after joining.
        await asyncio.sleep(1.0)
        out["echo"] = await lp.perform_rpc(destination_identity=peer, method="echo", payload="hello")
        for method in ["boom", "nope"]:
            try:
                await lp.perform_rpc(destination_identity=peer, method=method, payload="x")
                out[method] = "no error"
            except rtc.RpcError as e:
                out[method] = [e.code, e.message, e.data]
        text = "héllo wörld 🦀 " * 70000
        out["text"] = hashlib.sha256(text.encode()).hexdigest()
        await lp.send_text(text, topic="t", attributes={"a": "1"})
        data = os.urandom(3_000_000)
        with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
            f.write(data)
        out["bytes"] = hashlib.sha256(data).hexdigest()
        info = await lp.send_file(f.name, topic="b")
        os.unlink(f.name)
        out["file_info"] = [info.name, info.size]
        # Stay until the callee has read everything (it leaves first).
        for _ in range(600):
            if not room.remote_participants:
                break
            await asyncio.sleep(0.1)
    print(json.dumps(out), flush=True)
    await room.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
