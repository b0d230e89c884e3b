"""An official-SDK participant for the RPC interop tests.

Serves `echo` (the payload reversed), `custom` (RpcError 4001), `crash` (ValueError),
`hang` (never answers in time) and `big` (an answer of N characters). Unless
--serve-only, once PEER is in the room it calls PEER's `ours.echo`, `ours.custom`,
`ours.crash`, `ours.unknown` and `ours.slow` (1 s timeout), prints one JSON line per
result, and exits once its own calls are done and PEER has left or been silent for
a while.

    rpc_peer.py URL TOKEN PEER [--serve-only] [--timeout S]
"""

import argparse
import asyncio
import json
import sys

from livekit import rtc


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("peer")
    ap.add_argument("--serve-only", action="store_true")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    room = rtc.Room()
    peer_here = asyncio.Event()
    peer_gone = asyncio.Event()

    @room.on("participant_connected")
    def on_join(p: rtc.RemoteParticipant) -> None:
        if p.identity == args.peer:
            peer_here.set()

    @room.on("participant_disconnected")
    def on_leave(p: rtc.RemoteParticipant) -> None:
        if p.identity == args.peer:
            peer_gone.set()

    await room.connect(args.url, args.token)
    lp = room.local_participant

    @lp.register_rpc_method("echo")
    def echo(data: rtc.RpcInvocationData) -> str:
        return data.payload[::-1]

    @lp.register_rpc_method("custom")
    async def custom(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4001, "official says no", "details")

    @lp.register_rpc_method("crash")
    def crash(data: rtc.RpcInvocationData) -> str:
        raise ValueError("boom")

    @lp.register_rpc_method("hang")
    async def hang(data: rtc.RpcInvocationData) -> str:
        await asyncio.sleep(60)
        return ""

    @lp.register_rpc_method("big")
    def big(data: rtc.RpcInvocationData) -> str:
        return "b" * int(data.payload)

    emit(event="connected", identity=lp.identity)
    if any(p.identity == args.peer for p in room.remote_participants.values()):
        peer_here.set()
    try:
        await asyncio.wait_for(peer_here.wait(), args.timeout)
        if not args.serve_only:
            calls = [
                ("ours.echo", "world✓", None),
                ("ours.custom", "", None),
                ("ours.crash", "", None),
                ("ours.unknown", "", None),
                ("ours.slow", "", 1.0),
            ]
            for method, payload, timeout in calls:
                try:
                    answer = await lp.perform_rpc(
                        destination_identity=args.peer,
                        method=method,
                        payload=payload,
                        response_timeout=timeout,
                    )
                    emit(event="result", call=method, payload=answer)
                except rtc.RpcError as e:
                    emit(event="result", call=method, error=[e.code, e.message, e.data])
        await asyncio.wait_for(peer_gone.wait(), args.timeout)
        emit(event="done")
        return 0
    except asyncio.TimeoutError:
        emit(event="timeout")
        return 1
    finally:
        await room.disconnect()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
