"""The default thread count, adapted to the cores the rest of the machine leaves free.

Every parallel kernel ends at a barrier: no thread goes on until all have
finished their share. On a machine where other processes are busy, the
operating system sets one of fastnet's threads aside for a time slice
(milliseconds) now and then, and the others wait for it at the barrier --
for a kernel that takes tens of microseconds. With two busy processes on
two cores, the default two threads ran 53x slower than ``--threads 1``
(issue 18). A passive wait policy would not help: the barrier still waits
for the thread set aside.

So a run on the default thread count watches, in windows of
:data:`WINDOW` seconds, how much CPU time the rest of the machine takes on
the cores it may use (``/proc/stat``, less its own ``time.process_time()``),
and runs the next window on as many threads as that leaves cores free, at
least one. An explicit thread count (``--threads``) is kept as given.
Results are the same bits at any thread count (see :mod:`fastnet.kernels`),
so this changes speed only. Where ``/proc/stat`` cannot be read (macOS,
Windows), the thread count stays as it is.
"""
import math
import os
import time

import numba

#: Seconds of wall time between decisions: long enough for /proc/stat's
#: 10 ms ticks to add up, short enough to follow a job that starts or stops.
WINDOW = 0.25
#: The first decision comes sooner: under load, a run's first window on too
#: many threads is its slowest stretch.
FIRST_WINDOW = 0.05


def _cores():
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def read_busy_seconds(cpus, path="/proc/stat"):
    """Seconds the ``cpus`` have spent busy since boot (all but idle and I/O wait),
    from ``/proc/stat``; None where it cannot be read."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    ticks = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


def read_others_running(stat="/proc/stat", tasks="/proc/self/task"):
    """How many threads of other processes are running or ready to run at this
    moment: ``procs_running`` in ``/proc/stat``, less this process's own threads
    in state R. None where these cannot be read."""
    try:
        with open(stat) as f:
            running = next(int(line.split()[1]) for line in f if line.startswith("procs_running"))
        own = 0
        for task in os.listdir(tasks):
            try:
                with open(os.path.join(tasks, task, "stat")) as f:
                    own += f.read().rpartition(")")[2].split()[0] == "R"
            except OSError:
                pass  # a thread that ended meanwhile
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return max(0, running - own)


class ThreadGovernor:
    """Sets Numba's thread count, between 1 and ``most``, to the cores others leave free.

    It starts on as many threads as other processes' running threads leave
    cores free at that moment (:func:`read_others_running`). Call :meth:`tick`
    between chunks of work; every :data:`WINDOW` seconds (the
    first time after :data:`FIRST_WINDOW`) it measures the others' load over
    the window just past and sets the count for the next. ``counts`` records each count used, with the windows it
    was used for. ``read_busy``, ``read_running`` and ``clock`` may be
    replaced for tests.
    """

    def __init__(self, most, *, read_busy=read_busy_seconds, read_running=read_others_running, clock=None):
        self.cpus = _cores()
        self.most = max(1, min(most, len(self.cpus)))
        self.read_busy = read_busy
        self.clock = clock or (lambda: (time.perf_counter(), time.process_time()))
        self.counts = {}
        self.enabled = self.read_busy(self.cpus) is not None and self.most > 1
        self._start = self._sample() if self.enabled else None
        self._window = FIRST_WINDOW
        if self.enabled:  # a first count from the threads running right now, before any window
            running = read_running()
            if running is not None:
                numba.set_num_threads(min(numba.get_num_threads(), self.threads_for(running)))

    def _sample(self):
        wall, own = self.clock()
        return wall, own, self.read_busy(self.cpus)

    def others(self, start, end):
        """Cores' worth of CPU time the rest of the machine took between two samples."""
        wall = end[0] - start[0]
        if wall <= 0 or start[2] is None or end[2] is None:
            return 0.0
        return max(0.0, ((end[2] - start[2]) - (end[1] - start[1])) / wall)

    def threads_for(self, others):
        """The thread count for a machine whose other processes take ``others`` cores."""
        free = len(self.cpus) - others
        return int(min(self.most, max(1, math.floor(free + 0.5))))

    def tick(self):
        """Between chunks of work: at the end of a window, set the thread count for the next."""
        if not self.enabled:
            return
        wall, own = self.clock()
        if wall - self._start[0] < self._window:
            return  # (/proc/stat is read once a window: reading it takes a while)
        now = wall, own, self.read_busy(self.cpus)
        self._window = WINDOW
        threads = self.threads_for(self.others(self._start, now))
        current = numba.get_num_threads()
        self.counts[current] = self.counts.get(current, 0) + 1
        if threads != current:
            numba.set_num_threads(threads)
        self._start = now
