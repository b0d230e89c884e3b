"""The one logger of the package; the core's own log records are forwarded to it too."""

import logging

logger = logging.getLogger("livekit")
