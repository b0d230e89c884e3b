"""Remote procedure calls between participants: errors, invocation data, interceptors.

The calls themselves are made and served by `LocalParticipant` (`perform_rpc`,
`register_rpc_method`); the core carries requests, acknowledgements and responses,
answers calls to unregistered methods and enforces the payload limits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Awaitable, Callable, ClassVar, Dict, List, Optional, Sequence, Union

from ._proto import rpc_pb2 as proto_rpc

# Largest request or response payload, in UTF-8 bytes (enforced by the core).
MAX_PAYLOAD_BYTES = 15 * 1024


class RpcError(Exception):
    """An RPC failed: raised by `perform_rpc`, or raised by a method handler to send
    this error (code, message, data) back to the caller unchanged.

    Codes 1001-1999 are reserved for the built-in errors of `RpcError.ErrorCode`;
    applications may use any other code.
    """

    class ErrorCode(enum.IntEnum):
        APPLICATION_ERROR = 1500
        CONNECTION_TIMEOUT = 1501
        RESPONSE_TIMEOUT = 1502
        RECIPIENT_DISCONNECTED = 1503
        RESPONSE_PAYLOAD_TOO_LARGE = 1504
        SEND_FAILED = 1505

        UNSUPPORTED_METHOD = 1400
        RECIPIENT_NOT_FOUND = 1401
        REQUEST_PAYLOAD_TOO_LARGE = 1402
        UNSUPPORTED_SERVER = 1403
        UNSUPPORTED_VERSION = 1404

    ErrorMessage: ClassVar[Dict["RpcError.ErrorCode", str]] = {
        ErrorCode.APPLICATION_ERROR: "Application error in method handler",
        ErrorCode.CONNECTION_TIMEOUT: "Connection timeout",
        ErrorCode.RESPONSE_TIMEOUT: "Response timeout",
        ErrorCode.RECIPIENT_DISCONNECTED: "Recipient disconnected",
        ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE: "Response payload too large",
        ErrorCode.SEND_FAILED: "Failed to send",
        ErrorCode.UNSUPPORTED_METHOD: "Method not supported at destination",
        ErrorCode.RECIPIENT_NOT_FOUND: "Recipient not found",
        ErrorCode.REQUEST_PAYLOAD_TOO_LARGE: "Request payload too large",
        ErrorCode.UNSUPPORTED_SERVER: "RPC not supported by server",
        ErrorCode.UNSUPPORTED_VERSION: "Unsupported RPC version",
    }

    def __init__(
        self,
        code: Union[int, "RpcError.ErrorCode"],
        message: str,
        data: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self._code = int(code)
        self._message = message
        self._data = data

    @property
    def code(self) -> int:
        """The error code (see `RpcError.ErrorCode` for the built-in ones)."""
        return self._code

    @property
    def message(self) -> str:
        """A human-readable description."""
        return self._message

    @property
    def data(self) -> Optional[str]:
        """Optional details (JSON recommended)."""
        return self._data

    def __repr__(self) -> str:
        return f"rtc.RpcError(code={self._code}, message={self._message!r}, data={self._data!r})"

    @classmethod
    def _from_proto(cls, proto: proto_rpc.RpcError) -> "RpcError":
        return cls(proto.code, proto.message, proto.data if proto.HasField("data") else None)

    def _to_proto(self) -> proto_rpc.RpcError:
        out = proto_rpc.RpcError(code=self._code, message=self._message)
        if self._data is not None:
            out.data = self._data
        return out

    @classmethod
    def _built_in(cls, code: "RpcError.ErrorCode", data: Optional[str] = None) -> "RpcError":
        return cls(code, cls.ErrorMessage[code], data)


@dataclass
class RpcInvocationData:
    """What a method handler receives for one incoming call."""

    request_id: str
    """The call's id, the same on both sides."""
    caller_identity: str
    payload: str
    response_timeout: float
    """Seconds the caller waits for the answer; the handler is cancelled past it."""
    method: str = ""
    cancel_reason: Optional[RpcError.ErrorCode] = None
    """Set just before the SDK cancels the handler chain: `RESPONSE_TIMEOUT` when the
    caller's deadline passed, `RECIPIENT_DISCONNECTED` when the room disconnected."""


@dataclass
class RpcCallInfo:
    """An outgoing call as an `RpcInterceptor` sees it (the arguments of
    `LocalParticipant.perform_rpc`); an interceptor may pass a changed copy on."""

    destination_identity: str
    method: str
    payload: str
    response_timeout: Optional[float] = None
    max_round_trip_latency: Optional[float] = None


OutgoingRpcNext = Callable[[RpcCallInfo], Awaitable[str]]
IncomingRpcNext = Callable[[RpcInvocationData], Awaitable[Optional[str]]]


class RpcInterceptor:
    """Wraps the calls a `LocalParticipant` makes and serves.

    Added with `LocalParticipant.add_rpc_interceptor`; the first one added is the
    outermost. Each method gets the call and `next`, and returns (or raises) what
    `next` does unless it short-circuits on purpose. Both directions pass through by
    default. Incoming: the caller's response timeout covers the whole chain (it is
    cancelled when the deadline passes), a call for an unregistered method sees
    `next` raise `UNSUPPORTED_METHOD`, and an exception other than `RpcError` becomes
    `APPLICATION_ERROR` only after the chain returned.
    """

    async def intercept_outgoing(self, call: RpcCallInfo, next: OutgoingRpcNext) -> str:
        return await next(call)

    async def intercept_incoming(
        self, invocation: RpcInvocationData, next: IncomingRpcNext
    ) -> Optional[str]:
        return await next(invocation)


def _chain_outgoing(
    interceptors: Sequence[RpcInterceptor], terminal: OutgoingRpcNext
) -> OutgoingRpcNext:
    step = terminal
    for interceptor in reversed(list(interceptors)):
        step = _outgoing_step(interceptor, step)
    return step


def _outgoing_step(interceptor: RpcInterceptor, inner: OutgoingRpcNext) -> OutgoingRpcNext:
    async def step(call: RpcCallInfo) -> str:
        return await interceptor.intercept_outgoing(call, inner)

    return step


def _chain_incoming(
    interceptors: Sequence[RpcInterceptor], terminal: IncomingRpcNext
) -> IncomingRpcNext:
    step = terminal
    for interceptor in reversed(list(interceptors)):
        step = _incoming_step(interceptor, step)
    return step


def _incoming_step(interceptor: RpcInterceptor, inner: IncomingRpcNext) -> IncomingRpcNext:
    async def step(invocation: RpcInvocationData) -> Optional[str]:
        return await interceptor.intercept_incoming(invocation, inner)

    return step


__all__: List[str] = [
    "RpcCallInfo",
    "RpcError",
    "RpcInterceptor",
    "RpcInvocationData",
]
