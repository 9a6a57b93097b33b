"""Isochronous pacing: URBs complete at the real time of their last packet.

A real isochronous endpoint moves one packet per service interval, so a URB of N
packets takes N intervals.  USB/IP hosts (vhci-hcd) do not schedule anything:
they forward URBs as soon as a driver submits them and count on the device to
complete them at the bus's pace.  :class:`IsoClock` gives each URB its slot:

* while the stream runs, a URB starts right after the previous one, whatever its
  ``start_frame`` (as EHCI and xHCI schedule a running stream);
* an idle stream starts now with ``URB_ISO_ASAP`` or ``start_frame`` 0, else at
  ``start_frame`` (1 ms frames at full speed, 125 us microframes at high speed, as
  EHCI counts them; the reply carries the frame each URB started in).  Packets of a
  URB whose first slots have gone get -EXDEV and carry nothing.  A start frame more
  than 0.1 s ahead, or entirely gone, starts the URB at once: Linux's vhci-hcd does not
  forward ``URB_ISO_ASAP``, and a driver resubmits URBs with the frame of their last run;
* a host that unlinks a URB (how snd-usb-audio and uvcvideo stop a stream) or
  selects another alternate setting stops the schedule: the next URB starts afresh;
* a host or a server that falls behind while streaming (a busy machine) is caught up:
  the late URBs complete at once until the schedule is met again, so the average rate
  stays exact.  Only a host that submitted nothing for ``late_limit`` seconds (5 s)
  restarts the schedule at the current time.

:class:`FrameCounter` spreads a rate over packets with an integer accumulator keyed
to the packet index since the stream started: packet ``k`` carries
``floor((k+1)*r) - floor(k*r)`` frames, so the average is exact and never drifts,
whatever the rate (44.1 kHz at 8000 packets/s is 5.5125 frames per packet).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vusb.constants import URB_ISO_ASAP, Speed

EXDEV = -18


def service_period(speed: Speed, interval: int) -> float:
    """Seconds between two packets of an isochronous endpoint with ``bInterval`` at ``speed``."""
    unit = 0.001 if speed in (Speed.FULL, Speed.LOW) else 0.000125
    return unit * (1 << (max(interval, 1) - 1))


class FrameCounter:
    """Frames per packet for ``rate`` frames/s at ``packets_per_second_num/den`` packets per second, exact on average."""

    def __init__(self, rate: int, speed: Speed, interval: int) -> None:
        base = 1000 if speed in (Speed.FULL, Speed.LOW) else 8000
        self.num = rate * (1 << (max(interval, 1) - 1))  # frames per packet = num / den
        self.den = base
        self.packets = 0
        self.frames = 0  # frames produced (may lag what is due when packets were too small)

    def due(self) -> int:
        """Frames due by the end of the next packet, not yet produced."""
        return (self.packets + 1) * self.num // self.den - self.frames

    def advance(self, produced: int) -> None:
        self.packets += 1
        self.frames += produced

    @property
    def max_per_packet(self) -> int:
        return -(-self.num // self.den)


@dataclass
class Slot:
    """Where a URB sits in time: its first packet's start, its end, the frame number, packets missed."""

    start: float
    end: float
    start_frame: int
    skipped: int
    status: int = 0


class IsoClock:
    """The schedule of one isochronous stream (see the module documentation)."""

    def __init__(self, speed: Speed, interval: int, *, epoch: float | None = None, late_limit: float = 5.0) -> None:
        self.period = service_period(speed, interval)
        self.frame_unit = 0.001 if speed in (Speed.FULL, Speed.LOW) else 0.000125
        self.frame_mod = 2048 if speed in (Speed.FULL, Speed.LOW) else 16384
        self.epoch = time.monotonic() if epoch is None else epoch
        self.late_limit = late_limit
        self.max_ahead = 0.1  # seconds: a start frame further ahead is taken for a stale one
        self.finished_at: float | None = None
        self.next_time: float | None = None
        self.started_at: float | None = None
        self.packets = 0
        self.restarts = 0

    def stopped(self) -> None:
        """The host unlinked a URB of the stream (how drivers stop streaming): the next one starts afresh."""
        self.next_time = None
        self.finished_at = None

    def finished(self, t: float) -> None:
        """The URB planned last has been answered at ``t``."""
        self.finished_at = t

    def reset(self) -> None:
        self.finished_at = None
        self.next_time = None
        self.started_at = None
        self.packets = 0

    def frame_at(self, t: float) -> int:
        return int((t - self.epoch) / self.frame_unit) % self.frame_mod

    def plan(self, npackets: int, flags: int, start_frame: int, now: float) -> Slot:
        skipped = 0
        # Running: the host keeps URBs coming, this one came soon after the previous one was answered.
        # A server that fell behind (a busy machine) stays running: the burst that follows catches up.
        running = self.next_time is not None and (
            self.next_time >= now - self.late_limit
            or (self.finished_at is not None and now - self.finished_at < self.late_limit))
        if running:  # back to back with the previous URB, as EHCI and xHCI schedule a running stream
            assert self.next_time is not None
            start = self.next_time
        elif flags & URB_ISO_ASAP or start_frame == 0:
            start = self._restart(now)
        else:
            current = int((now - self.epoch) / self.frame_unit)
            delta = (start_frame - current) % self.frame_mod
            if delta >= self.frame_mod // 2:  # the frame asked for has gone
                delta -= self.frame_mod
            start = self.epoch + (current + delta) * self.frame_unit
            if start > now + self.max_ahead or start + npackets * self.period <= now:
                # Not a frame this URB can go in: vhci-hcd drops URB_ISO_ASAP and a driver's resubmitted
                # URB carries the frame of its previous run.  Start at once, as ASAP would.
                start = self._restart(now)
            else:
                if start < now - self.period / 2:
                    skipped = min(npackets, int((now - start) / self.period + 0.5))
                if self.started_at is None:
                    self.started_at = start
        end = start + npackets * self.period
        self.next_time = end
        self.packets += npackets
        status = EXDEV if npackets and skipped >= npackets else 0
        return Slot(start, end, self.frame_at(start), skipped, status)

    def _restart(self, now: float) -> float:
        if self.next_time is not None:
            self.restarts += 1
        if self.started_at is None:
            self.started_at = now
        return now
