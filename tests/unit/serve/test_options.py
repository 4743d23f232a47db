"""Every error of ``ssimae serve``'s options names the flag the user typed (``--max-pixels``,
not the field ``max_pixels``): from the command line (one ``ssimae: error:`` line, exit 2,
before anything is loaded) and from :class:`ServeOptions` itself."""
import dataclasses

import pytest

from tests.helpers.clicheck import one_error_line
from ssimae.core.window import MAX_PATCHES, MAX_PIXELS
from ssimae.serve.options import ServeOptions, flag_of

# (field, a value out of its range, the option as typed, what it says about the range)
BAD = [("max_bytes", 0, "0", "a whole number >= 1"),
       ("max_pixels", MAX_PIXELS + 1, str(MAX_PIXELS + 1), f"between 1 and {MAX_PIXELS}"),
       ("max_pixels", 0, "0", f"between 1 and {MAX_PIXELS}"),
       ("max_patches", MAX_PATCHES + 1, str(MAX_PATCHES + 1), f"between 1 and {MAX_PATCHES}"),
       ("max_batch_images", 0, "0", "a whole number >= 1"),
       ("queue_size", -1, "-1", "a whole number >= 1"),
       ("max_wait_ms", 1001.0, "1001", "between 0 and 1000 ms"),
       ("max_wait_ms", -1.0, "-1", "between 0 and 1000 ms"),
       ("request_timeout_s", 0.0, "0", "more than 0 and at most 3600 s"),
       ("shutdown_grace_s", float("inf"), "inf", "more than 0 and at most 3600 s"),
       ("threshold", float("nan"), "nan", "a finite number"),
       ("api_key", " ", " ", "is empty")]
FLAGS = {"max_bytes": "--max-bytes", "max_pixels": "--max-pixels", "max_patches": "--max-patches",
         "max_batch_images": "--max-batch-images", "max_wait_ms": "--max-wait-ms", "queue_size": "--queue-size",
         "request_timeout_s": "--request-timeout", "shutdown_grace_s": "--shutdown-grace", "api_key": "--api-key",
         "threshold": "--threshold"}  # the reference: the options as docs/commands.md lists them


def names_the_field(name: str, message: str) -> bool:
    """Whether ``message`` names the field (max_pixels) where its flag differs (--max-pixels)."""
    return "_" in name and name in message


def test_every_field_has_the_flag_of_the_command_line():
    assert {f.name: flag_of(f.name) for f in dataclasses.fields(ServeOptions)} == FLAGS


@pytest.mark.parametrize("name, value, typed, says", BAD)
def test_a_serve_options_error_names_the_flag(name, value, typed, says):
    with pytest.raises(ValueError) as error:
        ServeOptions(**{name: value})
    message = str(error.value)
    assert message.startswith(FLAGS[name] + " ") and says in message and not names_the_field(name, message), message


@pytest.mark.parametrize("name, value, typed, says", BAD)
def test_a_serve_command_line_error_names_the_flag(name, value, typed, says, tmp_path, capsys, monkeypatch):
    for module in ("fastapi", "uvicorn", "multipart"):
        pytest.importorskip(module, reason="ssimae serve needs the [serve] extra")
    from ssimae.cli.main import main

    monkeypatch.delenv("SSIMAE_API_KEY", raising=False)
    # the run does not exist: the options are checked before anything is loaded
    assert main(["serve", str(tmp_path / "no-run"), f"{FLAGS[name]}={typed}"]) == 2
    err = one_error_line(capsys, FLAGS[name], says)
    assert not names_the_field(name, err) and "no-run" not in err, err


def test_the_defaults_and_the_edges_are_accepted():
    ServeOptions()
    ServeOptions(max_pixels=MAX_PIXELS, max_patches=MAX_PATCHES, max_wait_ms=0.0, request_timeout_s=3600.0,
                 shutdown_grace_s=0.5, threshold=-1.0, api_key="k")
