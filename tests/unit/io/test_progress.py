"""Progress off a terminal: one line per interval with done/total and the rate; a bar on a terminal."""
import io

from tqdm import tqdm

from ssimae.io.progress import LineProgress, progress


class Clock:
    """A clock the test moves (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_one_line_per_interval_with_done_total_and_rate():
    stream, clock = io.StringIO(), Clock()
    bar = progress(total=10, desc="predicting", stream=stream, every=30, clock=clock)
    assert isinstance(bar, LineProgress)
    for _ in range(10):
        clock.now += 10  # an image every 10 s: a line after images 3, 6 and 9
        bar.update()
    bar.close()
    assert stream.getvalue().splitlines() == ["predicting: 3/10 images (30%), 0.1 images/s",
                                              "predicting: 6/10 images (60%), 0.1 images/s",
                                              "predicting: 9/10 images (90%), 0.1 images/s"]


def test_iterating_counts_and_postfix_is_shown():
    stream, clock = io.StringIO(), Clock()
    items = []
    for x in progress(range(4), desc="epoch 1/2", unit="patches", stream=stream, every=0, clock=clock):
        clock.now += 0.5
        items.append(x)
    assert items == [0, 1, 2, 3]
    assert stream.getvalue().splitlines()[-1] == "epoch 1/2: 4/4 patches (100%), 2 patches/s"
    bar = progress(total=8, desc="d", unit="patches", stream=stream, every=0, clock=clock)
    bar.set_postfix(loss="0.1234")
    bar.update(8)
    assert stream.getvalue().splitlines()[-1].endswith(", loss 0.1234")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_tqdm_and_disabled_prints_nothing():
    assert isinstance(progress(total=3, stream=Tty()), tqdm)
    quiet = io.StringIO()
    bar = progress(total=3, stream=quiet, enabled=False, every=0)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""
