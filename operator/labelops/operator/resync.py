"""When each campaign is reconciled again without a change, to catch drift made outside the
operator's view (a topic deleted by hand, a quota removed).

Why not at a fixed delay: a thousand campaigns applied at once would all resync in the same
few seconds every period, a burst of a thousand full passes that delays everything else. Each
campaign takes its own place in the period instead, from its uid, so resyncs arrive evenly
(a thousand campaigns every 300 s: about three passes a second) and a campaign keeps its
place across operator restarts. A campaign whose last pass (its creation, a spec change, a
retry) ended less than half a period ago is not passed again: while a thousand campaigns are
being created, resyncs would otherwise double the work.

Pure.
"""

from __future__ import annotations

import hashlib

RESYNC_SECONDS = 300.0


def first_resync_delay(uid: str, period: float = RESYNC_SECONDS) -> float:
    """Seconds from the campaign's first sight to its first resync: in [period/2, 3*period/2),
    at the place the uid hashes to. At least half a period: a campaign that was just
    reconciled needs no resync yet."""
    digest = hashlib.sha256(uid.encode()).digest()
    place = int.from_bytes(digest[:8], "big") / 2**64
    return period * (0.5 + place)


def resync_due(since_last_pass: float | None, period: float = RESYNC_SECONDS) -> bool:
    """Whether a resync tick runs a pass, given the seconds since this campaign's last pass
    ended in this process (None: none yet)."""
    return since_last_pass is None or since_last_pass >= period / 2
