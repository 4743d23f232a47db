"""Shared check of the CLI's error contract: one line on stderr, no traceback."""
from __future__ import annotations


def one_error_line(capsys, *needles):
    """The captured stderr is exactly one ``ssimae: error:`` line containing every needle."""
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ssimae: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert str(n) in err, err
    return err


# the options of a tiny training run (seconds, not minutes): the tests' runs use them
TINY = ["--epochs", "1", "--patches-per-epoch", "24", "--batch-size", "8", "--latent-dim", "8", "--quiet"]
