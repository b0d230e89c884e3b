"""An official-SDK peer for SIP DTMF interop: joins, sends `publish_dtmf(code=3,
digit="3")` once PEER is in the room, and prints one JSON line per DTMF it receives;
exits after the first one (or after TIMEOUT seconds).

    dtmf_peer.py URL TOKEN PEER TIMEOUT
"""

import asyncio
import json
import sys

from livekit import rtc


async def main() -> int:
    url, token, peer, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    room = rtc.Room()
    got = asyncio.Event()

    @room.on("sip_dtmf_received")
    def on_dtmf(dtmf: rtc.SipDTMF) -> None:
        sender = dtmf.participant.identity if dtmf.participant else None
        print(json.dumps({"event": "dtmf", "code": dtmf.code, "digit": dtmf.digit, "sender": sender}), flush=True)
        got.set()

    await room.connect(url, token)
    while peer not in [p.identity for p in room.remote_participants.values()]:
        await asyncio.sleep(0.05)
    await room.local_participant.publish_dtmf(code=3, digit="3")
    try:
        await asyncio.wait_for(got.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    await room.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
