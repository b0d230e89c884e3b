"""LiveKit real-time client for Python (`livekit.rtc`).

How the pieces fit: the Rust core (`_native`, built from livekit-ffi) does the
signaling, WebRTC and data channels and speaks protobuf messages (`_proto`).
`_ffi_client` sends its requests and routes its events, from the core's threads, to
the one room or waiter each belongs to, on that room's asyncio loop. `Room`,
`LocalParticipant` and `RemoteParticipant` rebuild the official SDK's API on top, with
audio tracks (`LocalAudioTrack` fed by an `AudioSource`, `AudioStream` to receive),
and release their native handles deterministically (`async with Room() as room`).
"""

from ._proto import stats_pb2 as stats
from ._proto.participant_pb2 import (
    DisconnectReason,
    ParticipantKind,
    ParticipantKindDetail,
    ParticipantState,
)
from ._proto.room_pb2 import (
    ConnectionState,
    ContinualGatheringPolicy,
    DataPacketKind,
    FailureReason,
    IceServer,
    IceTransportType,
    TrackPublishOptions,
    VideoCodec,
    VideoEncoderBackend,
    VideoEncoding,
)
from ._proto.track_pb2 import (
    EncryptionType,
    FrameMetadataFeature,
    ParticipantTrackPermission,
    StreamState,
    TrackKind,
    TrackSource,
    VideoQuality,
)
from ._proto.video_frame_pb2 import VideoBufferType, VideoRotation
from .audio_frame import AudioFrame
from .audio_mixer import AudioMixer
from .audio_source import AudioSource
from .audio_resampler import AudioResampler, AudioResamplerQuality
from .audio_stream import AudioFrameEvent, AudioStream, NoiseCancellationOptions
from .event_emitter import EventEmitter
from .frame_processor import FrameProcessor
from .participant import (
    ConnectionQuality,
    DegradationPreference,
    LocalParticipant,
    Participant,
    ParticipantUpdateError,
    PublishDataError,
    PublishDTMFError,
    PublishTrackError,
    PublishTranscriptionError,
    RemoteParticipant,
    UnpublishTrackError,
)
from .track import (
    AudioTrack,
    LocalAudioTrack,
    LocalTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteTrack,
    RemoteVideoTrack,
    Track,
    VideoTrack,
)
from .track_publication import LocalTrackPublication, RemoteTrackPublication, TrackPublication
from .transcription import Transcription, TranscriptionSegment
from .rpc import RpcCallInfo, RpcError, RpcInterceptor, RpcInvocationData
from .data_stream import (
    ByteStreamInfo,
    ByteStreamReader,
    ByteStreamWriter,
    StreamError,
    TextStreamInfo,
    TextStreamReader,
    TextStreamWriter,
)
from .room import (
    ConnectError,
    DataPacket,
    DataStreamOptions,
    Room,
    RoomOptions,
    RtcConfiguration,
    RtcStats,
    SipDTMF,
)
from .utils import combine_audio_frames
from .video_frame import VideoFrame
from .version import __version__

__all__ = [
    "AudioFrame",
    "AudioFrameEvent",
    "AudioStream",
    "AudioTrack",
    "DegradationPreference",
    "EncryptionType",
    "FrameMetadataFeature",
    "FrameProcessor",
    "LocalAudioTrack",
    "LocalTrack",
    "LocalTrackPublication",
    "LocalVideoTrack",
    "NoiseCancellationOptions",
    "PublishTrackError",
    "RemoteAudioTrack",
    "RemoteTrack",
    "RemoteTrackPublication",
    "RemoteVideoTrack",
    "StreamState",
    "Track",
    "TrackPublication",
    "TrackPublishOptions",
    "UnpublishTrackError",
    "VideoCodec",
    "VideoEncoderBackend",
    "VideoEncoding",
    "VideoTrack",
    "AudioMixer",
    "AudioSource",
    "AudioResampler",
    "AudioResamplerQuality",
    "combine_audio_frames",
    "ByteStreamInfo",
    "ByteStreamReader",
    "ByteStreamWriter",
    "ConnectError",
    "DataStreamOptions",
    "RpcCallInfo",
    "RpcError",
    "RpcInterceptor",
    "RpcInvocationData",
    "StreamError",
    "TextStreamInfo",
    "TextStreamReader",
    "TextStreamWriter",
    "ConnectionQuality",
    "ParticipantKindDetail",
    "ConnectionState",
    "ContinualGatheringPolicy",
    "DataPacket",
    "DataPacketKind",
    "DisconnectReason",
    "EventEmitter",
    "FailureReason",
    "IceServer",
    "IceTransportType",
    "LocalParticipant",
    "Participant",
    "ParticipantKind",
    "ParticipantState",
    "ParticipantTrackPermission",
    "ParticipantUpdateError",
    "PublishDataError",
    "PublishDTMFError",
    "PublishTranscriptionError",
    "Transcription",
    "TranscriptionSegment",
    "RemoteParticipant",
    "Room",
    "RoomOptions",
    "RtcStats",
    "VideoBufferType",
    "VideoFrame",
    "VideoRotation",
    "stats",
    "RtcConfiguration",
    "SipDTMF",
    "TrackKind",
    "TrackSource",
    "VideoQuality",
    "__version__",
]
