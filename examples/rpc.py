"""Two participants call each other's methods over RPC.

The callee registers three methods: `greet` (async), `divide` (raises an
application error with its own code) and `slow` (takes longer than the caller
waits). The caller calls each of them and a method nobody registered, and prints
the answers and errors.

Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, e.g. a local server:

    python3 tests/lkserver.py -- python examples/rpc.py

Optional: LIVEKIT_ROOM (room name, default "rpc-demo").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from livekit import api, rtc


def make_token(identity: str, room: str) -> str:
    return (
        api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


def serve(participant: rtc.LocalParticipant) -> None:
    """The callee's methods."""

    @participant.register_rpc_method("greet")
    async def greet(data: rtc.RpcInvocationData) -> str:
        print(f"[callee] greet from {data.caller_identity}: {data.payload!r}")
        return f"Hello, {data.caller_identity}! You said: {data.payload}"

    def divide(data: rtc.RpcInvocationData) -> str:
        args = json.loads(data.payload)
        if args["b"] == 0:
            # An RpcError reaches the caller as is: code, message and data.
            raise rtc.RpcError(2001, "division by zero", data.payload)
        return json.dumps(args["a"] / args["b"])

    participant.register_rpc_method("divide", divide)

    @participant.register_rpc_method("slow")
    async def slow(data: rtc.RpcInvocationData) -> str:
        # Cancelled once the caller's response timeout has passed.
        await asyncio.sleep(data.response_timeout + 5)
        return "too late"


async def call(caller: rtc.LocalParticipant, method: str, payload: str, **kw: float) -> None:
    try:
        answer = await caller.perform_rpc(
            destination_identity="callee", method=method, payload=payload, **kw
        )
        print(f"[caller] {method} -> {answer!r}")
    except rtc.RpcError as e:
        label = "divide(1, 0)" if method == "divide" else method
        print(f"[caller] {label} failed: {e.code} {e.message}")


async def main() -> int:
    url = os.environ["LIVEKIT_URL"]
    room_name = os.environ.get("LIVEKIT_ROOM", "rpc-demo")
    async with rtc.Room() as callee, rtc.Room() as caller:
        await callee.connect(url, make_token("callee", room_name))
        serve(callee.local_participant)
        await caller.connect(url, make_token("caller", room_name))
        while "caller" not in callee.remote_participants:
            await asyncio.sleep(0.05)

        lp = caller.local_participant
        await call(lp, "greet", "hi")
        await call(lp, "divide", json.dumps({"a": 1, "b": 4}))
        await call(lp, "divide", json.dumps({"a": 1, "b": 0}))
        await call(lp, "nope", "")
        await call(lp, "slow", "", response_timeout=2.0)
    print("done")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
