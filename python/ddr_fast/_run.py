"""Running one evaluation: start it on the engine's worker thread, show progress while waiting
(the GIL is released during each wait), and turn Ctrl-C into a clean stop."""

import json
import sys
import time

from . import _core

POLL_S = 0.1  # how often the caller's thread wakes: progress updates and Ctrl-C latency


class _TextBar:
    """A one-line bar on stderr, for when tqdm is not installed."""

    def __init__(self):
        self.last = 0.0

    def __call__(self, done, total):
        now = time.monotonic()
        if total == 0 or (now - self.last < 0.5 and done < total):
            return
        self.last = now
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(f"\rddr-fast [{'#' * filled}{'.' * (width - filled)}] {100 * done / total:5.1f}% training images")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self):
        pass


class _TqdmBar:
    def __init__(self, tqdm):
        self.tqdm = tqdm
        self.bar = None

    def __call__(self, done, total):
        if total == 0:
            return
        if self.bar is None:
            self.bar = self.tqdm(total=total, unit="img", unit_scale=True, desc="ddr-fast training")
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _reporter(progress):
    """progress: True (a bar: tqdm when installed, else text), False/None (silent), or a callable
    called as progress(done, total) in training images whenever the count moves."""
    if callable(progress):
        return progress, None
    if not progress:
        return None, None
    try:
        from tqdm.auto import tqdm
        bar = _TqdmBar(tqdm)
    except ImportError:
        bar = _TextBar()
    return bar, bar


def run(job, progress=True) -> dict:
    """Waits for ``job`` (a ``_core.Job``) and returns its record (result.json as a dict).

    On KeyboardInterrupt (or an exception from the progress callback) the job is asked to stop:
    the cohort in training finishes and is recorded, then the exception propagates. A second
    Ctrl-C while waiting for that cohort returns at once and leaves it finishing in the background.
    """
    report, bar = _reporter(progress)
    seen = None
    try:
        while not job.wait(POLL_S):
            now = job.progress()
            if report is not None and now != seen:
                seen = now
                report(*now)
        if report is not None and seen is not None and seen[1] > 0:
            report(seen[1], seen[1])
    except BaseException:
        job.cancel()
        sys.stderr.write(
            "\nddr-fast: stopping after the cohort in training; finished trainings are kept in the "
            "journal (out_dir) and the cache, so the same call resumes. Ctrl-C again to stop waiting.\n"
        )
        try:
            while not job.wait(POLL_S):
                pass
        except KeyboardInterrupt:
            pass
        raise
    finally:
        if bar is not None:
            bar.close()
    return json.loads(job.result())
