"""The thread governor (fastnet._threads): the default thread count follows the cores that
other processes leave free, an explicit count is kept, and results do not depend on it."""
import numba
import numpy as np
import pytest

from fastnet._threads import FIRST_WINDOW, WINDOW, ThreadGovernor, read_busy_seconds, read_others_running
from fastnet.config import TrainConfig
from fastnet.train import Trainer


class Machine:
    """A fake clock and /proc/stat: ``run(seconds, others, own)`` advances the wall clock
    while other processes use ``others`` cores and this one ``own`` cores."""

    def __init__(self):
        self.wall = self.own = self.busy = 0.0

    def clock(self):
        return self.wall, self.own

    def read_busy(self, cpus):
        return self.busy

    def run(self, seconds, others, own=1.0):
        self.wall += seconds
        self.own += own * seconds
        self.busy += (others + own) * seconds


@pytest.fixture
def restore_threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def governor(machine, most=2, cores=2, running=0):
    g = ThreadGovernor(most, read_busy=machine.read_busy, read_running=lambda: running, clock=machine.clock)
    g.cpus = list(range(cores))
    g.most = most
    return g


@pytest.mark.parametrize("others, want", [(0.0, 2), (0.3, 2), (0.67, 1), (1.0, 1), (2.0, 1), (1.4, 1)])
def test_threads_for_the_cores_left_free(others, want):
    assert governor(Machine()).threads_for(others) == want


def test_the_count_follows_the_load_window_by_window(restore_threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    numba.set_num_threads(2)
    m = Machine()
    g = governor(m)
    m.run(FIRST_WINDOW / 2, others=1.0)
    g.tick()
    assert numba.get_num_threads() == 2, "no decision before a whole window has passed"
    m.run(FIRST_WINDOW, others=1.0)
    g.tick()
    assert numba.get_num_threads() == 1, "a busy core: one thread, decided after the first, short window"
    m.run(WINDOW / 2, others=0.05)
    g.tick()
    assert numba.get_num_threads() == 1, "later windows are longer"
    m.run(WINDOW, others=0.05)
    g.tick()
    assert numba.get_num_threads() == 2, "the machine quiet again: both"
    assert g.counts == {2: 1, 1: 1}, "the windows run at each count"


def test_proc_stat_is_read_once_a_window(restore_threads):
    m = Machine()
    reads = []
    g = governor(m)
    g.read_busy = lambda cpus: reads.append(1) or m.busy
    for _ in range(20):
        m.run(FIRST_WINDOW / 10, others=0.0)
        g.tick()
    assert len(reads) == 1, "ticks between decisions read the clock only"


def test_its_own_threads_are_not_counted_as_others(restore_threads):
    m = Machine()
    g = governor(m)
    m.run(WINDOW * 2, others=0.0, own=2.0)  # two threads of ours, spinning or working
    assert g.others(g._start, g._sample()) == pytest.approx(0.0)


def test_without_proc_stat_nothing_changes(restore_threads, tmp_path):
    assert read_busy_seconds([0], path=tmp_path / "missing") is None
    g = ThreadGovernor(2, read_busy=lambda cpus: None)
    assert not g.enabled
    before = numba.get_num_threads()
    g.tick()
    assert numba.get_num_threads() == before


def test_it_starts_on_the_cores_free_at_that_moment(restore_threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    numba.set_num_threads(2)
    governor(Machine(), running=0)
    assert numba.get_num_threads() == 2
    governor(Machine(), running=2)
    assert numba.get_num_threads() == 1, "two others running: one thread from the start"


def test_others_running_is_read():
    running = read_others_running()
    if running is None:
        pytest.skip("no /proc here")
    assert running >= 0


def test_proc_stat_is_read():
    busy = read_busy_seconds([0])
    if busy is None:
        pytest.skip("no /proc/stat here")
    assert busy > 0


def _data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 64)) * 255 * (rng.random((n, 64)) < 0.4)).astype(np.uint8)
    return x, (x[:, :8].sum(1) > x[:, 8:16].sum(1)).astype(np.int64)


def test_a_run_on_the_default_count_is_governed_and_restores_the_count(restore_threads):
    x, y = _data()
    before = numba.get_num_threads()
    trainer = Trainer(TrainConfig(hidden=(32, 16), epochs=2, batch_size=64), x, y)
    trainer.run()
    assert trainer.governor is not None
    assert numba.get_num_threads() == before


def test_an_explicit_count_is_kept(restore_threads):
    x, y = _data()
    trainer = Trainer(TrainConfig(hidden=(32,), epochs=1, batch_size=64, threads=1), x, y)
    trainer.run()
    assert trainer.governor is None


def test_the_thread_count_changes_no_bit(restore_threads):
    """What the governor relies on: the weights after a run are the same bits at 1 and 2 threads,
    the hidden layers past the first (register-blocked) included."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    x, y = _data()
    params = []
    for threads in (1, 2):
        trainer = Trainer(TrainConfig(hidden=(48, 40), epochs=2, batch_size=50, threads=threads), x, y)
        trainer.run()
        params.append(trainer.model.params.copy())
    np.testing.assert_array_equal(params[0], params[1])
