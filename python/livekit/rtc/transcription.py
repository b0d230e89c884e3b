"""Transcriptions: text segments attributed to a participant's track."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List


@dataclass
class Transcription:
    participant_identity: str
    track_sid: str
    segments: List["TranscriptionSegment"]


@dataclass
class TranscriptionSegment:
    id: str
    text: str
    start_time: int
    end_time: int
    language: str
    final: bool
