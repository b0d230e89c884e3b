"""`Room`: one connection to a LiveKit room, its participants and its events.

A connected room owns native handles (the room, every participant). They are
released exactly once, by whichever comes first: `disconnect()` / `aclose()` /
`async with`, or the end of the room's event stream (`eos`) when the server ends the
session. Events reach the room on the loop that called `connect()`; events that
arrive while `connect()` is still finishing are held back and delivered, in order,
right after it returns, so handlers registered just after `await room.connect(...)`
miss nothing.

Tracks follow the official SDK's model: remote publications arrive with the connect
result and with `track_published`, their tracks with `track_subscribed`; local
publications are recorded by `publish_track` the moment its callback arrives, which
the core sends before `local_track_published`. Should a local track event come first
anyway, it is held until the publication is known.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Set, Union

from ._ffi_client import (
    FfiClient,
    FfiRequestError,
    owned_handles,
    read_buffer,
    room_event_handles,
)
from ._proto import ffi_pb2 as proto_ffi
from ._proto import participant_pb2 as proto_participant
from ._proto import room_pb2 as proto_room
from ._proto import stats_pb2 as proto_stats
from ._proto import track_pb2 as proto_track
from .data_stream import (
    ByteStreamHandler,
    ByteStreamReader,
    TextStreamHandler,
    TextStreamReader,
)
from .event_emitter import EventEmitter
from .log import logger
from .participant import LocalParticipant, Participant, RemoteParticipant, _connection_quality
from .track import RemoteAudioTrack, RemoteVideoTrack, Track
from .track_publication import LocalTrackPublication, RemoteTrackPublication, TrackPublication
from .transcription import TranscriptionSegment

EventTypes = Literal[
    "participant_connected",
    "participant_disconnected",
    "participant_active",
    "local_track_published",
    "local_track_unpublished",
    "local_track_republished",
    "local_track_subscribed",
    "track_published",
    "track_unpublished",
    "track_subscribed",
    "track_unsubscribed",
    "track_subscription_failed",
    "track_muted",
    "track_unmuted",
    "active_speakers_changed",
    "room_metadata_changed",
    "participant_metadata_changed",
    "participant_name_changed",
    "participant_attributes_changed",
    "connection_quality_changed",
    "participant_encryption_status_changed",
    "participant_permissions_changed",
    "transcription_received",
    "data_received",
    "sip_dtmf_received",
    "e2ee_state_changed",
    "connection_state_changed",
    "connected",
    "disconnected",
    "reconnecting",
    "reconnected",
    "room_updated",
    "moved",
    "token_refreshed",
]

# Local track events held until their publication is known (see the module doc).
_MAX_EARLY_LOCAL_EVENTS = 64

# How long disconnect() waits, after the core confirmed it, for the stream's last
# events (the "disconnected" event, eos) before releasing the room anyway.
_STREAM_END_TIMEOUT = 5.0


@dataclass
class RtcConfiguration:
    """WebRTC settings: which ICE candidates to use and which ICE servers to ask."""

    ice_transport_type: proto_room.IceTransportType.ValueType = proto_room.TRANSPORT_ALL
    continual_gathering_policy: proto_room.ContinualGatheringPolicy.ValueType = (
        proto_room.GATHER_CONTINUALLY
    )
    ice_servers: List[proto_room.IceServer] = field(default_factory=list)
    """STUN/TURN servers (``stun:``, ``turn:`` over UDP or TCP, ``turns:`` over TLS,
    with ``username`` and ``password``). When empty, those the server sends at join are
    used. TLS certificates are checked against the public and system roots
    (``SSL_CERT_FILE`` adds one)."""


@dataclass
class DataStreamOptions:
    max_payload_byte_length: Optional[int] = None
    """The most bytes an incoming data stream may carry; a longer one ends with
    `StreamError` at its reader. None: no limit beyond the reader's buffer bound."""


@dataclass
class RoomOptions:
    auto_subscribe: bool = True
    """Subscribe to remote tracks as they are published."""
    dynacast: bool = False
    e2ee: Optional[Any] = None
    """End-to-end encryption options; not supported yet (must stay None)."""
    encryption: Optional[Any] = None
    """The newer name of `e2ee`; not supported yet either (must stay None)."""
    rtc_config: Optional[RtcConfiguration] = None
    connect_timeout: Optional[float] = None
    """Seconds allowed for the join (signaling and transport); None: the core's default."""
    single_peer_connection: Optional[bool] = None
    data_stream: Optional[DataStreamOptions] = None
    """Options for incoming data streams."""


@dataclass
class DataPacket:
    data: bytes
    kind: proto_room.DataPacketKind.ValueType
    participant: Optional[RemoteParticipant]
    """The sender; None when a server-side API sent the packet."""
    topic: Optional[str] = None


@dataclass
class SipDTMF:
    code: int
    digit: str
    participant: Optional[RemoteParticipant] = None


@dataclass
class RtcStats:
    """What the room's two peer connections measured (`Room.get_rtc_stats`)."""

    publisher_stats: List[proto_stats.RtcStats]
    subscriber_stats: List[proto_stats.RtcStats]


class ConnectError(Exception):
    """`Room.connect` failed; `reason` says why (a `FailureReason` value)."""

    def __init__(
        self,
        message: str,
        reason: proto_room.FailureReason.ValueType = proto_room.FAILURE_OTHER,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class Room(EventEmitter[EventTypes]):
    """A LiveKit room; see the module doc for the lifecycle."""

    def __init__(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        super().__init__()
        # Events are delivered on the loop that runs connect(); `loop` is only a default.
        self._loop = loop
        self._info = proto_room.RoomInfo()
        self._handle: Optional[int] = None
        self._local: Optional[LocalParticipant] = None
        self._remote: Dict[str, RemoteParticipant] = {}
        self._state: proto_room.ConnectionState.ValueType = proto_room.CONN_DISCONNECTED
        self._failure_reason: proto_room.FailureReason.ValueType = proto_room.FAILURE_NONE
        self._token = ""
        self._server_url = ""
        self._connecting = False
        # Events held back until connect() has returned (None: deliver at once).
        self._backlog: Optional[List[proto_room.RoomEvent]] = None
        self._announce_connected = False
        self._closing: Optional[asyncio.Future[None]] = None
        self._sid_future: Optional[asyncio.Future[str]] = None
        self._text_stream_handlers: Dict[str, TextStreamHandler] = {}
        self._byte_stream_handlers: Dict[str, ByteStreamHandler] = {}
        self._stream_readers: Set[Union[TextStreamReader, ByteStreamReader]] = set()
        self._max_stream_payload: Optional[int] = None
        # Local track events ("published", "subscribed") by sid, for publications
        # not known yet.
        self._early_local: Dict[str, List[str]] = {}

    # ---- properties -----------------------------------------------------------------

    @property
    async def sid(self) -> str:
        """The room's sid; waits for the server to assign one if needed."""
        if self._info.sid:
            return self._info.sid
        if self._sid_future is None:
            self._sid_future = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._sid_future)

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def metadata(self) -> str:
        return self._info.metadata

    @property
    def num_participants(self) -> int:
        """Participants in the room, as the server last counted them."""
        return self._info.num_participants

    @property
    def num_publishers(self) -> int:
        """Participants publishing tracks, as the server last counted them."""
        return self._info.num_publishers

    @property
    def creation_time(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(
            self._info.creation_time / 1000, datetime.timezone.utc
        )

    @property
    def is_recording(self) -> bool:
        return self._info.active_recording

    @property
    def departure_timeout(self) -> float:
        """Seconds the room stays open after the last participant left."""
        return float(self._info.departure_timeout)

    @property
    def empty_timeout(self) -> float:
        """Seconds the room stays open while nobody ever joined."""
        return float(self._info.empty_timeout)

    @property
    def local_participant(self) -> LocalParticipant:
        if self._local is None:
            raise Exception("cannot access local participant before connecting")
        return self._local

    @property
    def remote_participants(self) -> Mapping[str, RemoteParticipant]:
        """Remote participants by identity."""
        return self._remote

    @property
    def connection_state(self) -> proto_room.ConnectionState.ValueType:
        return self._state

    @property
    def failure_reason(self) -> proto_room.FailureReason.ValueType:
        """Why the last connection ended (FAILURE_NONE while connected or after a
        client-initiated disconnect). Not in the official SDK."""
        return self._failure_reason

    def isconnected(self) -> bool:
        return self._handle is not None and self._state != proto_room.CONN_DISCONNECTED

    def on(
        self, event: EventTypes, callback: Optional[Callable[..., Any]] = None
    ) -> Callable[..., Any]:
        """Registers `callback` for `event`; without a callback, returns a decorator.

        Register before `connect()` to see every event. Handlers are plain functions
        (not coroutines) and may take fewer arguments than the event provides.
        """
        return super().on(event, callback)

    # ---- data streams ---------------------------------------------------------------

    def register_text_stream_handler(self, topic: str, handler: TextStreamHandler) -> None:
        """Calls `handler(reader, sender_identity)` for each incoming text stream on
        `topic`. Raises ValueError if the topic already has a handler."""
        if topic in self._text_stream_handlers:
            raise ValueError(f"text stream handler for topic '{topic}' already set")
        self._text_stream_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self._text_stream_handlers.pop(topic, None)

    def register_byte_stream_handler(self, topic: str, handler: ByteStreamHandler) -> None:
        """Calls `handler(reader, sender_identity)` for each incoming byte stream on
        `topic`. Raises ValueError if the topic already has a handler."""
        if topic in self._byte_stream_handlers:
            raise ValueError(f"byte stream handler for topic '{topic}' already set")
        self._byte_stream_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self._byte_stream_handlers.pop(topic, None)

    # ---- connection lifecycle -------------------------------------------------------

    async def connect(self, url: str, token: str, options: RoomOptions = RoomOptions()) -> None:
        """Joins the room at `url` (ws:// or wss://) with an access `token`.

        Raises `ConnectError` (with `.reason`) when the join fails. Cancelling the call
        (e.g. by `asyncio.wait_for`) abandons the join and releases whatever it made.
        """
        if self._connecting or self._handle is not None:
            raise ConnectError("the room is already connected or connecting")
        req = _connect_request(url, token, options)
        data_stream = options.data_stream
        self._max_stream_payload = data_stream.max_payload_byte_length if data_stream else None
        self._drain_backlog()  # leftovers of an earlier session, if any
        loop = self._loop = asyncio.get_running_loop()
        self._token = token
        self._server_url = url
        self._connecting = True
        self._backlog = []
        try:
            event = await FfiClient.instance().call(
                req, room_sink=self._on_room_event, on_late=self._abandon_connect
            )
            cb = event.connect
            if cb.WhichOneof("message") != "result":
                reason = proto_room.FAILURE_OTHER
                if cb.HasField("failure_reason"):
                    reason = cb.failure_reason
                raise ConnectError(cb.error or "connect failed", reason)
            self._adopt(cb.result)
        except FfiRequestError as e:
            raise ConnectError(str(e)) from None
        finally:
            self._connecting = False
            if self._handle is None:
                self._drain_backlog()  # nothing to deliver: drops what they hold
        self._announce_connected = True
        loop.call_soon(self._drain_backlog)
        # The core holds the room's events back until we say we can route them.
        ready = proto_ffi.FfiRequest()
        ready.ready_for_room_event.room_handle = self._handle or 0
        try:
            FfiClient.instance().request(ready)
        except FfiRequestError as e:  # the room is already gone; its eos will say so
            logger.debug("ready_for_room_event refused: %s", e)

    async def disconnect(
        self,
        *,
        reason: proto_participant.DisconnectReason.ValueType = proto_participant.CLIENT_INITIATED,
    ) -> None:
        """Leaves the room and releases it; does nothing when not connected. The
        others see `reason` as this participant's disconnect reason."""
        handle = self._handle
        if handle is None:
            return
        closing = self._closing
        if closing is not None:  # another disconnect() is under way
            await asyncio.shield(closing)
            return
        closing = self._closing = asyncio.get_running_loop().create_future()
        if self._local is not None:
            # Calls being served are answered (RECIPIENT_DISCONNECTED) while we can.
            await self._local._cancel_rpc_invocations()
        req = proto_ffi.FfiRequest()
        req.disconnect.room_handle = handle
        req.disconnect.reason = reason
        try:
            await FfiClient.instance().call(req)
            await asyncio.wait_for(asyncio.shield(closing), _STREAM_END_TIMEOUT)
        except (FfiRequestError, asyncio.TimeoutError) as e:
            logger.debug("disconnect did not finish cleanly: %s", e)
        finally:
            self._release()

    async def get_rtc_stats(self) -> RtcStats:
        """The statistics of the publisher and subscriber peer connections: each
        one's peer connection, data channels, transport, and the candidate pair in use
        with both candidates (a relay's server URL and protocol among them)."""
        if not self.isconnected() or self._handle is None:
            raise RuntimeError("the room isn't connected")
        req = proto_ffi.FfiRequest()
        req.get_session_stats.room_handle = self._handle
        cb = (await FfiClient.instance().call(req)).get_session_stats
        if cb.HasField("error"):
            raise RuntimeError(cb.error)
        return RtcStats(
            publisher_stats=list(cb.result.publisher_stats),
            subscriber_stats=list(cb.result.subscriber_stats),
        )

    async def aclose(self) -> None:
        """Disconnects and releases every native resource of the room now."""
        await self.disconnect()
        self._release()

    async def __aenter__(self) -> "Room":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _adopt(self, result: proto_room.ConnectCallback.Result) -> None:
        self._handle = result.room.handle.id
        self._info.CopyFrom(result.room.info)
        self._state = proto_room.CONN_CONNECTED
        self._failure_reason = proto_room.FAILURE_NONE
        local = self._local = LocalParticipant(result.local_participant)
        local._on_publication = self._on_local_publication
        self._remote = {}
        self._early_local = {}
        client = FfiClient.instance()
        loop = self._loop or asyncio.get_running_loop()
        client.add_route(
            "rpc_method_invocation",
            result.local_participant.handle.id,
            loop,
            lambda event: local._on_rpc_invocation(event.rpc_method_invocation),
        )
        for item in result.participants:
            participant = RemoteParticipant(item.participant)
            for owned in item.publications:
                publication = RemoteTrackPublication(owned)
                participant._track_publications[publication.sid] = publication
            self._add_remote(participant)
        if self._info.sid:
            self._set_sid(self._info.sid)

    def _abandon_connect(self, event: proto_ffi.FfiEvent) -> None:
        """A connect result nobody waits for any more: leave and release it."""
        if event.connect.HasField("result"):
            client = FfiClient.instance()
            client.close_room(event.connect.result.room.handle.id)
            for handle in owned_handles(event):
                client.drop_handle(handle)

    def _release(self) -> None:
        """Drops every handle of the current session, once; idempotent."""
        handle = self._handle
        if handle is None:
            return
        self._handle = None
        self._state = proto_room.CONN_DISCONNECTED
        client = FfiClient.instance()
        client.close_room(handle)
        for reader in list(self._stream_readers):
            reader._signal_disconnect()
        self._stream_readers.clear()
        if self._local is not None and self._local._handle is not None:
            client.remove_route("rpc_method_invocation", self._local._handle)
        for participant in self._remote.values():
            participant._release()
        self._remote = {}
        self._early_local = {}
        if self._local is not None:
            self._local._release()
        client.drop_handle(handle)
        if self._sid_future is not None and self._sid_future.done():
            self._sid_future = None  # the next session has its own sid
        closing, self._closing = self._closing, None
        if closing is not None and not closing.done():
            closing.set_result(None)

    # ---- events ---------------------------------------------------------------------

    def _on_room_event(self, event: proto_ffi.FfiEvent) -> None:
        """The room's sink, called on its loop once per event, in order."""
        if self._backlog is not None:
            self._backlog.append(event.room_event)
        else:
            self._handle_event(event.room_event)

    def _drain_backlog(self) -> None:
        backlog = self._backlog
        if backlog is None or self._connecting:
            return
        if self._announce_connected:
            self._announce_connected = False
            if self._handle is not None:
                self.emit("connected")
        i = 0
        while i < len(backlog):
            self._handle_event(backlog[i])
            i += 1
        self._backlog = None

    def _handle_event(self, event: proto_room.RoomEvent) -> None:
        if self._handle is None or event.room_handle != self._handle:
            # A stale event of a room already released: only free what it carries.
            client = FfiClient.instance()
            for handle in room_event_handles(event):
                client.drop_handle(handle)
            return
        try:
            self._dispatch(event)
        except Exception:
            logger.exception("failed to handle room event %s", event.WhichOneof("message"))

    def _dispatch(self, event: proto_room.RoomEvent) -> None:
        which = event.WhichOneof("message")
        if which == "participant_connected":
            participant = RemoteParticipant(event.participant_connected.info)
            self._add_remote(participant)
            self.emit("participant_connected", participant)
        elif which == "participant_disconnected":
            ev_pd = event.participant_disconnected
            gone = self._remote.pop(ev_pd.participant_identity, None)
            if gone is not None:
                gone._info.disconnect_reason = ev_pd.disconnect_reason
                gone._info.state = proto_participant.PARTICIPANT_STATE_DISCONNECTED
                gone._release()
                self.emit("participant_disconnected", gone)
        elif which == "participant_metadata_changed":
            ev_md = event.participant_metadata_changed
            p = self._participant(ev_md.participant_identity)
            if p is not None:
                old = p.metadata
                p._info.metadata = ev_md.metadata
                self.emit("participant_metadata_changed", p, old, ev_md.metadata)
        elif which == "participant_name_changed":
            ev_nc = event.participant_name_changed
            p = self._participant(ev_nc.participant_identity)
            if p is not None:
                old = p.name
                p._info.name = ev_nc.name
                self.emit("participant_name_changed", p, old, ev_nc.name)
        elif which == "participant_attributes_changed":
            ev_ac = event.participant_attributes_changed
            p = self._participant(ev_ac.participant_identity)
            if p is not None:
                p._info.attributes.clear()
                p._info.attributes.update({e.key: e.value for e in ev_ac.attributes})
                changed = {e.key: e.value for e in ev_ac.changed_attributes}
                self.emit("participant_attributes_changed", changed, p)
        elif which == "participants_updated":
            # Full descriptions of participants announced early (from their data):
            # their info is replaced, no event is emitted.
            for info in event.participants_updated.participants:
                known = self._participant(info.identity)
                if known is not None:
                    known._info.CopyFrom(info)
        elif which == "active_speakers_changed":
            identities = event.active_speakers_changed.participant_identities
            speakers = [sp for sp in map(self._participant, identities) if sp is not None]
            self.emit("active_speakers_changed", speakers)
        elif which == "connection_quality_changed":
            ev_cq = event.connection_quality_changed
            p = self._participant(ev_cq.participant_identity)
            quality = _connection_quality(ev_cq.quality)
            if p is not None:
                p._connection_quality = quality
                self.emit("connection_quality_changed", p, quality)
        elif which == "transcription_received":
            ev_tr = event.transcription_received
            segments = [
                TranscriptionSegment(
                    id=s.id,
                    text=s.text,
                    start_time=s.start_time,
                    end_time=s.end_time,
                    language=s.language,
                    final=s.final,
                )
                for s in ev_tr.segments
            ]
            speaker = self._participant(ev_tr.participant_identity)
            publication: Optional[TrackPublication] = None
            if speaker is not None:
                publication = speaker.track_publications.get(ev_tr.track_sid)
            self.emit("transcription_received", segments, speaker, publication)
        elif which == "participant_permission_changed":
            ev_pp = event.participant_permission_changed
            p = self._participant(ev_pp.participant_identity)
            if p is not None:
                p._info.permission.CopyFrom(ev_pp.permission)
                self.emit("participant_permissions_changed", p, p.permissions)
        elif which == "participant_active":
            rp = self._remote.get(event.participant_active.participant_identity)
            if rp is not None:
                rp._info.state = proto_participant.PARTICIPANT_STATE_ACTIVE
                self.emit("participant_active", rp)
        elif which == "data_packet_received":
            self._on_data_packet(event.data_packet_received)
        elif which == "text_stream_opened":
            opened_text = event.text_stream_opened
            self._on_stream_opened(
                TextStreamReader,
                opened_text.reader,
                self._text_stream_handlers.get(opened_text.reader.info.topic),
                opened_text.participant_identity,
            )
        elif which == "byte_stream_opened":
            opened_bytes = event.byte_stream_opened
            self._on_stream_opened(
                ByteStreamReader,
                opened_bytes.reader,
                self._byte_stream_handlers.get(opened_bytes.reader.info.topic),
                opened_bytes.participant_identity,
            )
        elif which == "room_metadata_changed":
            old_metadata = self._info.metadata
            self._info.metadata = event.room_metadata_changed.metadata
            self.emit("room_metadata_changed", old_metadata, self._info.metadata)
        elif which == "room_sid_changed":
            self._info.sid = event.room_sid_changed.sid
            self._set_sid(self._info.sid)
        elif which == "room_updated":
            self._info.CopyFrom(event.room_updated)
            if self._info.sid:
                self._set_sid(self._info.sid)
            self.emit("room_updated")
        elif which == "moved":
            self._info.CopyFrom(event.moved)
            if self._info.sid:
                self._set_sid(self._info.sid)
            self.emit("moved")
        elif which == "connection_state_changed":
            self._state = event.connection_state_changed.state
            self.emit("connection_state_changed", self._state)
        elif which == "disconnected":
            self._state = proto_room.CONN_DISCONNECTED
            if event.disconnected.HasField("failure_reason"):
                self._failure_reason = event.disconnected.failure_reason
            self.emit("disconnected", event.disconnected.reason)
        elif which == "reconnecting":
            self.emit("reconnecting")
        elif which == "reconnected":
            self.emit("reconnected")
        elif which == "token_refreshed":
            self._token = event.token_refreshed.token
            self.emit("token_refreshed")
        elif which == "eos":
            self._release()
        else:
            self._dispatch_track_event(which, event)

    # ---- track events ---------------------------------------------------------------

    def _dispatch_track_event(self, which: Optional[str], event: proto_room.RoomEvent) -> None:
        if which == "local_track_published":
            self._local_track_published(event.local_track_published.track_sid)
        elif which == "local_track_unpublished":
            self._local_track_unpublished(event.local_track_unpublished.publication_sid)
        elif which == "local_track_subscribed":
            self._local_track_subscribed(event.local_track_subscribed.track_sid)
        elif which == "track_published":
            self._track_published(event.track_published)
        elif which == "track_unpublished":
            ev_tu = event.track_unpublished
            rp = self._remote.get(ev_tu.participant_identity)
            gone = rp._track_publications.pop(ev_tu.publication_sid, None) if rp else None
            if rp is None or gone is None:
                logger.debug("track_unpublished for unknown publication %s", ev_tu.publication_sid)
                return
            self.emit("track_unpublished", gone, rp)
            gone._release()
        elif which == "track_subscribed":
            self._track_subscribed(event.track_subscribed)
        elif which == "track_unsubscribed":
            ev_un = event.track_unsubscribed
            rp = self._remote.get(ev_un.participant_identity)
            pub = rp._track_publications.get(ev_un.track_sid) if rp else None
            if rp is None or pub is None:
                logger.debug("track_unsubscribed for unknown publication %s", ev_un.track_sid)
                return
            track, pub._track = pub._track, None
            pub._subscribed = False
            if track is not None:
                track._set_room(None)
            self.emit("track_unsubscribed", track, pub, rp)
            if track is not None:
                track._release()
        elif which == "track_subscription_failed":
            ev_sf = event.track_subscription_failed
            rp = self._remote.get(ev_sf.participant_identity)
            if rp is not None:
                self.emit("track_subscription_failed", rp, ev_sf.track_sid, ev_sf.error)
        elif which == "track_muted":
            self._track_mute_changed(
                event.track_muted.participant_identity, event.track_muted.track_sid, True
            )
        elif which == "track_unmuted":
            self._track_mute_changed(
                event.track_unmuted.participant_identity, event.track_unmuted.track_sid, False
            )

    def _local_track_published(self, sid: str) -> None:
        local = self._local
        pub = local._track_publications.get(sid) if local is not None else None
        if pub is None:
            self._hold_local_event(sid, "published")
            return
        track = pub.track
        if track is not None:
            track._set_room(self)
        self.emit("local_track_published", pub, track)

    def _local_track_subscribed(self, sid: str) -> None:
        local = self._local
        pub = local._track_publications.get(sid) if local is not None else None
        if pub is None:
            self._hold_local_event(sid, "subscribed")
            return
        pub._mark_subscribed()
        self.emit("local_track_subscribed", pub.track)

    def _local_track_unpublished(self, sid: str) -> None:
        self._early_local.pop(sid, None)
        local = self._local
        pub: Optional[LocalTrackPublication] = None
        if local is not None:
            # Or unpublish_track's callback came first and took it out already.
            pub = local._track_publications.pop(sid, None) or local._unpublished.pop(sid, None)
        if pub is None:
            logger.debug("local_track_unpublished for unknown publication %s", sid)
            return
        track = pub.track
        if track is not None:
            track._set_room(None)
        self.emit("local_track_unpublished", pub)
        pub._release()
        pub._track = None

    def _hold_local_event(self, sid: str, what: str) -> None:
        if sid not in self._early_local and len(self._early_local) >= _MAX_EARLY_LOCAL_EVENTS:
            logger.warning("local_track_%s for unknown publication %s dropped", what, sid)
            return
        self._early_local.setdefault(sid, []).append(what)

    def _on_local_publication(self, pub: LocalTrackPublication) -> None:
        """publish_track recorded a publication: replay what was held for it."""
        for what in self._early_local.pop(pub.sid, []):
            if what == "published":
                self._local_track_published(pub.sid)
            else:
                self._local_track_subscribed(pub.sid)

    def _track_published(self, ev: proto_room.TrackPublished) -> None:
        rp = self._remote.get(ev.participant_identity)
        if rp is None:
            logger.debug("track_published for unknown participant %s", ev.participant_identity)
            FfiClient.instance().drop_handle(ev.publication.handle.id)
            return
        pub = RemoteTrackPublication(ev.publication)
        previous = rp._track_publications.get(pub.sid)
        if previous is not None:
            previous._release()
        rp._track_publications[pub.sid] = pub
        self.emit("track_published", pub, rp)

    def _track_subscribed(self, ev: proto_room.TrackSubscribed) -> None:
        owned = ev.track
        rp = self._remote.get(ev.participant_identity)
        pub = rp._track_publications.get(owned.info.sid) if rp else None
        track: Track
        if rp is None or pub is None:
            logger.debug("track_subscribed for unknown publication %s", owned.info.sid)
            FfiClient.instance().drop_handle(owned.handle.id)
            return
        if owned.info.kind == proto_track.KIND_AUDIO:
            track = RemoteAudioTrack(owned)
        elif owned.info.kind == proto_track.KIND_VIDEO:
            track = RemoteVideoTrack(owned)
        else:
            FfiClient.instance().drop_handle(owned.handle.id)
            return
        previous = pub._track
        if previous is not None:
            previous._release()
        track._set_room(self)
        pub._track = track
        pub._subscribed = True
        self.emit("track_subscribed", track, pub, rp)

    def _track_mute_changed(self, identity: str, sid: str, muted: bool) -> None:
        participant = self._participant(identity)
        pub = participant.track_publications.get(sid) if participant is not None else None
        if participant is None or pub is None:
            logger.debug("mute change for unknown publication %s", sid)
            return
        pub._info.muted = muted
        if pub.track is not None:
            pub.track._info.muted = muted
        self.emit("track_muted" if muted else "track_unmuted", participant, pub)

    def _on_data_packet(self, packet: proto_room.DataPacketReceived) -> None:
        sender = self._remote.get(packet.participant_identity)
        which = packet.WhichOneof("value")
        if which == "user":
            owned = packet.user.data
            try:
                data = read_buffer(owned.data.data_ptr, owned.data.data_len)
            finally:
                FfiClient.instance().drop_handle(owned.handle.id)
            topic = packet.user.topic
            packet_out = DataPacket(data=data, kind=packet.kind, participant=sender, topic=topic)
            self.emit("data_received", packet_out)
        elif which == "sip_dtmf":
            code, digit = packet.sip_dtmf.code, packet.sip_dtmf.digit
            self.emit("sip_dtmf_received", SipDTMF(code=code, digit=digit, participant=sender))

    def _on_stream_opened(
        self, cls: Any, owned: Any, handler: Optional[Callable[[Any, str], None]], sender: str
    ) -> None:
        if handler is None:
            logger.info(
                "ignoring %s on topic %r from %s: no handler registered",
                "text stream" if cls is TextStreamReader else "byte stream",
                owned.info.topic,
                sender,
            )
            FfiClient.instance().drop_handle(owned.handle.id)
            return
        reader: Union[TextStreamReader, ByteStreamReader] = cls(owned)
        reader._on_close = functools.partial(self._stream_readers.discard, reader)
        reader._max_payload = self._max_stream_payload
        self._stream_readers.add(reader)
        try:
            handler(reader, sender)
        except Exception:
            logger.exception("stream handler for topic %r raised", owned.info.topic)
        finally:
            # A reader not read yet is started after the tasks the handler spawned
            # had their first step: read_all() called there gets the payload whole;
            # otherwise chunks flow from now on, bounded by the reader.
            asyncio.get_running_loop().call_soon(reader._start_if_idle)

    def _add_remote(self, participant: RemoteParticipant) -> None:
        previous = self._remote.get(participant.identity)
        if previous is not None:
            previous._release()
        self._remote[participant.identity] = participant

    def _participant(self, identity: str) -> Optional[Participant]:
        local = self._local
        if local is not None and identity and identity == local.identity:
            return local
        return self._remote.get(identity)

    def _set_sid(self, sid: str) -> None:
        fut = self._sid_future
        if fut is not None and not fut.done():
            fut.set_result(sid)

    def __repr__(self) -> str:
        return (
            f"rtc.Room(sid={self._info.sid or 'unknown'}, name={self.name}, "
            f"metadata={self.metadata}, connection_state={self._state})"
        )


def _connect_request(url: str, token: str, options: RoomOptions) -> proto_ffi.FfiRequest:
    if options.e2ee is not None or options.encryption is not None:
        raise ConnectError("end-to-end encryption is not supported yet")
    req = proto_ffi.FfiRequest()
    req.connect.url = url
    req.connect.token = token
    opts = req.connect.options
    opts.auto_subscribe = options.auto_subscribe
    opts.dynacast = options.dynacast
    if options.rtc_config is not None:
        rtc = opts.rtc_config
        rtc.ice_transport_type = options.rtc_config.ice_transport_type
        rtc.continual_gathering_policy = options.rtc_config.continual_gathering_policy
        rtc.ice_servers.extend(options.rtc_config.ice_servers)
    if options.connect_timeout is not None:
        opts.connect_timeout_ms = max(1, int(options.connect_timeout * 1000))
    if options.single_peer_connection is not None:
        opts.single_peer_connection = options.single_peer_connection
    return req
