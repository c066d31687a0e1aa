"""Long work (embedding, sample data) in a background thread, shown by a fragment that
refreshes alone: a progress bar with done / total, items per second and time left, a
Cancel button, and a summary at the end.

The work itself is a store function called as ``fn(progress, cancel)``: ``progress(done,
total[, note or rate])`` is called as it goes, ``cancel`` is a ``threading.Event`` it checks. The
thread never touches streamlit; the fragment only reads the job's state."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from components.state import ACTIVITY
from store import FeaturelabError

log = logging.getLogger("featurelab.jobs")


@dataclass
class Job:
    title: str
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    note: str = ""
    first_tick: float | None = None
    first_done: int = 0
    reported_rate: float | None = None  # the job's own items per second, when it gives one
    finished: float | None = None
    result: Any = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    acknowledged: bool = False

    def progress(self, done: int, total: int, extra: Any = None) -> None:
        """``extra``: a note to show (str), or the job's own items-per-second figure, which may
        carry a note of its own (a Ray job's actors alive)."""
        now = time.monotonic()
        if self.first_tick is None:
            self.first_tick, self.first_done = now, done
        self.done, self.total = int(done), int(total)
        if isinstance(extra, str):
            self.note = extra
        elif isinstance(extra, (int, float)):
            if extra > 0:
                self.reported_rate = float(extra)
            if getattr(extra, "note", None):
                self.note = extra.note

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def rate(self) -> float | None:
        """The job's own figure, else items per second since the first progress report
        (model loading excluded either way)."""
        if self.reported_rate is not None:
            return self.reported_rate
        if self.first_tick is None:
            return None
        elapsed = (self.finished or time.monotonic()) - self.first_tick
        moved = self.done - self.first_done
        return moved / elapsed if elapsed > 0 and moved > 0 else None

    @property
    def seconds_left(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate and self.total >= self.done else None

    def status_line(self) -> str:
        parts = [f"{self.done} / {self.total}" if self.total else "starting…"]
        if self.total and not self.done and self.running:
            parts.append("working on the first batch…")
        if self.rate:
            parts.append(f"{self.rate:.1f} items/s")
        if self.running and self.seconds_left is not None:
            parts.append(f"{_duration(self.seconds_left)} left")
        if not self.running:
            parts.append(f"took {_duration(self.finished - self.started)}")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _slot(key: str) -> str:
    return f"job:{key}"


def current_job(key: str) -> Job | None:
    return st.session_state.get(_slot(key))


def start_job(key: str, title: str, fn: Callable[[Callable, threading.Event], Any]) -> Job:
    """Start ``fn(progress, cancel)`` in a thread, unless a job under ``key`` still runs."""
    job = current_job(key)
    if job is not None and job.running:
        return job
    job = Job(title)

    def run() -> None:
        try:
            job.result = fn(job.progress, job.cancel)
        except FeaturelabError as exc:
            job.error = str(exc)
        except Exception as exc:  # shown as a plain message; the traceback goes to the server log
            log.exception("%s failed", title)
            job.error = f"{title} failed: {exc}. The server log has the details."
        finally:
            job.finished = time.monotonic()

    job.thread = threading.Thread(target=run, name=f"featurelab-{key}", daemon=True)
    st.session_state[_slot(key)] = job
    job.thread.start()
    return job


def job_panel(key: str, *, summary: Callable[[Any], Any], every: float = 0.5) -> Job | None:
    """Show the job under ``key``: progress while it runs (this part alone refreshes every
    ``every`` seconds), then ``summary(result)`` (a string for st.success, or draws itself).
    When the job ends, the whole page reruns once: its other parts show the new state and
    the refreshing stops."""
    job = current_job(key)
    if job is None:
        return None

    @st.fragment(run_every=every if job.running else None)
    def panel() -> None:
        with st.container(border=True, key=f"{key}:panel"):
            st.markdown(f"**{job.title}**")
            fraction = job.done / job.total if job.total else 0.0
            st.progress(min(1.0, fraction), text=job.status_line())
            if job.running:
                ACTIVITY.busy()  # the warm-up's long step waits for the job, not the other way
                if job.cancel.is_set():
                    st.caption("Cancelling after the current batch…")
                else:
                    st.button("Cancel", key=f"{key}:cancel", icon=":material/cancel:", on_click=job.cancel.set)
                return
            if job.error:
                st.error(job.error, icon=":material/error:")
            else:
                shown = summary(job.result)
                if isinstance(shown, str):
                    st.success(shown, icon=":material/check_circle:")
            if not job.acknowledged:
                job.acknowledged = True
                st.rerun(scope="app")

    panel()
    return job


def wait_for(job: Job, timeout: float) -> None:
    """For tests and scripts: block until the job ends."""
    if job.thread is not None:
        job.thread.join(timeout)
