"""`FrameProcessor`: a filter an `AudioStream` runs on every frame it receives
(noise cancellation plugins implement it).

A processor learns where its frames come from (room, participant, publication) and
the room's credentials through the `_on_*` hooks, which do nothing by default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from .audio_frame import AudioFrame

# Only audio frames exist in this SDK so far.
T = TypeVar("T", bound=AudioFrame)


class FrameProcessor(Generic[T], ABC):
    @property
    @abstractmethod
    def enabled(self) -> bool:
        """A disabled processor is skipped: frames pass unchanged."""

    @enabled.setter
    @abstractmethod
    def enabled(self, value: bool) -> None: ...

    def _on_stream_info_updated(
        self,
        *,
        room_name: str,
        participant_identity: str,
        publication_sid: str,
    ) -> None:
        return None

    def _on_stream_info_cleared(self) -> None:
        return None

    def _on_credentials_updated(self, *, token: str, url: str) -> None:
        return None

    def _on_credentials_cleared(self) -> None:
        return None

    @abstractmethod
    def _process(self, frame: T) -> T:
        """Returns the processed frame (called on the stream's event loop)."""

    @abstractmethod
    def _close(self) -> None:
        """Releases what the processor holds; called when its stream closes if the
        stream was told to close it."""
