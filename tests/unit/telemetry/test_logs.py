"""configure_logging: JSON and text lines, trace ids inside spans, levels, settings errors, and redaction."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from intercom_sidecar import __main__ as cli
from intercom_sidecar.errors import ConfigError
from intercom_sidecar.telemetry.logs import (
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    redact,
    register_secret,
)

log = logging.getLogger("intercom_sidecar.test_logs")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JSON = {"INTERCOM_SIDECAR_LOG_FORMAT": "json"}
TEXT = {"INTERCOM_SIDECAR_LOG_FORMAT": "text"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put the root logger and the quieted loggers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    for name, saved in quiet.items():
        logging.getLogger(name).setLevel(saved)


def canary() -> str:
    """A fresh secret: the registry is process-wide and has no way to forget, so every test uses its own."""
    return f"canary-{uuid.uuid4().hex}"


def configured(env: dict[str, str] | None = None, stream: io.StringIO | None = None) -> io.StringIO:
    stream = io.StringIO() if stream is None else stream
    configure_logging(JSON if env is None else env, stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line must be one JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# JSON -------------------------------------------------------------------------------------------------------------


def test_json_line_has_time_level_logger_message_then_extra_fields() -> None:
    stream = configured()
    log.info("Listening on `%s`.", "127.0.0.1:50051", extra={"port": 50051, "path": object.__name__})
    [line] = records(stream)
    assert list(line) == ["time", "level", "logger", "message", "port", "path"]
    assert TIME.match(line["time"]), line["time"]
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "intercom_sidecar.test_logs",
        "Listening on `127.0.0.1:50051`.",
    )
    assert (line["port"], line["path"]) == (50051, "object")


def test_json_extra_fields_that_json_cannot_encode_are_written_as_text_and_cannot_replace_core_fields() -> None:
    stream = configured()
    log.warning("Stored.", extra={"where": io.StringIO, "level": "fake"})
    [line] = records(stream)
    assert line["level"] == "WARNING"
    assert line["where"] == str(io.StringIO)


def test_json_exception_is_the_formatted_traceback_on_the_same_line() -> None:
    stream = configured()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("Unexpected error while delivering an event.")
    log.info("After.")
    first, second = records(stream)
    assert first["level"] == "ERROR"
    assert first["exception"].startswith("Traceback (most recent call last):\n")
    assert first["exception"].endswith("ValueError: boom\nsecond line")
    assert "exception" not in second


def test_json_is_the_default_when_the_stream_is_not_a_terminal() -> None:
    stream = configured({})
    log.info("Started.")
    assert records(stream)[0]["message"] == "Started."


# text -------------------------------------------------------------------------------------------------------------


def test_text_line_is_readable_with_fields_then_the_traceback() -> None:
    stream = configured(TEXT)
    log.info("Picked up a new access token from `%s`.", "/run/token", extra={"attempt": 2, "note": "two words"})
    try:
        raise KeyError("missing")
    except KeyError:
        log.exception("Could not queue replayed dead letters.")
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\S+Z INFO    intercom_sidecar\.test_logs: Picked up a new access token from `/run/token`\. "
        r'attempt=2 note="two words"',
        lines[0],
    ), lines[0]
    assert TIME.match(lines[0].split(" ")[0])
    assert lines[1].endswith("ERROR   intercom_sidecar.test_logs: Could not queue replayed dead letters.")
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "KeyError: 'missing'"


def test_auto_writes_text_to_a_terminal() -> None:
    stream = configured({"INTERCOM_SIDECAR_LOG_FORMAT": "auto"}, Terminal())
    log.info("Started.")
    assert stream.getvalue().rstrip("\n").endswith(" INFO    intercom_sidecar.test_logs: Started.")


def test_json_can_be_forced_on_a_terminal() -> None:
    stream = configured({"INTERCOM_SIDECAR_LOG_FORMAT": " JSON "}, Terminal())
    log.info("Started.")
    assert records(stream)[0]["message"] == "Started."


# trace context ----------------------------------------------------------------------------------------------------


def test_lines_inside_a_span_carry_its_trace_and_span_ids_and_lines_outside_do_not() -> None:
    stream = configured()
    tracer = TracerProvider().get_tracer("test")  # the sidecar's own provider, never the global one
    log.info("Before.")
    with tracer.start_as_current_span("event") as event:
        log.info("In the event span.")
        with tracer.start_as_current_span("attempt") as attempt:
            log.info("In the attempt span.")
    log.info("After.")
    before, in_event, in_attempt, after = records(stream)
    assert "trace_id" not in before and "span_id" not in before
    assert "trace_id" not in after and "span_id" not in after
    trace_id = f"{event.get_span_context().trace_id:032x}"
    assert (in_event["trace_id"], in_event["span_id"]) == (trace_id, f"{event.get_span_context().span_id:016x}")
    assert (in_attempt["trace_id"], in_attempt["span_id"]) == (
        trace_id,
        f"{attempt.get_span_context().span_id:016x}",
    )
    assert re.fullmatch(r"[0-9a-f]{32}", in_event["trace_id"]) and re.fullmatch(r"[0-9a-f]{16}", in_event["span_id"])
    assert list(in_event) == ["time", "level", "logger", "message", "trace_id", "span_id"]


def test_unsampled_spans_still_give_their_ids() -> None:
    """With no exporter the sidecar samples nothing, but its spans keep real ids (the acks carry them)."""
    stream = configured()
    with TracerProvider(sampler=ALWAYS_OFF).get_tracer("test").start_as_current_span("event") as span:
        log.info("Unsampled.")
    [line] = records(stream)
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"


def test_an_invalid_current_span_context_gives_no_ids() -> None:
    stream = configured()
    with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        log.info("No trace.")
    [line] = records(stream)
    assert "trace_id" not in line and "span_id" not in line


def test_text_lines_inside_a_span_carry_the_ids() -> None:
    stream = configured(TEXT)
    with TracerProvider().get_tracer("test").start_as_current_span("event") as span:
        log.info("Inside.")
    context = span.get_span_context()
    assert (
        stream.getvalue()
        .rstrip("\n")
        .endswith(f"Inside. trace_id={context.trace_id:032x} span_id={context.span_id:016x}")
    )


# levels -----------------------------------------------------------------------------------------------------------


def test_default_level_is_info() -> None:
    stream = configured()
    log.debug("Hidden.")
    log.info("Shown.")
    assert [line["message"] for line in records(stream)] == ["Shown."]


@pytest.mark.parametrize(
    ("setting", "shown"),
    [
        ("DEBUG", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("WARNING", ["warning", "error"]),
        (" error ", ["error"]),
    ],
)
def test_level_filters_lines(setting: str, shown: list[str]) -> None:
    stream = configured({**JSON, "INTERCOM_SIDECAR_LOG_LEVEL": setting})
    for name in ("debug", "info", "warning", "error"):
        getattr(log, name)(name)
    assert [line["message"] for line in records(stream)] == shown


@pytest.mark.parametrize(
    ("setting", "shown"),
    [("DEBUG", ["warning", "error"]), ("WARNING", ["warning", "error"]), ("ERROR", ["error"])],
)
def test_httpx_and_httpcore_never_log_below_warning(setting: str, shown: list[str]) -> None:
    stream = configured({**JSON, "INTERCOM_SIDECAR_LOG_LEVEL": setting})
    for name in ("httpx", "httpcore"):
        for level in ("debug", "info", "warning", "error"):
            getattr(logging.getLogger(name), level)(level)
    assert [line["message"] for line in records(stream)] == shown * 2


def test_configuring_again_replaces_its_handler_and_keeps_others() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    first = configured()
    second = configured()
    log.info("Once.")
    assert first.getvalue() == ""
    assert len(records(second)) == 1
    assert other in logging.getLogger().handlers


# settings errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"INTERCOM_SIDECAR_LOG_LEVEL": "LOUD"},
            "INTERCOM_SIDECAR_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'",
        ),
        (
            {"INTERCOM_SIDECAR_LOG_LEVEL": "CRITICAL"},
            "INTERCOM_SIDECAR_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, got 'CRITICAL'",
        ),
        (
            {"INTERCOM_SIDECAR_LOG_FORMAT": "yaml"},
            "INTERCOM_SIDECAR_LOG_FORMAT: must be one of json, text, auto, got 'yaml'",
        ),
    ],
)
def test_bad_settings_raise_config_error_naming_the_setting(env: dict[str, str], message: str) -> None:
    before = list(logging.getLogger().handlers)
    with pytest.raises(ConfigError) as raised:
        configure_logging(env, io.StringIO())
    assert str(raised.value) == message
    assert raised.value.key == next(iter(env))
    assert logging.getLogger().handlers == before, "nothing is installed when a setting is bad"


def test_the_command_exits_2_with_the_message_on_a_bad_log_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTERCOM_SIDECAR_LOG_FORMAT", "xml")
    with pytest.raises(SystemExit) as exited:
        cli.main(["dlq", "list"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "intercom-sidecar: configuration error: INTERCOM_SIDECAR_LOG_FORMAT: must be one of json, text, auto, "
        "got 'xml'\n"
    )


# redaction --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [JSON, TEXT])
def test_registered_secrets_are_redacted_from_message_args_extra_and_traceback(env: dict[str, str]) -> None:
    secret = canary()
    register_secret(secret)
    stream = configured(env)
    log.warning(f"Token {secret} in the message.")  # noqa: G004 -- exactly what must not leak
    log.warning("Token %s in the arguments, %d times.", secret, 2)
    log.warning("Token in a mapping argument: %(token)s.", {"token": secret})
    log.warning("Token in an object argument: %s.", ValueError(f"refused {secret}"))
    log.warning("Token in an extra field.", extra={"header": f"token={secret}"})
    try:
        raise RuntimeError(f"request failed with token {secret}")
    except RuntimeError:
        log.exception("Token in the traceback.")
    log.warning("Token in the stack.", stack_info=True, extra={"note": secret})
    output = stream.getvalue()
    assert secret not in output
    assert output.count(REDACTED) == 7  # message, 2 in arguments, extra, traceback, extra on the stack line
    assert "Token [REDACTED] in the arguments, 2 times." in output
    assert f"RuntimeError: request failed with token {REDACTED}" in output


def test_the_filter_redacts_the_record_itself() -> None:
    """Every handler after ours (and any code holding the record) sees the redacted record."""
    secret = canary()
    register_secret(secret)
    try:
        raise ValueError(secret)
    except ValueError as error:
        record = log.makeRecord(
            log.name,
            logging.ERROR,
            __file__,
            1,
            "Failed with %s.",
            (secret,),
            (
                type(error),
                error,
                error.__traceback__,
            ),
        )
    assert RedactingFilter().filter(record) is True
    assert (record.msg, record.args) == (f"Failed with {REDACTED}.", ())
    assert record.exc_text is not None and record.exc_text.endswith(f"ValueError: {REDACTED}")
    assert secret not in logging.Formatter().format(record)


def test_arguments_that_do_not_fit_the_message_are_dropped_not_printed() -> None:
    """A bug in a log call must not print what it was given (logging's own error report would)."""
    secret = canary()
    record = log.makeRecord(log.name, logging.INFO, __file__, 1, "One argument: %s.", ("shown", secret), None)
    RedactingFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "One argument: %s. (the log call's arguments did not fit this message)"
    assert secret not in json.dumps(line)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("Authorization: Bearer abc.DEF-123_456", "Authorization: Bearer [REDACTED]"),
        (
            "{'authorization': 'Bearer tok_9f8e', 'accept': 'json'}",
            "{'authorization': 'Bearer [REDACTED]', 'accept': 'json'}",
        ),
        ('"authorization": "bearer tok_9f8e"', '"authorization": "bearer [REDACTED]"'),
        ("BEARER  x; next", "BEARER  [REDACTED]; next"),
        ("Bearer [REDACTED]", "Bearer [REDACTED]"),
        ("A bearer's token", "A bearer's token"),
        ("no credential here", "no credential here"),
    ],
)
def test_bearer_credentials_are_redacted(text: str, redacted: str) -> None:
    assert redact(text) == redacted


@pytest.mark.parametrize("env", [JSON, TEXT])
def test_bearer_credentials_are_redacted_from_lines(env: dict[str, str]) -> None:
    stream = configured(env)
    log.warning("Sent headers %s.", {"Authorization": "Bearer tok_live_5f4e3d"})
    try:
        raise ConnectionError("proxy said: Authorization: Bearer tok_live_5f4e3d")
    except ConnectionError:
        log.exception("Request failed.")
    output = stream.getvalue()
    assert "tok_live_5f4e3d" not in output
    assert "Bearer [REDACTED]" in output


def test_the_longest_secret_wins_when_one_starts_another() -> None:
    short = canary()
    register_secret(short)
    register_secret(short + "-and-more")
    register_secret("")  # ignored: would match everywhere
    assert redact(f"a {short}-and-more b {short} c") == f"a {REDACTED} b {REDACTED} c"
    assert redact("nothing") == "nothing"
